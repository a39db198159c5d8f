"""The OpenESM3 benchmark suite (issue 7) in one command: every comparison with the official package, the
roofline, the targets, and the report in docs/benchmarks.md.

    flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock \\
        python benchmarks/run_all.py --out-dir benchmarks/results --markdown docs/benchmarks.md [--quick]

Sections (``--only``/``--skip`` pick a subset; the report is always rebuilt from every section's JSON present in
``--out-dir``, each labelled with the date, load average and settings of its own run):

- ``roofline``: F.linear FLOP/s in fp32 and bf16 on the trunk's matrix shapes at 16 x 256 tokens.
- ``trunk``: 1.4B trunk forward on the B x L grid (``bench_trunk_grid.py``), reference fp32 and bf16-autocast,
  ours fp32 and bf16, with achieved FLOP/s against the roofline and peak memory.
- ``agreement``: bf16 vs fp32 sequence argmax on 64 real sequences (``bench_trunk.py --only agreement``, CPU).
- ``vqvae``: structure encoder and decoder at 128 and 512 residues (``bench_vqvae.py``).
- ``function_decoder``: function token decoder at 128 and 512 rows (``bench_function_decoder.py``).
- ``generation``: iterative generation, 8 prompts x L = 128 x 32 steps per track (``bench_generation.py``, run
  as a subprocess if present with its ``--out`` interface; otherwise reported as not run).

Every measurement runs in a fresh process; both implementations load the same random weights through the
official file format; times are medians; the device is CUDA when available (``--device`` overrides), the same
script otherwise runs on CPU. ``--quick`` is a smoke run of every section at the smallest sizes (results go to
``quick-*.json`` files and a clearly labelled report section; they are not measurements to quote).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import REPO, machine_info, write_results  # noqa: E402

SECTIONS = ("roofline", "trunk", "agreement", "vqvae", "function_decoder", "generation")
BEGIN, END = "<!-- benchmark-suite:begin -->", "<!-- benchmark-suite:end -->"
TARGETS = {
    "bf16_speedup_l256": 3.0,  # ours bf16 throughput / reference fp32 throughput at L = 256
    "roofline_16x256": 0.60,  # achieved FLOP/s of ours bf16 at 16 x 256 / bf16 matmul FLOP/s
    "encoder_speedup": 2.0,
    "decoder_speedup": 1.0,  # no slower
    "function_decoder_speedup": 1.0,
    "agreement": 0.99,
    "generation_speedup": 3.0,  # ours (fastest run, bf16) / reference prompt-steps per second, per track
}
GENERATION_TRACKS_CPU = "structure,sequence"  # all five tracks take ~1 h with the fp32 reference on 2 CPU cores
GENERATION_TRACKS_ALL = "structure,sequence,secondary_structure,sasa,function"


def _stamp(extra: dict[str, Any]) -> dict[str, Any]:
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_start": os.getloadavg(), **extra}  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("INFRA_PROVIDER", "1")
    return env


def _subprocess(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    print("  $ " + " ".join(cmd[1:]), flush=True)
    return subprocess.run([sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd, cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


# ---- sections ------------------------------------------------------------------------------------------------
def run_roofline(args: argparse.Namespace) -> dict[str, Any]:
    cmd = ["python", "benchmarks/roofline.py", "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    proc = _subprocess(cmd, timeout=900)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout)


def run_trunk(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.bench_trunk_grid import DEFAULT_GRID, OPTIONAL_RUNS, RUNS, parse_grid, parse_runs, run_grid

    grid = parse_grid(args.grid) or ([(1, 64), (2, 128)] if args.quick else DEFAULT_GRID)
    runs = parse_runs(args.trunk_runs) or list(RUNS) + (list(OPTIONAL_RUNS) if args.compile else [])
    return run_grid(grid=grid, runs=runs, device=args.device, threads=args.threads, cache=args.cache / "trunk",
                    repeats_small=1 if args.quick else args.repeats or 3, repeats_large=1, large_tokens=1024,
                    point_budget_s=args.point_budget_s)  # fmt: skip


def run_agreement(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out_dir / f"{args.prefix}agreement-raw.json"
    cmd = ["python", "benchmarks/bench_trunk.py", "--only", "agreement", "--cache", str(args.cache / "trunk"),
           "--agreement-n", "2" if args.quick else str(args.agreement_n), "--out", str(out),
           "--overwrite"]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = _subprocess(cmd, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    raw = json.loads(out.read_text())
    out.unlink()
    return {k: v for k, v in raw.items() if k.startswith("agreement")}


def run_vqvae(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out_dir / f"{args.prefix}vqvae-raw.json"
    lengths = ["128"] if args.quick else ["128", "512"]
    repeats, rounds = ("1", "1") if args.quick else (str(args.repeats or 3), str(args.rounds))
    cmd = ["python", "benchmarks/bench_vqvae.py", "--lengths", *lengths, "--repeats", repeats, "--rounds", rounds,
           "--threads", str(args.threads or _default_threads()), "--device", args.device,
           "--json", str(out), "--overwrite"]  # fmt: skip
    proc = _subprocess(cmd, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    rows = json.loads(out.read_text())
    out.unlink()
    return {"rows": rows}


def run_function_decoder(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.bench_function_decoder import run_function_decoder as run

    return run(lengths=[128] if args.quick else [128, 512], repeats=1 if args.quick else args.repeats or 3,
               rounds=1 if args.quick else args.rounds, threads=args.threads, device=args.device,
               cache=args.cache / "function_decoder")  # fmt: skip


def run_generation(args: argparse.Namespace) -> dict[str, Any]:
    script = args.generation_script
    if not script.is_file():
        return {"not_run": f"{script.relative_to(REPO) if script.is_relative_to(REPO) else script} is absent"}
    help_text = _subprocess(["python", str(script), "--help"], timeout=300).stdout
    if "--out" not in help_text or "--tracks" not in help_text:
        return {"not_run": f"{script.name} in this checkout has no --out/--tracks interface (an older version)"}
    out = args.out_dir / f"{args.prefix}generation-raw.json"
    tracks = args.generation_tracks or (GENERATION_TRACKS_ALL if args.device.startswith("cuda") else
                                        GENERATION_TRACKS_CPU)  # fmt: skip
    cmd = ["python", str(script), "--out", str(out), "--overwrite", "--tracks", "structure" if args.quick else tracks,
           "--repeats", "1", "--steps", str(1 if args.quick else args.generation_steps)]  # fmt: skip
    if args.quick:
        cmd += ["--impls", "ours_bf16"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = _subprocess(cmd, timeout=7200)
    if proc.returncode or not out.is_file():
        return {"not_run": f"{script.name} failed (exit {proc.returncode}): {proc.stderr[-1500:]}"}
    raw = json.loads(out.read_text())
    out.unlink()
    return {"tracks": tracks, "steps_measured": 1 if args.quick else args.generation_steps, "runs": raw["runs"]}


RUNNERS = {
    "roofline": run_roofline,
    "trunk": run_trunk,
    "agreement": run_agreement,
    "vqvae": run_vqvae,
    "function_decoder": run_function_decoder,
    "generation": run_generation,
}


def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


def merge_trunk(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``--merge``: the new run's grid points replace the same (run, B, L) points of the previous trunk section;
    every other point is kept. Each point carries its own load average; the section lists every contributing run."""
    merged = dict(old)
    merged["result"] = dict(old["result"])
    runs = merged["result"]["runs"] = {k: dict(v) for k, v in old["result"].get("runs", {}).items()}
    for run, res in new["result"]["runs"].items():
        if "error" in res and not res.get("points"):
            continue  # keep what was measured before
        fresh = {(p["batch"], p["length"]): {**p, "measured": new["date"]} for p in res.get("points", [])}
        kept = [p for p in runs.get(run, {}).get("points", []) if (p["batch"], p["length"]) not in fresh]
        runs[run] = {**runs.get(run, {}), "points": kept + list(fresh.values())}
    merged["merged_runs"] = [*old.get("merged_runs", []), {k: new[k] for k in ("date", "argv", "load_average_start",
                             "load_average_end", "wall_s")}]  # fmt: skip
    return merged


