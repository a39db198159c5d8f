"""Tokenizer speed: 500 real sequences, and function annotations on long proteins (ours vs the official package).

Run: ``flock /tmp/openesm3-bench.lock python benchmarks/bench_tokenizers.py [--reference]``. Uses
``../shared/data`` (sequences, the official function vocabulary files) and seeded stand-in hyperplanes.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from openesm3 import constants as C  # noqa: E402
from openesm3.annotations import FunctionAnnotation  # noqa: E402
from openesm3.tokenizers import FunctionTokenizer, SequenceTokenizer, build  # noqa: E402
from openesm3.tokenizers.vocabulary import FUNCTION_FILES  # noqa: E402

SHARED = Path(os.environ.get("OPENESM3_SHARED_DATA", REPO.parent / "shared" / "data"))


def best_of(fn, repeats: int = 3) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", action="store_true", help="also time the official package")
    args = parser.parse_args()

    fasta = (SHARED / "sequences" / "derived" / "sequences_dedup.fasta").read_text().split(">")[1:]
    sequences = ["".join(entry.splitlines()[1:]) for entry in fasta[:500]]
    tok = SequenceTokenizer()
    t = best_of(lambda: [tok.encode(s) for s in sequences])
    n_res = sum(map(len, sequences))
    print(f"sequence: 500 sequences ({n_res} residues) in {t * 1e3:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for name in FUNCTION_FILES[:-1]:
            shutil.copyfile(SHARED / "annotations" / "esm3_function_vocab" / name, data / name)
        build.write_hyperplanes(build.draw_hyperplanes(C.N_KEYWORDS, seed=0), data / C.LSH_HYPERPLANES_FILE)
        start = time.perf_counter()
        ftok = FunctionTokenizer.from_directory(tmp)
        print(f"function vocabulary load: {time.perf_counter() - start:.2f} s")
        rng = random.Random(0)
        ids = [i for i in ftok.vocabulary.interpro_ids if ftok.vocabulary.interpro_keywords[i]]
        cases = []
        for length in (300, 1000, 2000):
            anns = []
            for _ in range(40):
                start_res = rng.randint(1, length)
                label = rng.choice(ids) if rng.random() < 0.6 else rng.choice(ftok.vocabulary.keywords)
                anns.append((label, start_res, min(length, start_res + rng.randint(10, length // 3))))
            cases.append((length, anns))
        for length, anns in cases:
            ours = [FunctionAnnotation(*a) for a in anns]
            ftok._interpro_vector.cache_clear()  # cold cache: every InterPro vector is computed
            t = best_of(lambda: ftok.encode(ours, length), repeats=1)  # noqa: B023
            print(f"function: L={length}, 40 annotations: ours {t * 1e3:.1f} ms", end="")
            if args.reference:
                os.environ["INFRA_PROVIDER"] = "1"
                cwd = os.getcwd()
                os.chdir(tmp)
                try:
                    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415
                    from esm.tokenization import InterProQuantizedTokenizer  # noqa: PLC0415

                    ref = InterProQuantizedTokenizer()
                    ref.tokenize([RefAnnotation("IPR000001", 1, 1)], 1)  # load the files first
                    ref_anns = [RefAnnotation(*a) for a in anns]
                    t_ref = best_of(lambda: ref.tokenize(ref_anns, length), repeats=1)  # noqa: B023
                finally:
                    os.chdir(cwd)
                print(f", official {t_ref * 1e3:.0f} ms ({t_ref / t:.0f}x)", end="")
            print()


if __name__ == "__main__":
    main()
