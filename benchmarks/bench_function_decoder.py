"""Function token decoder: forward speed and peak memory, ours against the official package (fp32, CPU or CUDA).

The official ``FunctionTokenDecoder`` is built at its released size with a fixed seed, every parameter
randomised (as in ``tests/parity/test_function_decoder_parity.py``), and saved once in the official format
(``--cache``); ours loads that file through ``load_official_vqvae_network``. Input: ``L`` rows of 8 function
tokens (runs of random LSH rows, ``<none>`` rows and pads, the shape of a real annotation track). Each
implementation runs in its own fresh process per length: one warm-up, ``--repeats`` timed forwards under
``torch.no_grad()``; ``--rounds`` processes per implementation, alternated.

Usage: ``flock /tmp/openesm3-bench.lock python benchmarks/bench_function_decoder.py --out FILE.json``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import machine_info, output_error, run_worker, worker_main, write_results  # noqa: E402

SCRIPT = Path(__file__).resolve()
OFFICIAL_NAME = "esm3_function_decoder_v0.pth"


def _tokens(length: int) -> Any:
    """[length, 8]: runs of 3-12 identical rows drawn from 16 random LSH rows, ~10% <none> (3), ~5% pad (0)."""
    import torch

    g = torch.Generator().manual_seed(length)
    distinct = torch.randint(4, 260, (16, 8), generator=g)
    rows = []
    while sum(r.shape[0] for r in rows) < length:
        run = int(torch.randint(3, 13, (1,), generator=g))
        kind = float(torch.rand(1, generator=g))
        value = torch.full((8,), 3) if kind < 0.1 else torch.zeros(8, dtype=torch.long) if kind < 0.15 else (
            distinct[int(torch.randint(0, 16, (1,), generator=g))])  # fmt: skip
        rows.append(value.expand(run, 8))
    return torch.cat(rows)[:length].contiguous()


def w_prepare(args: dict[str, Any]) -> dict[str, Any]:
    import torch
    from esm.models.function_decoder import FunctionTokenDecoder, FunctionTokenDecoderConfig

    torch.manual_seed(0)
    ref = FunctionTokenDecoder(FunctionTokenDecoderConfig()).eval()
    g = torch.Generator().manual_seed(31)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))
    path = Path(args["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ref.state_dict(), path)
    return {"path": str(path)}


def w_forward(args: dict[str, Any]) -> dict[str, Any]:
    import time

    import torch

    device = args["device"]
    if args["impl"] == "reference":
        from esm.models.function_decoder import FunctionTokenDecoder, FunctionTokenDecoderConfig

        model = FunctionTokenDecoder(FunctionTokenDecoderConfig()).eval()
        model.load_state_dict(torch.load(args["weights"], map_location="cpu"))
        model = model.to(device)
    else:
        from openesm3.checkpoints.official import load_official_vqvae_network

        model = load_official_vqvae_network(args["weights"], "function_decoder", device=device)
    tokens = _tokens(int(args["length"])).to(device)

    def run() -> None:
        with torch.no_grad():
            model(tokens)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)  # the benchmarked GPU, not the current one

    run()
    times, cpu = [], []
    for _ in range(int(args["repeats"])):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"times_s": times, "cpu_times_s": cpu}


WORKERS = {"prepare": w_prepare, "forward": w_forward}


def run_function_decoder(
    *, lengths: list[int], repeats: int, rounds: int, threads: int | None, device: str, cache: Path
) -> dict[str, Any]:
    weights = cache / OFFICIAL_NAME
    if not weights.is_file():
        print("preparing random official function decoder weights ...", flush=True)
        run_worker(SCRIPT, "prepare", {"path": str(weights)})
    rows = []
    for length in lengths:
        measured: dict[str, dict[str, Any]] = {}
        for _ in range(rounds):
            for impl in ("reference", "openesm3"):
                wargs = {
                    "impl": impl,
                    "length": length,
                    "repeats": repeats,
                    "threads": threads,
                    "device": device,
                    "weights": str(weights),
                }
                res = run_worker(SCRIPT, "forward", wargs)
                row = measured.setdefault(impl, {"times_s": [], "cpu_times_s": [], "peak_rss_gb": 0.0})
                row["times_s"] += res["times_s"]
                row["cpu_times_s"] += res["cpu_times_s"]
                row["peak_rss_gb"] = max(row["peak_rss_gb"], res["peak_rss_gb"])
                row["load_average"] = res["machine"]["load_average"]
        for impl, row in measured.items():
            row.update(impl=impl, network="function_decoder", length=length, median_s=statistics.median(row["times_s"]),
                       median_cpu_s=statistics.median(row["cpu_times_s"]))  # fmt: skip
            rows.append(row)
        ref, ours = measured["reference"], measured["openesm3"]
        print(f"function decoder L={length}: reference {ref['median_s']:.3f} s, ours {ours['median_s']:.3f} s "
              f"({ref['median_s'] / ours['median_s']:.2f}x)", flush=True)  # fmt: skip
    return {"machine": machine_info(), "device": device, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/openesm3-bench/function_decoder"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args()
    if error := output_error(args.out, overwrite=args.overwrite):
        parser.error(error)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_function_decoder(lengths=args.lengths, repeats=args.repeats, rounds=args.rounds,
                                  threads=args.threads, device=device, cache=args.cache)  # fmt: skip
    write_results(args.out, result)


if __name__ == "__main__":
    if not worker_main(WORKERS):
        main()