# ---- report --------------------------------------------------------------------------------------------------
def load_sections(out_dir: Path, prefix: str) -> dict[str, dict[str, Any]]:
    found = {}
    for name in SECTIONS:
        path = out_dir / f"{prefix}suite-{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def _fmt_load(load: Any) -> str:
    return "/".join(f"{x:.1f}" for x in load) if load else "?"


def _trunk_points(trunk: dict[str, Any]) -> dict[str, dict[tuple[int, int], dict[str, Any]]]:
    table: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for run, res in trunk.get("runs", {}).items():
        table[run] = {(p["batch"], p["length"]): p for p in res.get("points", [])}
    return table


def shape_mix_rate(roofline: dict[str, Any], dtype: str) -> float | None:
    """FLOP/s the trunk's matrix products would reach if each ran at its measured rate: total FLOPs over the sum
    of per-shape times, weighted by each product's share of a block (QKV 3D^2, output D^2, FFN 2DF and FD)."""
    shapes = [s for s in roofline.get("shapes", []) if s["dtype"] == dtype]
    if len(shapes) < 2:
        return None
    weights = [s["k"] * s["n"] for s in shapes]
    return sum(weights) / sum(w / s["flops_per_s"] for w, s in zip(weights, shapes))


def evaluate_targets(sections: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target: what was measured and whether it is met (None = not measured)."""
    rows: list[dict[str, Any]] = []
    trunk = sections.get("trunk", {}).get("result", {})
    points = _trunk_points(trunk)
    ref, bf16 = points.get("reference fp32", {}), points.get("ours bf16", {})
    ratios = {key: ref[key]["median_s"] / bf16[key]["median_s"] for key in sorted(ref)
              if key[1] == 256 and "median_s" in ref[key] and "median_s" in bf16.get(key, {})}  # fmt: skip
    rows.append({
        "target": "trunk bf16 >= 3x the reference's fp32 throughput at L = 256",
        "measured": ", ".join(f"B={b}: {r:.2f}x" for (b, _), r in ratios.items()) or "not measured",
        "met": (min(ratios.values()) >= TARGETS["bf16_speedup_l256"]) if ratios else None,
        "value": min(ratios.values()) if ratios else None,
    })  # fmt: skip
    roofline = sections.get("roofline", {}).get("result", {})
    roof = roofline.get("bfloat16")
    point = bf16.get((16, 256), {})
    frac = point["flops_per_s"] / roof if roof and "flops_per_s" in point else None
    mix = shape_mix_rate(roofline, "bfloat16")
    rows.append({
        "target": ">= 60% of the bf16 matmul roofline at 16 x 256",
        "measured": (f"{frac * 100:.0f}% ({point['flops_per_s'] / 1e9:.0f} of {roof / 1e9:.0f} GFLOP/s, the best"
                     " matmul shape)" + (f"; {point['flops_per_s'] / mix * 100:.0f}% of {mix / 1e9:.0f} GFLOP/s, the"
                                         " rate of the trunk's own matmul mix" if mix else "")
                     if frac is not None else "not measured"),
        "met": (frac >= TARGETS["roofline_16x256"]) if frac is not None else None, "value": frac,
    })  # fmt: skip
    vq = sections.get("vqvae", {}).get("result", {}).get("rows", [])
    fd = sections.get("function_decoder", {}).get("result", {}).get("rows", [])
    for network, key, label in (("encoder", "encoder_speedup", "structure encoder >= 2x the reference"),
                                ("decoder", "decoder_speedup", "structure decoder no slower than the reference"),
                                ("function_decoder", "function_decoder_speedup",
                                 "function decoder no slower than the reference")):  # fmt: skip
        source = fd if network == "function_decoder" else vq
        speed = {}
        for length in sorted({r["length"] for r in source if r["network"] == network}):
            by = {r["impl"]: r for r in source if r["network"] == network and r["length"] == length}
            if "reference" in by and "openesm3" in by:
                speed[length] = by["reference"]["median_s"] / by["openesm3"]["median_s"]
        rows.append({
            "target": label,
            "measured": ", ".join(f"L={n}: {s:.2f}x" for n, s in speed.items()) or "not measured",
            "met": (min(speed.values()) >= TARGETS[key]) if speed else None,
            "value": min(speed.values()) if speed else None,
        })  # fmt: skip
    runs = sections.get("generation", {}).get("result", {}).get("runs", {})
    gen: dict[str, float] = {}
    for name, run in runs.items():
        track, _, impl = name.partition(" / ")
        reference = runs.get(f"{track} / reference", {}).get("throughput_prompt_steps_per_s")
        if impl != "reference" and reference and run.get("throughput_prompt_steps_per_s"):
            gen[track] = max(gen.get(track, 0.0), run["throughput_prompt_steps_per_s"] / reference)
    rows.append({
        "target": "batched generation (8 prompts, L = 128, 32 steps) >= 3x the reference's throughput",
        "measured": ", ".join(f"{t}: {r:.2f}x" for t, r in gen.items()) or "not measured",
        "met": (min(gen.values()) >= TARGETS["generation_speedup"]) if gen else None,
        "value": min(gen.values()) if gen else None,
    })  # fmt: skip
    agreement = sections.get("agreement", {}).get("result", {})
    got = {k.split("(")[-1].rstrip(")"): v["agreement"] for k, v in agreement.items()}
    got.update({f"{k.split('(')[-1].rstrip(')')}, autocast": v["agreement_autocast"]
                for k, v in agreement.items() if "agreement_autocast" in v})  # fmt: skip
    rows.append({
        "target": "bf16 sequence argmax agrees with fp32 on >= 99% of positions",
        "measured": ", ".join(f"{k}: {v * 100:.2f}%" for k, v in got.items()) or "not measured",
        "met": (min(got.values()) >= TARGETS["agreement"]) if got else None,
        "value": min(got.values()) if got else None,
    })  # fmt: skip
    return rows


def render(sections: dict[str, dict[str, Any]], *, quick: bool, command: str) -> str:
    lines = [BEGIN, "## Benchmark suite (issue 7)" + (" — QUICK SMOKE RUN, not a measurement" if quick else ""), ""]
    lines += [
        "One command runs every comparison and rewrites this section from the JSON files in `benchmarks/results/`:",
        "", "```bash", command, "```", "",
        "Same machine, same random weights loaded into both implementations through the official file format,"
        " one fresh process per implementation and size, medians of repeated runs; speed-ups are OpenESM3"
        " throughput / reference throughput (reference time / our time). Each section below names its own run"
        " (date, device, threads, load average). Timings from a shared machine are indicative only.", "",
    ]  # fmt: skip
    machine = next((s["machine"] for s in sections.values() if "machine" in s), None)
    if machine:
        lines.append(f"Machine: {machine['cpu']}, {machine['cores']} logical CPUs, {machine['mem_total_gb']} GB, "
                     f"AMX-BF16 {'yes' if machine.get('amx_bf16') else 'no'}"
                     f"{', GPU ' + machine['cuda_device'] if machine.get('cuda_device') else ''}; "
                     f"torch {machine['torch']}, Python {machine['python']}.")  # fmt: skip
        lines.append("")
    lines += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for row in evaluate_targets(sections):
        met = "not measured" if row["met"] is None else ("**yes**" if row["met"] else "**no**")
        lines.append(f"| {row['target']} | {row['measured']} | {met} |")
    lines.append("")
    for name in SECTIONS:
        sec = sections.get(name)
        if sec is None:
            lines += [f"### {_TITLES[name]}", "", "Not run.", ""]
            continue
        lines += [f"### {_TITLES[name]}", "", _header(sec), ""]
        if "error" in sec:
            lines += [f"Failed: `{sec['error'][-500:]}`", ""]
            continue
        lines += _RENDERERS[name](sec["result"], sections)
        lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def _header(sec: dict[str, Any]) -> str:
    extra = "".join(
        f" Points re-measured on {m['date']} (`run_all.py {' '.join(_settings(m.get('argv', [])))}`, load average"
        f" {_fmt_load(m['load_average_start'])} at start) replace those of the first run (marked *)."
        for m in sec.get("merged_runs", [])
    )
    return _header_main(sec) + extra


def _settings(argv: list[str]) -> list[str]:
    argv = list(argv)
    for flag in ("--out-dir", "--markdown"):  # paths, not settings
        if flag in argv:
            del argv[argv.index(flag) : argv.index(flag) + 2]
    return argv


def _header_main(sec: dict[str, Any]) -> str:
    threads = sec.get("threads") or f"torch default ({sec.get('machine', {}).get('torch_threads', '?')})"
    argv = _settings(sec.get("argv", []))
    return (f"Run {sec['date']} (`run_all.py {' '.join(argv)}`), device {sec['device']}, threads {threads}, "
            f"load average (1/5/15 min) "
            f"{_fmt_load(sec['load_average_start'])} at start, {_fmt_load(sec.get('load_average_end'))} at end; "
            f"{sec.get('wall_s', 0):.0f} s.")  # fmt: skip


def _render_roofline(res: dict[str, Any], _: dict[str, Any]) -> list[str]:
    out = ["`F.linear` on the trunk's shapes at 16 x 256 = 4,096 rows (median of 5 timed batches); the best shape"
           " per dtype is the roofline.", "", "| M x K x N | dtype | GFLOP/s |", "|---|---|---|"]  # fmt: skip
    for s in res["shapes"]:
        out.append(f"| {s['m']} x {s['k']} x {s['n']} | {s['dtype']} | {s['flops_per_s'] / 1e9:.0f} |")
    return out


def _render_trunk(res: dict[str, Any], sections: dict[str, Any]) -> list[str]:
    roof = sections.get("roofline", {}).get("result", {})
    points = _trunk_points(res)
    ref = points.get("reference fp32", {})
    cfg = res.get("settings", {})
    out = [
        "Sequence track only, B real sequences of L - 2 residues + BOS/EOS. Reference bf16 = the official SDK's bf16"
        " mode off the CPU (`model.to(torch.bfloat16)` + `torch.autocast`); the official model does not run in bf16"
        " on CPU (recorded below), so on CPU the reference is fp32 only. Ours bf16 = bf16 weights from"
        f" `openesm3 convert --dtype bf16` (geometry fp32). Per point: 1 warm-up + {cfg.get('repeats_small', '?')}"
        f" timed forwards up to {cfg.get('large_tokens', '?')} tokens, {cfg.get('repeats_large', '?')} timed forward"
        " (no warm-up) above; a point is skipped when its time extrapolated from the previous point (by FLOPs)"
        f" exceeds {cfg.get('point_budget_s', '?')} s. FLOPs are counted analytically (`benchmarks/roofline.py`:"
        " QKV, attention, output, SwiGLU, heads; 2 per multiply-add); % roofline = achieved FLOP/s / the matmul"
        " FLOP/s of the run's dtype. Peak memory: CPU = the process's resident memory sampled every 5 ms during"
        " the point (weights included); CUDA = `max_memory_allocated`.", "",
        "| B x L | run | median (s) | CPU (s) | tokens/s | speed-up vs ref fp32 | TFLOP/s | % roofline | peak (GB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    keys = sorted({k for run in points.values() for k in run}, key=lambda k: (k[0] * k[1], k[1]))
    for key in keys:
        for run, table in points.items():
            p = table.get(key)
            if p is None:
                continue
            if "median_s" not in p:
                out.append(f"| {key[0]} x {key[1]} | {run} | skipped: {p.get('skipped', '?')} | | | | | | |")
                continue
            dtype = "bfloat16" if "bf16" in run else "float32"
            pct = f"{p['flops_per_s'] / roof[dtype] * 100:.0f}%" if dtype in roof else "-"
            speed = f"{ref[key]['median_s'] / p['median_s']:.2f}x" if "median_s" in ref.get(key, {}) else "-"
            peak = p.get("peak_mem_gb", p.get("peak_rss_gb"))
            tflops = p["flops_per_s"] / 1e12
            mark = " *" if p.get("measured") else ""
            out.append(f"| {key[0]} x {key[1]} | {run}{mark} | {p['median_s']:.3f} | {p['median_cpu_s']:.2f} | "
                       f"{p['tokens_per_s']:.0f} | {speed} | {tflops:.3f} | {pct} | {peak:.2f} |")  # fmt: skip
    errors = [f"{run}: {r['error'][-300:]}" for run, r in res.get("runs", {}).items() if "error" in r]
    if errors:
        out += ["", "Runs that failed or stopped: " + "; ".join(f"`{' '.join(e.split())}`" for e in errors)]
    return out


def _render_agreement(res: dict[str, Any], _: dict[str, Any]) -> list[str]:
    out = ["Sequence-logit argmax at residue positions of real sequences (30-126 residues) against fp32: bf16"
           " weights (everything bf16 except geometry) and fp32 weights under bf16 autocast (matmuls in bf16, the"
           " residual stream fp32); computed on the CPU by `bench_trunk.py --only agreement` whatever `--device`"
           " is.", "",
           "| weights | sequences | positions | agreement, bf16 weights | agreement, autocast | median fp32 top-2"
           " margin | median abs logit error (bf16 weights) |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, r in res.items():
        auto = f"{r['agreement_autocast'] * 100:.2f}%" if "agreement_autocast" in r else "not measured"
        out.append(f"| {label} | {r['n_sequences']} | {r['n_positions']} | {r['agreement'] * 100:.2f}% | {auto} | "
                   f"{r['fp32_top2_margin_median']:.2f} | {r['bf16_abs_logit_error_median']:.3f} |")  # fmt: skip
    return out


def _render_networks(rows: list[dict[str, Any]], *, legacy_unit: str) -> list[str]:
    """``legacy_unit``: the unit of ``peak_rss_gb`` in rows written before the rows named it (``peak_rss_unit``);
    bench_vqvae.py wrote GiB there, the scripts using benchmarks/common.py GB."""
    units = {r.get("peak_rss_unit", legacy_unit) for r in rows}
    if len(units) > 1:
        raise ValueError(f"the rows' peak memory mixes units {sorted(units)}; re-run the section")
    unit = units.pop() if units else legacy_unit
    out = ["| network | L | reference median (s) | OpenESM3 median (s) | speed-up | CPU-time speed-up | "
           f"peak RSS ref / ours ({unit}) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in sorted({(r["network"], r["length"]) for r in rows}):
        by = {r["impl"]: r for r in rows if (r["network"], r["length"]) == key}
        ref, ours = by.get("reference"), by.get("openesm3")
        if not (ref and ours):
            continue
        out.append(f"| {key[0]} | {key[1]} | {ref['median_s']:.3f} | {ours['median_s']:.3f} | "
                   f"{ref['median_s'] / ours['median_s']:.2f}x | {ref['median_cpu_s'] / ours['median_cpu_s']:.2f}x | "
                   f"{ref['peak_rss_gb']:.2f} / {ours['peak_rss_gb']:.2f} |")  # fmt: skip
    return out


def _render_generation(res: dict[str, Any], _: dict[str, Any]) -> list[str]:
    if "not_run" in res:
        return [f"Not run: {res['not_run']}"]
    out = [f"8 prompts x L = 128, 32 steps; {res['steps_measured']} step(s) measured per call and the 32-step time"
           " extrapolated from the median steady step (`bench_generation.py`).", "",
           "| track / run | median step (s) | step CPU (s) | 32 steps (s) | prompt-steps/s | speed-up vs reference |"
           " peak RSS (GB) |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, r in res["runs"].items():
        ref = res["runs"].get(label.split(" / ")[0] + " / reference")
        speed = f"{ref['median_step_s'] / r['median_step_s']:.2f}x" if ref else "-"
        peak = f"{r['peak_rss_gb']:.2f}" if "peak_rss_gb" in r else "-"
        out.append(f"| {label} | {r['median_step_s']:.2f} | {r['median_step_cpu_s']:.2f} | "
                   f"{r['time_32_steps_s']:.1f} | {r['throughput_prompt_steps_per_s']:.3f} | {speed} | "
                   f"{peak} |")  # fmt: skip
    return out


_TITLES = {
    "roofline": "Roofline: matmul FLOP/s",
    "trunk": "ESM3 trunk forward, B x L grid",
    "agreement": "bf16 vs fp32 agreement",
    "vqvae": "Structure encoder and decoder",
    "function_decoder": "Function decoder",
    "generation": "Iterative generation",
}
_RENDERERS = {
    "roofline": _render_roofline,
    "trunk": _render_trunk,
    "agreement": _render_agreement,
    "vqvae": lambda res, _: _render_networks(res["rows"], legacy_unit="GiB"),
    "function_decoder": lambda res, _: _render_networks(res["rows"], legacy_unit="GB"),
    "generation": _render_generation,
}


def write_markdown(path: Path, text: str) -> None:
    """Replace the suite's section of ``path`` (between its markers), or insert it before the first ``## ``
    heading after the title; the rest of the file is kept."""
    from openesm3.utils.atomic import atomic_open

    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        at = old.find("\n## ")
        new = old + "\n" + text if at < 0 else old[: at + 1] + text + "\n" + old[at + 1 :]
    with atomic_open(path, "w") as handle:
        handle.write(new)


# ---- driver --------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--markdown", type=Path, default=None, help="rewrite the suite's section of this file")
    parser.add_argument("--quick", action="store_true", help="smoke run: smallest sizes, 1 repeat")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--grid", default="", help="trunk grid subset, e.g. 1x64,16x256")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per trunk point <= 1024 tokens and per VQ-VAE/decoder process (default 3)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per implementation (VQ-VAE, decoder)")
    parser.add_argument("--agreement-n", type=int, default=64, help="real sequences for the bf16 agreement")
    parser.add_argument("--only", default="", help="comma-separated sections to run: " + ",".join(SECTIONS))
    parser.add_argument("--skip", default="", help="comma-separated sections not to run")
    parser.add_argument("--point-budget-s", type=float, default=900.0,
                        help="skip a trunk grid point whose extrapolated time exceeds this")  # fmt: skip
    parser.add_argument("--generation-tracks", default="", help=f"default: {GENERATION_TRACKS_CPU} on CPU, all on CUDA")
    parser.add_argument("--generation-steps", type=int, default=4,
                        help="steps measured per generate call (the 32-step time is extrapolated)")  # fmt: skip
    parser.add_argument("--generation-script", type=Path, default=REPO / "benchmarks" / "bench_generation.py")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/openesm3-bench"))
    parser.add_argument("--compile", action="store_true", help="also time ours bf16 with torch.compile'd blocks")
    parser.add_argument("--trunk-runs", default="", help="trunk runs to time (default: all), comma-separated")
    parser.add_argument(
        "--merge", action="store_true", help="merge the trunk points measured now into the existing trunk section"
    )
    parser.add_argument("--render-only", action="store_true", help="rebuild the report from existing JSON files")
    args = parser.parse_args()
    chosen = [s for s in (args.only.split(",") if args.only else SECTIONS) if s]
    unknown = (set(chosen) | set(filter(None, args.skip.split(",")))) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    chosen = [s for s in chosen if s not in args.skip.split(",")]
    try:  # checked before any section runs: a typo must not cost the sections before the trunk
        from benchmarks.bench_trunk_grid import parse_grid, parse_runs

        parse_grid(args.grid), parse_runs(args.trunk_runs)
    except ValueError as error:
        parser.error(str(error))
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.prefix = "quick-" if args.quick else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        for name in chosen:
            print(f"== {name} ==", flush=True)
            record = _stamp({"section": name, "device": args.device, "threads": args.threads, "quick": args.quick,
                             "argv": sys.argv[1:], "machine": machine_info()})  # fmt: skip
            start = time.perf_counter()
            try:
                record["result"] = RUNNERS[name](args)
            except Exception as error:  # noqa: BLE001 - one failing section must not lose the others
                record["error"] = f"{type(error).__name__}: {error}"
                print(f"  FAILED: {record['error'][-2000:]}", flush=True)
            record["wall_s"] = round(time.perf_counter() - start, 1)
            record["load_average_end"] = os.getloadavg()
            path = args.out_dir / f"{args.prefix}suite-{name}.json"
            if name == "trunk" and args.merge and path.is_file() and "result" in record:
                record = merge_trunk(json.loads(path.read_text()), record)
            write_results(path, record)  # atomically: an interrupted write keeps the previous section
            print(f"  wrote {path} ({record['wall_s']:.0f} s)", flush=True)
    sections = load_sections(args.out_dir, args.prefix)
    command = ("flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock \\\n    python benchmarks/run_all.py "
               "--out-dir benchmarks/results --markdown docs/benchmarks.md")  # fmt: skip
    text = render(sections, quick=args.quick, command=command)
    for row in evaluate_targets(sections):
        flag = "n/a " if row["met"] is None else "MET " if row["met"] else "MISS"
        print(f"{flag} {row['target']}: {row['measured']}")
    if args.markdown:
        if args.quick:  # a smoke run never overwrites the measured report
            from openesm3.utils.atomic import atomic_write_text

            args.markdown = args.out_dir / "quick-report.md"
            atomic_write_text(args.markdown, text)
        else:
            write_markdown(args.markdown, text)
        print(f"report written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
