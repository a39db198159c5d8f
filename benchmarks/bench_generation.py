"""Batched structure generation: 8 real sequences cropped to L = 128, structure track generated in 32 steps,
official ``ESM3.batch_generate`` vs ours, same random full-size (1.4B) weights.

Run: ``flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock python benchmarks/bench_generation.py``

The official trunk is built with every parameter random (tests/parity/esm3_oracle.py), saved in the official file
format and loaded through our loader (fp32, and bf16). Each implementation runs the same prompts and config;
throughput = prompts x steps / wall time. A step costs the same whatever the number of steps (one forward pass
of the whole batch plus sampling), so runs too slow for the full 32 steps are measured over ``--steps`` steps
(``num_steps`` = that many) and extrapolated; every step's wall time is printed so the constancy can be checked.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from openesm3.config import ESM3_SM_OPEN_V1, GenerationConfig  # noqa: E402
from openesm3.generation.protein_tensor import ProteinTensor  # noqa: E402

SHARED = Path(os.environ.get("OPENESM3_SHARED_DATA", REPO.parent / "shared" / "data"))
N_PROMPTS, LENGTH, NUM_STEPS = 8, 128, 32
FULL = {"d_model": 1536, "n_heads": 24, "v_heads": 256, "n_layers": 48}  # ESM3_SM_OPEN_V1
SHAPE = dict(FULL)  # --tiny replaces it (a quick check of the script itself)


class StepClock:
    """Wraps a callable and records the start of every call; step i lasts until call i+1 starts (or ``stop``)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.starts: list[float] = []
        self.end = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.starts.append(time.perf_counter())
        return self.fn(*args, **kwargs)

    def steps(self) -> list[float]:
        marks = [*self.starts, self.end]
        return [b - a for a, b in zip(marks, marks[1:])]


def prompts() -> list[ProteinTensor]:
    from tests.generation_testing import real_proteins

    chains = real_proteins(SHARED / "dev", n=N_PROMPTS, min_len=LENGTH)
    return [ProteinTensor(sequence=torch.cat([c.sequence[: LENGTH + 1], c.sequence[-1:]])) for c in chains]


