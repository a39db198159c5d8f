"""ESM3 trunk (1.4B): forward speed, peak memory and bf16-vs-fp32 agreement, ours against the official package.

Usage (full-size models: take both locks; timings from a shared machine are indicative only):

    flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock \\
        python benchmarks/bench_trunk.py --out benchmarks/results/trunk.json

Steps, each in a fresh process (benchmarks/common.py):
1. prepare (once, cached in --cache): random weights for the 1.4B config written in the official format
   (every parameter random, as in the parity tests), the same in our format in bf16 made by
   ``openesm3 convert --dtype bf16``, and a second official file with the official constructor's own init.
2. forward B=1, L=--length, sequence only (and with backbone coordinates with --coords): the reference in fp32
   loaded the official way (construct, torch.load, load_state_dict, as ``esm.pretrained`` does); ours in fp32
   (official file, memory-mapped), in bf16 weights (our bf16 directory) and in fp32 weights under bf16 autocast.
   The reference is also run as in spec §14 (constructed with random init, no file) for its bare footprint.
3. agreement: sequence-logit argmax of bf16 vs fp32 on real sequences, for both weight files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import (  # noqa: E402
    REPO,
    current_rss_gb,
    machine_info,
    output_error,
    read_fasta,
    real_backbone,
    run_worker,
    sequence_tokens,
    time_call,
    worker_main,
    write_results,
)

SCRIPT = Path(__file__).resolve()
OFFICIAL_NAME = "esm3_sm_open_v1.pth"


# ---- inputs --------------------------------------------------------------------------------------------------
def _inputs(length: int, coords: str | None) -> dict[str, Any]:
    """A real sequence of ``length - 2`` residues, and a real backbone read from ``coords`` (a .npy file that
    the driver wrote, so that the measured process never imports biotite or parses PDB files)."""
    import numpy as np
    import torch

    seq = read_fasta(n=1, min_len=length - 2, max_len=length - 2)[0]
    inputs = {"sequence_tokens": sequence_tokens(seq)}
    if coords:
        xyz = torch.full((1, length, 3, 3), float("inf"))
        xyz[0, 1:-1] = torch.from_numpy(np.load(coords))
        inputs["structure_coords"] = xyz
        inputs["per_res_plddt"] = torch.isfinite(xyz).all(-1).all(-1).float()  # as the reference SDK does
    return inputs


# ---- workers -------------------------------------------------------------------------------------------------
def w_prepare_random(args: dict[str, Any]) -> dict[str, Any]:
    """Every parameter random (the parity tests' scheme), written in the official format."""
    import math

    import torch

    from openesm3.checkpoints.official import esm3_key_map, to_official_state_dict
    from openesm3.config import ESM3_SM_OPEN_V1
    from openesm3.models.esm3 import ESM3

    with torch.device("meta"):
        model = ESM3(ESM3_SM_OPEN_V1)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(int(args["seed"]))
    with torch.no_grad():
        for module in model.modules():
            for p in module.parameters(recurse=False):
                p.normal_(generator=g)
                if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
                    continue
                if p.ndim == 1:
                    p.mul_(0.5).add_(1.0)
                else:
                    p.mul_(1.0 / math.sqrt(p.shape[-1]))
    path = Path(args["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(to_official_state_dict(model.state_dict(), esm3_key_map(ESM3_SM_OPEN_V1)), path)
    return {"path": str(path)}


def _reference_model(init: bool):  # noqa: ANN202 - the official ESM3
    import torch
    from esm.models.esm3 import ESM3
    from esm.tokenization import get_esm3_model_tokenizers

    with torch.device("cpu" if init else "meta"):
        return ESM3(
            d_model=1536, n_heads=24, v_heads=256, n_layers=48, structure_encoder_fn=None,
            structure_decoder_fn=None, function_decoder_fn=None, tokenizers=get_esm3_model_tokenizers(),
        ).eval()  # fmt: skip


def w_prepare_reference_init(args: dict[str, Any]) -> dict[str, Any]:
    """The official constructor's own random init (LayerNorms 1/0, geometric scales 0), in the official format."""
    import torch

    torch.manual_seed(int(args["seed"]))
    model = _reference_model(init=True)
    path = Path(args["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return {"path": str(path)}


def w_reference_forward(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    start = time.perf_counter()
    model = _reference_model(init=True)
    if args.get("weights"):  # the official loading path (esm.pretrained): construct, torch.load, load_state_dict
        state = torch.load(args["weights"], map_location="cpu")
        model.load_state_dict(state)
        del state
    load_s = time.perf_counter() - start
    rss_loaded = current_rss_gb()
    inputs = _inputs(int(args["length"]), args.get("coords"))
    with torch.no_grad():
        timing = time_call(lambda: model(**inputs), repeats=int(args["repeats"]), warmup=int(args["warmup"]))
    return {"load_s": round(load_s, 1), "rss_after_load_gb": round(rss_loaded, 3), **timing}


def w_ours_forward(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    from openesm3.checkpoints.loading import load_model

    start = time.perf_counter()
    model, _ = load_model(args["weights"], "esm3")
    load_s = time.perf_counter() - start
    rss_loaded = current_rss_gb()
    inputs = _inputs(int(args["length"]), args.get("coords"))
    autocast = bool(args.get("autocast"))

    def run() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(**inputs)

    timing = time_call(run, repeats=int(args["repeats"]), warmup=int(args["warmup"]))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {"load_s": round(load_s, 1), "rss_after_load_gb": round(rss_loaded, 3), "weights_dtype": dtype, **timing}


def w_agreement(args: dict[str, Any]) -> dict[str, Any]:
    """Sequence-logit argmax agreement with fp32, on residue positions of real sequences: bf16 weights
    (``agreement``) and fp32 weights under bf16 autocast (``agreement_autocast``)."""
    import torch

    from openesm3.checkpoints.loading import load_model

    seqs = read_fasta(n=int(args["n"]), min_len=30, max_len=int(args["max_len"]))
    model, _ = load_model(args["weights"], "esm3")
    results: dict[str, list[torch.Tensor]] = {"fp32": [], "autocast": [], "bf16": []}
    margins = []
    with torch.no_grad():
        # fp32 weights; fp32 weights under bf16 autocast (residual stream fp32); bf16 weights (all bf16).
        for mode in ("fp32", "autocast", "bf16"):
            if mode == "bf16":
                model = model.to(torch.bfloat16)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
                for s in seqs:
                    logits = model(sequence_tokens=sequence_tokens(s)).sequence_logits[0, 1:-1].float()
                    results[mode].append(logits)
    autocast_agree = sum(
        int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(results["fp32"], results["autocast"])
    )
    agree = total = 0
    max_err = 0.0
    for a, b in zip(results["fp32"], results["bf16"]):
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
        top2 = a.topk(2, dim=-1).values
        margins.append(top2[:, 0] - top2[:, 1])
        max_err = max(max_err, float((a - b).abs().max()))
    margin = torch.cat(margins)
    err = torch.cat([(a - b).abs().flatten() for a, b in zip(results["fp32"], results["bf16"])])
    return {
        "n_sequences": len(seqs),
        "n_positions": total,
        "agreement": agree / total,
        "agreement_autocast": autocast_agree / total,
        "fp32_top2_margin_median": float(margin.median()),
        "bf16_abs_logit_error_median": float(err.median()),
        "bf16_abs_logit_error_max": max_err,
        "logit_std": float(torch.cat(results["fp32"]).std()),
    }


WORKERS = {
    "prepare_random": w_prepare_random,
    "prepare_reference_init": w_prepare_reference_init,
    "reference_forward": w_reference_forward,
    "ours_forward": w_ours_forward,
    "agreement": w_agreement,
}


# ---- driver --------------------------------------------------------------------------------------------------
def prepare(cache: Path, threads: int | None) -> dict[str, Path]:
    files = {
        "random": cache / "random" / OFFICIAL_NAME,
        "random_bf16": cache / "random_bf16",
        "reference_init": cache / "reference_init" / OFFICIAL_NAME,
    }
    if not files["random"].is_file():
        print("preparing random official weights ...", flush=True)
        run_worker(SCRIPT, "prepare_random", {"path": str(files["random"]), "seed": 0, "threads": threads})
    if not (files["random_bf16"] / "model.safetensors").is_file():
        print("converting to our format in bf16 (openesm3 convert --dtype bf16) ...", flush=True)
        cmd = [sys.executable, "-m", "openesm3", "convert", str(files["random"]), str(files["random_bf16"]),
               "--dtype", "bf16"]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=REPO, env={**_env(), "PYTHONPATH": str(REPO / "src")})
    if not files["reference_init"].is_file():
        print("preparing weights with the official constructor's init ...", flush=True)
        run_worker(SCRIPT, "prepare_reference_init", {"path": str(files["reference_init"]), "seed": 0})
    return files


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def speedup_table(results: dict[str, Any]) -> list[str]:
    """The forward runs as a markdown table. Each run's speed-up is against the reference on the same inputs:
    a ``+coords`` run against ``reference fp32+coords``, every other run against ``reference fp32``."""
    out = ["| run | median wall (s) | speed-up | median CPU (s) | CPU speed-up | peak RSS (GB) |"]
    out.append("|---|---|---|---|---|---|")
    for label, res in results.items():
        if not (isinstance(res, dict) and "median_s" in res):
            continue
        ref = results.get("reference fp32+coords" if label.endswith("+coords") else "reference fp32", {})
        wall, cpu = res["median_s"], res["median_cpu_s"]
        speed = f"{ref['median_s'] / wall:.2f}x" if "median_s" in ref else "-"
        speed_cpu = f"{ref['median_cpu_s'] / cpu:.2f}x" if "median_cpu_s" in ref else "-"
        out.append(f"| {label} | {wall:.2f} | {speed} | {cpu:.2f} | {speed_cpu} | {res['peak_rss_gb']:.2f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/openesm3-bench/trunk"))
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--coords", action="store_true", help="also time inputs with backbone coordinates")
    parser.add_argument("--autocast", action="store_true", help="also time fp32 weights under bf16 autocast")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every forward measurement in N processes")
    parser.add_argument("--agreement-n", type=int, default=64)
    parser.add_argument("--agreement-max-len", type=int, default=126)
    parser.add_argument("--only", default="", help="comma-separated subset of: forward,agreement")
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args()
    if error := output_error(args.out, overwrite=args.overwrite):
        parser.error(error)
    parts = {"forward", "agreement"}
    only = set(filter(None, (part.strip() for part in args.only.split(",")))) or parts
    if only - parts:
        parser.error(f"--only: unknown part(s) {sorted(only - parts)}; choose from forward,agreement")

    files = prepare(args.cache, args.threads)
    common = {"length": args.length, "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads}
    results: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    runs: list[tuple[str, str, dict[str, Any]]] = []
    if "forward" in only:
        backbone = None
        if args.coords:
            import numpy as np

            backbone = args.cache / f"backbone_{args.length - 2}.npy"
            np.save(backbone, real_backbone(args.length - 2).numpy())
        for coords in (None, str(backbone)) if backbone else (None,):
            tag = "+coords" if coords else ""
            base = {**common, "coords": coords}
            runs += [
                (f"reference fp32{tag}", "reference_forward", {**base, "weights": str(files["random"])}),
                (f"ours fp32{tag}", "ours_forward", {**base, "weights": str(files["random"])}),
                (f"ours bf16{tag}", "ours_forward", {**base, "weights": str(files["random_bf16"])}),
            ]
            if args.autocast:
                runs.append((f"ours autocast-bf16{tag}", "ours_forward",
                             {**base, "autocast": True, "weights": str(files["random"])}))  # fmt: skip
        runs = runs * args.rounds  # interleaved rounds, each in fresh processes: load drift hits all alike
        runs.append(("reference fp32, random init, no file (spec §14)", "reference_forward",
                     {**common, "repeats": 1}))  # fmt: skip
    if "agreement" in only:
        for name in ("random", "reference_init"):
            runs.append((f"agreement bf16 vs fp32 ({name} weights)", "agreement",
                         {"weights": str(files[name]), "n": args.agreement_n, "max_len": args.agreement_max_len,
                          "threads": args.threads}))  # fmt: skip
    for label, worker, wargs in runs:
        print(f"running: {label} ...", flush=True)
        res = run_worker(SCRIPT, worker, wargs)
        shown = {k: v for k, v in res.items() if k != "machine"}
        print(f"  {json.dumps(shown)}", flush=True)
        if label in results:  # another round: pool the timed runs, keep the worst peak memory
            prev = results[label]
            prev["times_s"] += res["times_s"]
            prev["cpu_times_s"] += res["cpu_times_s"]
            prev["median_s"] = statistics.median(prev["times_s"])
            prev["median_cpu_s"] = statistics.median(prev["cpu_times_s"])
            prev["peak_rss_gb"] = max(prev["peak_rss_gb"], res["peak_rss_gb"])
            prev["rounds"] = prev.get("rounds", 1) + 1
        else:
            results[label] = res

    if "forward" in only:
        print("\n" + "\n".join(speedup_table(results)))
    if args.out is not None:
        write_results(args.out, results)
        print(f"results written to {args.out}")


if __name__ == "__main__":
    if not worker_main(WORKERS):
        main()
