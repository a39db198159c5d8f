"""ESM3 trunk (1.4B) forward over a B x L grid, fp32 and bf16, ours against the official package, with FLOP/s.

Four runs, each in its own fresh process that loads the model once and then walks the grid from the smallest
to the largest number of tokens (B x L):

- ``reference fp32``: the official ``ESM3`` loaded the way ``esm.pretrained`` does it (construct, ``torch.load``,
  ``load_state_dict``) from the official-format random weights of ``bench_trunk.py``'s cache.
- ``reference bf16-autocast``: the same model (fp32 weights) under ``torch.autocast(<device>, bfloat16)``, the
  way the official SDK runs it on GPU. This is the reference's own bf16 mode.
- ``ours fp32``: ``load_model(<official .pth>, "esm3")``.
- ``ours bf16``: bf16 weights made once with ``openesm3 convert --dtype bf16`` (frames, geometric attention and
  its softmax stay fp32).
- optional ``ours bf16 compiled``: the same with ``openesm3.layers.compile.compile_blocks(model, dynamic=True)``
  (compilation happens in the first warm-up and is not timed).

Inputs: B real sequences of L - 2 residues (``sequences_dedup.fasta``, canonical residues only) plus BOS/EOS,
sequence track only. Per grid point: one untimed warm-up and 3 timed forwards when B x L <= 1024 tokens, one
timed forward (no warm-up; the process is already warm from the smaller points) above that, as set by
``--repeats-small/--repeats-large/--large-tokens``. Before a point is run its time is extrapolated from the
previous point by the FLOP ratio; a point whose estimate exceeds ``--point-budget-s`` is skipped and reported as
such. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per point; on CPU the process's ``ru_maxrss``
after the point (points run in increasing size, so this is the peak of the largest point so far, weights
included) and its increase over the RSS after loading.

Usage (full size: take both locks):
    flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock \\
        python benchmarks/bench_trunk_grid.py --out benchmarks/results/trunk-grid.json [--grid 1x64,16x256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import current_rss_gb, machine_info, peak_rss_gb, read_fasta, run_worker, worker_main  # noqa: E402
from benchmarks.roofline import trunk_flops  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_GRID = [(b, n) for b in (1, 4, 16) for n in (64, 128, 256, 512)]
RUNS = ("reference fp32", "reference bf16-autocast", "ours fp32", "ours bf16")
OPTIONAL_RUNS = ("ours bf16 compiled",)  # openesm3.layers.compile.compile_blocks(model, dynamic=True)


def parse_grid(text: str) -> list[tuple[int, int]]:
    """``"1x64,16x256"`` -> [(1, 64), (16, 256)]."""
    out = []
    for item in filter(None, text.split(",")):
        b, _, n = item.strip().lower().partition("x")
        out.append((int(b), int(n)))
    return out


def _tokens(batch: int, length: int) -> Any:
    import torch
    from benchmarks.common import sequence_tokens

    seqs = read_fasta(n=batch, min_len=length - 2, max_len=length - 2)
    if len(seqs) < batch:
        raise SystemExit(f"only {len(seqs)} canonical sequences of >= {length - 2} residues, need {batch}")
    return torch.cat([sequence_tokens(s) for s in seqs])


def w_grid(args: dict[str, Any]) -> dict[str, Any]:
    """Load one implementation once and time every grid point in increasing size."""
    import torch

    run, device = args["run"], args["device"]
    cuda = device.startswith("cuda")
    start = time.perf_counter()
    if run.startswith("reference"):
        from benchmarks.bench_trunk import _reference_model

        model = _reference_model(init=True)
        state = torch.load(args["weights_official"], map_location="cpu")  # the official loading path
        model.load_state_dict(state)
        del state
        model = model.to(device)
    else:
        from openesm3.checkpoints.loading import load_model

        weights = args["weights_bf16"] if run.startswith("ours bf16") else args["weights_official"]
        model, _ = load_model(weights, "esm3", device=device)
        if run.endswith("compiled"):
            from openesm3.layers.compile import compile_blocks

            compile_blocks(model, dynamic=True)  # one graph for every shape: no recompilation inside timed runs
    load_s = time.perf_counter() - start
    rss_loaded = current_rss_gb()
    autocast = run == "reference bf16-autocast"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def forward(tokens: Any) -> None:
        with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            model(sequence_tokens=tokens)
        sync()

    points: list[dict[str, Any]] = []
    last: tuple[float, float] | None = None  # (seconds, flops) of the last measured point
    for batch, length in sorted(map(tuple, args["grid"]), key=lambda p: (p[0] * p[1], p[1])):
        n_tok = batch * length
        flops = trunk_flops(batch=batch, length=length)["total"]
        large = n_tok > int(args["large_tokens"])
        repeats = int(args["repeats_large"] if large else args["repeats_small"])
        warmup = 0 if large else 1
        point: dict[str, Any] = {"batch": batch, "length": length, "tokens": n_tok, "flops": flops}
        if last is not None:
            estimate = last[0] * flops / last[1]
            point["estimated_s"] = round(estimate, 2)
            if estimate * (repeats + warmup) > float(args["point_budget_s"]):
                point["skipped"] = f"estimated {estimate:.0f} s per forward x {repeats + warmup} > budget"
                points.append(point)
                continue
        tokens = _tokens(batch, length).to(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            forward(tokens)
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            forward(tokens)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        median = statistics.median(times)
        last = (median, flops)
        point.update(
            repeats=repeats, warmup=warmup, times_s=[round(t, 4) for t in times], median_s=median,
            cpu_times_s=[round(t, 4) for t in cpu], median_cpu_s=statistics.median(cpu),
            tokens_per_s=n_tok / median, flops_per_s=flops / median,
        )  # fmt: skip
        if cuda:
            point["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
        else:
            point["peak_rss_gb"] = round(peak_rss_gb(), 3)
            point["peak_rss_over_loaded_gb"] = round(peak_rss_gb() - rss_loaded, 3)
        point["load_average"] = os.getloadavg()
        points.append(point)
        print(f"  {run} {batch}x{length}: {median:.3f} s", file=sys.stderr, flush=True)
    return {"run": run, "device": device, "load_s": round(load_s, 1), "rss_after_load_gb": round(rss_loaded, 3),
            "points": points}  # fmt: skip


WORKERS = {"grid": w_grid}


def run_grid(
    *, grid: list[tuple[int, int]], runs: list[str], device: str, threads: int | None, cache: Path,
    repeats_small: int = 3, repeats_large: int = 1, large_tokens: int = 1024, point_budget_s: float = 900.0,
) -> dict[str, Any]:  # fmt: skip
    """Prepare the weights (``bench_trunk.prepare``) and run every implementation's grid in its own process."""
    from benchmarks.bench_trunk import prepare

    files = prepare(cache, threads)
    results: dict[str, Any] = {
        "machine": machine_info(), "device": device, "grid": grid, "runs": {},
        "settings": {"repeats_small": repeats_small, "repeats_large": repeats_large, "large_tokens": large_tokens,
                     "point_budget_s": point_budget_s},
    }  # fmt: skip
    for run in runs:
        print(f"trunk grid: {run} ...", flush=True)
        args = {
            "run": run, "device": device, "threads": threads, "grid": grid,
            "weights_official": str(files["random"]), "weights_bf16": str(files["random_bf16"]),
            "repeats_small": repeats_small, "repeats_large": repeats_large, "large_tokens": large_tokens,
            "point_budget_s": point_budget_s,
        }  # fmt: skip
        try:
            results["runs"][run] = run_worker(SCRIPT, "grid", args, timeout=7200)
        except (RuntimeError, OSError) as error:  # one failing implementation must not lose the others
            results["runs"][run] = {"error": str(error)[-2000:]}
        print(f"  done ({results['runs'][run].get('worker_wall_s', '?')} s)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="", help="e.g. 1x64,16x256 (default: {1,4,16} x {64,128,256,512})")
    parser.add_argument("--runs", default=",".join(RUNS), help="subset of: " + ", ".join(RUNS + OPTIONAL_RUNS))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/openesm3-bench/trunk"))
    parser.add_argument("--repeats-small", type=int, default=3)
    parser.add_argument("--repeats-large", type=int, default=1)
    parser.add_argument("--large-tokens", type=int, default=1024)
    parser.add_argument("--point-budget-s", type=float, default=900.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = run_grid(
        grid=parse_grid(args.grid) or DEFAULT_GRID, runs=[r.strip() for r in args.runs.split(",") if r.strip()],
        device=device, threads=args.threads, cache=args.cache, repeats_small=args.repeats_small,
        repeats_large=args.repeats_large, large_tokens=args.large_tokens, point_budget_s=args.point_budget_s,
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    if not worker_main(WORKERS):
        main()