def summarize(name: str, dtype: str, steps: list[float], total: float, n_steps: int) -> dict[str, Any]:
    steady = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    full = total if n_steps == NUM_STEPS else steps[0] + steady * (NUM_STEPS - 1)
    row = {
        "impl": name, "dtype": dtype, "steps_run": n_steps, "wall_s": round(total, 2),
        "step_s": [round(s, 2) for s in steps], "steady_step_s": round(steady, 3),
        "time_32_steps_s": round(full, 1), "extrapolated": n_steps != NUM_STEPS,
        "throughput_prompt_steps_per_s": round(N_PROMPTS * NUM_STEPS / full, 3),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def oracle_workdir(root: Path) -> Path:
    """A working directory whose data/ holds the vocabulary files the official package reads (the LSH hyperplanes
    and residue-annotation CSV are seeded stand-ins, as in the parity tests)."""
    import shutil

    from openesm3 import constants as C
    from openesm3.tokenizers import build
    from openesm3.tokenizers.vocabulary import FUNCTION_FILES, esm_package_data_dir
    from tests.parity.conftest import STANDIN_SEED, standin_choose_clean, standin_residue_label_counts

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    package = esm_package_data_dir()
    assert package is not None
    for name in FUNCTION_FILES[:-1]:
        shutil.copyfile(package / name, data / name)
    build.write_hyperplanes(build.draw_hyperplanes(C.N_KEYWORDS, seed=STANDIN_SEED), data / C.LSH_HYPERPLANES_FILE)
    vocab = build.build_residue_annotation_vocabulary(
        standin_residue_label_counts(STANDIN_SEED), min_proteins=1000, choose_clean=standin_choose_clean
    )
    build.write_residue_annotation_vocabulary(vocab, data)
    return root


def make_weights(esm: Any, weights: Path, seed: int) -> None:
    """The official trunk with every parameter random, saved in the official format."""
    from tests.parity.esm3_oracle import build_reference

    torch.save(build_reference(esm, **SHAPE, seed=seed).state_dict(), weights)
    gc.collect()


def load_reference(esm: Any, weights: Path) -> Any:
    """The official ESM3 class holding the weights of ``weights`` (memory-mapped, no random init)."""
    from esm.models.esm3 import ESM3
    from esm.tokenization import get_esm3_model_tokenizers

    with torch.device("meta"):
        ref = ESM3(**SHAPE, structure_encoder_fn=None, structure_decoder_fn=None, function_decoder_fn=None,
                   tokenizers=get_esm3_model_tokenizers())  # fmt: skip
    state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    ref.load_state_dict(state, assign=True, strict=True)
    for module in ref.modules():
        if type(module).__name__ == "RotaryEmbedding":
            module.reset_parameters()  # its non-persistent inv_freq is not in the state dict
    return ref.eval()


def run_reference(esm: Any, weights: Path, batch: list[ProteinTensor], n_steps: int) -> dict[str, Any]:
    from esm.sdk.api import ESMProteinTensor
    from esm.sdk.api import GenerationConfig as RefConfig

    ref = load_reference(esm, weights)
    inputs = [ESMProteinTensor(sequence=p.sequence) for p in batch]
    configs = [RefConfig(track="structure", num_steps=n_steps) for _ in batch]
    clock = StepClock(ref.logits)
    ref.logits = clock  # type: ignore[method-assign]
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.no_grad():
        out = ref.batch_generate(inputs, configs)
    clock.end = time.perf_counter()
    assert all(o.structure is not None and (o.structure[1:-1] < 4096).all() for o in out)
    row = summarize("reference batch_generate", "fp32", clock.steps(), clock.end - start, n_steps)
    del ref, out
    gc.collect()
    return row


def run_ours(weights: Path, batch: list[ProteinTensor], n_steps: int, dtype: torch.dtype) -> dict[str, Any]:
    from openesm3.checkpoints.loading import load_model
    from openesm3.generation.iterative import generate

    config = ESM3_SM_OPEN_V1.replace(**SHAPE)
    model, _ = load_model(weights, "esm3", dtype=None if dtype == torch.float32 else dtype, config=config)
    clock = StepClock(model)
    start = time.perf_counter()
    results = generate(clock, batch, GenerationConfig(track="structure", num_steps=n_steps), batch_size=N_PROMPTS,
                       seed=0, device="cpu")  # fmt: skip
    clock.end = time.perf_counter()
    assert all(r.ok and (r.unwrap().structure[1:-1] < 4096).all() for r in results)
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    row = summarize("openesm3 generate", name, clock.steps(), clock.end - start, n_steps)
    del model
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=NUM_STEPS, help="steps for the reference and our fp32 run")
    parser.add_argument("--bf16-steps", type=int, default=NUM_STEPS, help="steps for our bf16 run")
    parser.add_argument("--impls", default="reference,fp32,bf16", help="comma-separated subset to run")
    parser.add_argument("--weights", type=Path, help="official-format random weights (made here if missing; "
                        "default: a temporary file)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="append the rows to this JSON list")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script, times nothing")
    args = parser.parse_args()
    if args.tiny:
        SHAPE.update(d_model=64, n_heads=4, v_heads=4, n_layers=2)
    impls = args.impls.split(",")

    os.environ["INFRA_PROVIDER"] = "1"
    os.environ["DISABLE_ITERATIVE_SAMPLING_TQDM"] = "1"
    import esm  # noqa: PLC0415 - the oracle, benchmarks only

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    batch = prompts()
    rows = []
    with tempfile.TemporaryDirectory(prefix="openesm3-bench-") as tmp:
        weights = args.weights or Path(tmp) / "esm3_sm_open_v1.pth"
        os.chdir(oracle_workdir(Path(tmp) / "oracle"))  # the official package reads data/ from here
        if not weights.exists():
            make_weights(esm, weights, seed=1)
        if "reference" in impls:
            rows.append(run_reference(esm, weights, batch, args.steps))
        if "fp32" in impls:
            rows.append(run_ours(weights, batch, args.steps, torch.float32))
        if "bf16" in impls:
            rows.append(run_ours(weights, batch, args.bf16_steps, torch.bfloat16))
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(previous + rows, indent=1))


if __name__ == "__main__":
    main()
