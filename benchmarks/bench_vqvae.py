"""Speed of the structure VQ-VAE encoder and decoder: OpenESM3 against the official implementation.

Same machine, same random weights (the official module is built with a fixed seed, every parameter randomised;
ours is loaded from its state_dict through our key map), real proteins from ``../shared/data/dev``:
  - 128 residues: 1nwp chain A (128 residues);
  - 512 residues: 1mty chain D (512 residues).
The decoder decodes BOS + the protein's structure tokens (from the same random-weight encoder) + EOS.

Every measurement runs in a fresh Python process: build, one warm-up call, then ``--repeats`` timed calls of the
forward pass under ``torch.no_grad()`` in fp32. ``--rounds`` such processes per implementation are alternated
(reference, ours, reference, ours, ...) so that a change of machine load hits both. Reported: the median wall
time over all timed calls, the median process CPU time (user + system; less sensitive to other processes on a
shared machine), and the peak RSS (``ru_maxrss``, includes the weights). Threads: ``--threads`` (default 2, the
CI machine).

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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from benchmarks.common import output_error, write_results  # noqa: E402

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


def worker(impl: str, network: str, length: int, repeats: int, threads: int, device: str = "cpu") -> dict:
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
    if device != "cpu":  # the same networks and inputs, moved once; times include a synchronize
        for module in (locals().get("model"), locals().get("ref")):
            if module is not None:
                module.to(device)
        coords, residue_index = coords.to(device), residue_index.to(device)
        if network == "decoder":
            tokens = tokens.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)
    times, cpu = [], []
    with torch.no_grad():
        run()  # warm-up
        sync()
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            sync()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return {"impl": impl, "network": network, "length": length, "times_s": times, "cpu_s": cpu,
            "median_s": statistics.median(times), "median_cpu_s": statistics.median(cpu), **peak_rss(),
            "threads": threads, "device": device, "load_average": os.getloadavg()}  # fmt: skip


def peak_rss() -> dict[str, Any]:
    """This process's peak RSS in GB (1e9 bytes; Linux reports ru_maxrss in KiB), as benchmarks/common.py reports
    it. Results written before the unit was recorded hold GiB under the same key."""
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
            "peak_rss_unit": "GB"}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512], choices=sorted(PROTEINS))
    parser.add_argument("--networks", nargs="+", default=["encoder", "decoder"], choices=["encoder", "decoder"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per process (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per implementation, alternated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "NETWORK", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if error := output_error(args.json, overwrite=args.overwrite):
        parser.error(error)
    if args.worker:
        impl, network, length = args.worker
        print(json.dumps(worker(impl, network, int(length), args.repeats, args.threads, args.device)))
        return 0
    results = []
    print(f"{'network':8} {'L':>4} {'reference s (min)':>18} {'openesm3 s (min)':>17} {'speed-up (of min)':>18} "
          f"{'CPU-time speed-up':>18} {'RSS ref/ours GB':>16}")  # fmt: skip
    for network in args.networks:
        for length in args.lengths:
            runs: dict[str, list[dict]] = {"reference": [], "openesm3": []}
            for _ in range(args.rounds):  # alternate the two, so that load changes hit both alike
                for impl in runs:
                    cmd = [sys.executable, __file__, "--worker", impl, network, str(length),
                           "--repeats", str(args.repeats), "--threads", str(args.threads),
                           "--device", args.device]  # fmt: skip
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    runs[impl].append(json.loads(out.strip().splitlines()[-1]))
            row = {}
            for impl, measured in runs.items():
                row[impl] = {**measured[0], "times_s": [t for m in measured for t in m["times_s"]],
                             "cpu_s": [t for m in measured for t in m["cpu_s"]],
                             "peak_rss_gb": max(m["peak_rss_gb"] for m in measured)}  # fmt: skip
                row[impl]["median_s"] = statistics.median(row[impl]["times_s"])
                row[impl]["median_cpu_s"] = statistics.median(row[impl]["cpu_s"])
                results.append(row[impl])
            ref, ours = row["reference"], row["openesm3"]
            speedup = ref["median_s"] / ours["median_s"]
            cpu_speedup = ref["median_cpu_s"] / ours["median_cpu_s"]
            rss = f"{ref['peak_rss_gb']:>7.2f}/{ours['peak_rss_gb']:<7.2f}"
            ref_min, ours_min = min(ref["times_s"]), min(ours["times_s"])
            times = f"{ref['median_s']:>9.3f} ({ref_min:.3f}) {ours['median_s']:>8.3f} ({ours_min:.3f})"
            print(f"{network:8} {length:>4} {times} {speedup:>7.2f}x ({ref_min / ours_min:.2f}x) "
                  f"{cpu_speedup:>17.2f}x {rss}", flush=True)  # fmt: skip
    if args.json:
        write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
