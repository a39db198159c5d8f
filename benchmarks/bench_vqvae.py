"""Speed of the structure VQ-VAE encoder and decoder: OpenESM3 against the official implementation.

Same machine, same random weights (the official module is built with a fixed seed, every parameter randomised;
ours is loaded from its state_dict through our key map), real proteins from ``../shared/data/dev``:
  - 128 residues: 1nwp chain A (128 residues);
  - 512 residues: 1mty chain D (512 residues).
The decoder decodes BOS + the protein's structure tokens (from the same random-weight encoder) + EOS.

Every (implementation, network, length) measurement runs in a fresh Python process: build, one warm-up call,
then ``--repeats`` timed calls of the forward pass under ``torch.no_grad()`` in fp32; the median is reported
with the spread and the process's peak RSS (``ru_maxrss``, includes the weights). Threads: ``--threads``
(default 2, the CI machine).

Usage:  flock /tmp/openesm3-bench.lock python benchmarks/bench_vqvae.py [--lengths 128 512] [--repeats 5]
        [--networks encoder decoder] [--json results.json]
Needs the official ``esm`` package (the oracle, not a dependency of OpenESM3).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("OPENESM3_SHARED_DATA", REPO.parent / "shared" / "data"))
PROTEINS = {128: ("top240/1nwp.pdb.gz", "A"), 512: ("top240/1mty.pdb.gz", "D")}


def _randomize_(module, seed: int) -> None:  # noqa: ANN001
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))


def _coordinates(length: int):  # noqa: ANN202
    """Normalised atom37 [L, 37, 3] of the benchmark protein, read the SDK's way (the same input for both)."""
    import torch
    from esm.utils.structure.protein_chain import ProteinChain

    file, chain = PROTEINS[length]
    with gzip.open(DATA / "dev" / file, "rt") as handle:
        protein = ProteinChain.from_pdb(io.StringIO(handle.read()), chain_id=chain)
    from openesm3.generation.structure_tokens import normalize_coordinates

    coords = normalize_coordinates(torch.tensor(protein.atom37_positions, dtype=torch.float32))
    if coords.shape[0] != length:
        raise SystemExit(f"{file} chain {chain} has {coords.shape[0]} residues, expected {length}")
    return coords


def worker(impl: str, network: str, length: int, repeats: int, threads: int) -> dict:
    os.environ["INFRA_PROVIDER"] = "1"
    sys.path.insert(0, str(REPO / "src"))
    import torch

    torch.set_num_threads(threads)
    from esm.models.vqvae import StructureTokenDecoder, StructureTokenEncoder

    from openesm3.checkpoints.format import load_state_dict_strict
    from openesm3.checkpoints.official import VQVAE_KEY_MAP_FUNCTIONS, official_to_ours
    from openesm3.config import STRUCTURE_DECODER_V0, STRUCTURE_ENCODER_V0
    from openesm3.models.structure_decoder import StructureDecoder
    from openesm3.models.structure_encoder import StructureEncoder

    coords = _coordinates(length)[None]
    residue_index = torch.arange(1, length + 1)[None]
    torch.manual_seed(0)
    encoder = StructureTokenEncoder(d_model=1024, n_heads=1, v_heads=128, n_layers=2, d_out=128, n_codes=4096).eval()
    _randomize_(encoder, 1)
    with torch.no_grad():
        _, codes = encoder.encode(coords, residue_index=residue_index)
    if network == "encoder":
        ref = encoder
        if impl == "reference":
            run = lambda: ref.encode(coords, residue_index=residue_index)  # noqa: E731
        else:
            model = StructureEncoder(STRUCTURE_ENCODER_V0).eval()
            key_map = VQVAE_KEY_MAP_FUNCTIONS["structure_encoder"](STRUCTURE_ENCODER_V0)
            model.load_state_dict(official_to_ours(ref.state_dict(), key_map, source="reference"))
            run = lambda: model(coords, residue_index=residue_index)  # noqa: E731
    else:
        del encoder
        tokens = torch.cat([torch.tensor([[4098]]), codes, torch.tensor([[4097]])], dim=1)
        torch.manual_seed(0)
        ref = StructureTokenDecoder(d_model=1280, n_heads=20, n_layers=30).eval()
        _randomize_(ref, 2)
        if impl == "reference":
            run = lambda: ref.decode(tokens)  # noqa: E731
        else:
            with torch.device("meta"):  # share the reference's tensors (assign): one copy of the weights in memory
                model = StructureDecoder(STRUCTURE_DECODER_V0).eval()
            key_map = VQVAE_KEY_MAP_FUNCTIONS["structure_decoder"](STRUCTURE_DECODER_V0)
            load_state_dict_strict(model, official_to_ours(ref.state_dict(), key_map, source="reference"),
                                   source="reference")  # fmt: skip
            del ref
            run = lambda: model(tokens)  # noqa: E731
    times = []
    with torch.no_grad():
        run()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    return {"impl": impl, "network": network, "length": length, "times_s": times,
            "median_s": statistics.median(times), "peak_rss_gb": round(peak, 2), "threads": threads}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512], choices=sorted(PROTEINS))
    parser.add_argument("--networks", nargs="+", default=["encoder", "decoder"], choices=["encoder", "decoder"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "NETWORK", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, network, length = args.worker
        print(json.dumps(worker(impl, network, int(length), args.repeats, args.threads)))
        return 0
    results = []
    print(f"{'network':8} {'L':>4} {'reference s':>12} {'openesm3 s':>11} {'speed-up':>9} {'RSS ref/ours GB':>16}")
    for network in args.networks:
        for length in args.lengths:
            row = {}
            for impl in ("reference", "openesm3"):
                cmd = [sys.executable, __file__, "--worker", impl, network, str(length),
                       "--repeats", str(args.repeats), "--threads", str(args.threads)]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                row[impl] = json.loads(out.strip().splitlines()[-1])
                results.append(row[impl])
            ref, ours = row["reference"], row["openesm3"]
            speedup = ref["median_s"] / ours["median_s"]
            print(f"{network:8} {length:>4} {ref['median_s']:>12.3f} {ours['median_s']:>11.3f} {speedup:>8.2f}x "
                  f"{ref['peak_rss_gb']:>7.2f}/{ours['peak_rss_gb']:<7.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
