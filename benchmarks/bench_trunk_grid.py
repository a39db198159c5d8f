"""ESM3 trunk (1.4B) forward over a B x L grid, fp32 and bf16, ours against the official package, with FLOP/s.

Four runs, each in its own fresh process that loads the model once and then walks the grid from the smallest
to the largest number of tokens (B x L):

- ``reference fp32``: the official ``ESM3`` loaded the way ``esm.pretrained`` does it (construct, ``torch.load``,
  ``load_state_dict``) from the official-format random weights of ``bench_trunk.py``'s cache.
- ``reference bf16``: the same model in the official SDK's own bf16 mode, as ``ESM3.from_pretrained`` and its
  ``logits`` call set it up off the CPU: weights cast with ``model.to(torch.bfloat16)``, forward under
  ``torch.autocast(<device>, bfloat16)``. The official model does not run in bf16 on CPU (its frame code mixes
  fp32 and bf16 operands and raises, with or without autocast; its SDK keeps CPU models in fp32), so on CPU this
  run records that error instead of timings.
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
such. Peak memory per point: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the process's resident memory
sampled every 5 ms during the point (weights included), and its increase over the RSS after one forward of
the smallest point (``activation_gb``; memory-mapped weights are paged in by then). On CPU a
point whose activations, extrapolated from the previous point, would not fit in the available RAM is skipped
(the reference's block 0 holds [B, 256, L, L] fp32 temporaries even without coordinates).

Usage (full size: take both locks):
    flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock \\
        python benchmarks/bench_trunk_grid.py --out benchmarks/results/trunk-grid.json [--grid 1x64,16x256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import (  # noqa: E402
    REPO,
    RESULT_PREFIX,
    current_rss_gb,
    machine_info,
    output_error,
    peak_rss_gb,
    read_fasta,
    worker_main,
    write_results,
)
from benchmarks.roofline import trunk_flops  # noqa: E402

SCRIPT = Path(__file__).resolve()
DEFAULT_GRID = [(b, n) for b in (1, 4, 16) for n in (64, 128, 256, 512)]
RUNS = ("reference fp32", "reference bf16", "ours fp32", "ours bf16")
OPTIONAL_RUNS = ("ours bf16 compiled",)  # openesm3.layers.compile.compile_blocks(model, dynamic=True)


def parse_grid(text: str) -> list[tuple[int, int]]:
    """``"1x64,16x256"`` -> [(1, 64), (16, 256)]; ValueError naming a malformed point."""
    out = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        b, _, n = item.lower().partition("x")
        if not (b.isdigit() and n.isdigit() and int(b) > 0 and int(n) > 0):
            raise ValueError(f"grid point {item!r}: expected B x L in positive integers, e.g. 16x256")
        out.append((int(b), int(n)))
    return out


def parse_runs(text: str) -> list[str]:
    """``"ours bf16,reference fp32"`` -> the run names; ValueError naming one that is not a run (the worker would
    otherwise time ours fp32 under it)."""
    runs = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS + OPTIONAL_RUNS]
    if unknown:
        raise ValueError(f"unknown trunk run(s) {unknown}; choose from {', '.join(RUNS + OPTIONAL_RUNS)}")
    return runs


class RssSampler:
    """Peak resident memory of this process while a block runs, sampled every ``interval`` seconds from
    /proc/self/statm by a background thread (ru_maxrss cannot be reset between grid points)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self.peak = current_rss_gb()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_gb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, current_rss_gb())


def _mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("inf")


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
        if run == "reference bf16":
            model = model.to(torch.bfloat16)  # as ESM3.from_pretrained does off the CPU
    else:
        from openesm3.checkpoints.loading import load_model

        weights = args["weights_bf16"] if run.startswith("ours bf16") else args["weights_official"]
        model, _ = load_model(weights, "esm3", device=device)
        if run.endswith("compiled"):
            from openesm3.layers.compile import compile_blocks

            compile_blocks(model, dynamic=True)  # one graph for every shape: no recompilation inside timed runs
    load_s = time.perf_counter() - start
    rss_loaded = current_rss_gb()
    autocast = run == "reference bf16"  # the SDK's logits() call: autocast on top of bf16 weights

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)  # the benchmarked GPU, not the current one

    def forward(tokens: Any) -> None:
        with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            model(sequence_tokens=tokens)
        sync()

    grid = sorted(map(tuple, args["grid"]), key=lambda p: (p[0] * p[1], p[1]))
    try:
        forward(_tokens(*grid[0]).to(device))  # pages memory-mapped weights in: the baseline for activation memory
    except RuntimeError as error:  # the official model in bf16 on CPU
        return {"run": run, "device": device, "points": [],
                "error": f"does not run on {device}: {type(error).__name__}: {str(error)[:300]}"}  # fmt: skip
    rss_warm = current_rss_gb()
    points: list[dict[str, Any]] = []
    result = {"run": run, "device": device, "load_s": round(load_s, 1), "rss_after_load_gb": round(rss_loaded, 3),
              "rss_after_first_forward_gb": round(rss_warm, 3), "points": points}  # fmt: skip
    last: tuple[float, float] | None = None  # (seconds, flops) of the last measured point
    last_mem: tuple[float, float] | None = None  # (activation GB above the loaded RSS, its scaling size)
    for batch, length in grid:
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
        # The reference materialises [B, 256, L, L] fp32 geometric-attention temporaries even without coordinates:
        # its activations grow with B L^2; ours with B L (fused attention). Refuse a point that would not fit in
        # RAM rather than let the kernel's OOM killer pick a process on a shared machine.
        size = batch * length * length if run.startswith("reference") else n_tok
        if not cuda and last_mem is not None:
            need = last_mem[0] * size / last_mem[1]
            point["estimated_activation_gb"] = round(need, 2)
            if need > _mem_available_gb() - 1.5:
                point["skipped"] = (f"estimated {need:.1f} GB of activations (extrapolated from the previous point) "
                                    f"> {_mem_available_gb():.1f} GB available")  # fmt: skip
                points.append(point)
                continue
        tokens = _tokens(batch, length).to(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        times, cpu = [], []
        try:
            with RssSampler() as sampler:
                for _ in range(warmup):
                    forward(tokens)
                for _ in range(repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    forward(tokens)
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
        except torch.cuda.OutOfMemoryError as error:
            point["skipped"] = f"out of memory: {str(error)[:200]}"
            points.append(point)
            torch.cuda.empty_cache()
            continue
        median = statistics.median(times)
        last = (median, flops)
        point.update(
            repeats=repeats, warmup=warmup, times_s=[round(t, 4) for t in times], median_s=median,
            cpu_times_s=[round(t, 4) for t in cpu], median_cpu_s=statistics.median(cpu),
            tokens_per_s=n_tok / median, flops_per_s=flops / median,
        )  # fmt: skip
        if cuda:
            point["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
        else:
            point["peak_rss_gb"] = round(sampler.peak, 3)  # sampled every 5 ms during this point, weights included
            point["activation_gb"] = round(sampler.peak - rss_warm, 3)  # above the RSS after one small forward
            last_mem = (max(sampler.peak - rss_warm, 0.05), size)
        point["load_average"] = os.getloadavg()
        points.append(point)
        print(f"  {run} {batch}x{length}: {median:.3f} s", file=sys.stderr, flush=True)
        print(RESULT_PREFIX + json.dumps(result), flush=True)  # partial results survive a later crash
    result["process_peak_rss_gb"] = round(peak_rss_gb(), 3)
    return result


WORKERS = {"grid": w_grid}


def _run_grid_worker(args: dict[str, Any]) -> dict[str, Any]:
    """One implementation's grid in a fresh process; keeps the points measured before a crash (OOM kill)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("INFRA_PROVIDER", "1")
    cmd = [sys.executable, str(SCRIPT), "--worker", "grid", "--args", json.dumps(args)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200, check=False)
    except subprocess.TimeoutExpired as error:
        return {"error": f"timed out after {error.timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else {}
    if proc.returncode != 0:  # one failing implementation must not lose the others, nor its own finished points
        result["error"] = f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    result["worker_wall_s"] = round(time.perf_counter() - start, 1)
    return result


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
        results["runs"][run] = _run_grid_worker(args)
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
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args()
    if error := output_error(args.out, overwrite=args.overwrite):
        parser.error(error)
    try:
        grid, runs = parse_grid(args.grid) or DEFAULT_GRID, parse_runs(args.runs)
    except ValueError as error:
        parser.error(str(error))
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = run_grid(
        grid=grid, runs=runs,
        device=device, threads=args.threads, cache=args.cache, repeats_small=args.repeats_small,
        repeats_large=args.repeats_large, large_tokens=args.large_tokens, point_budget_s=args.point_budget_s,
    )  # fmt: skip
    write_results(args.out, results)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    if not worker_main(WORKERS):
        main()
