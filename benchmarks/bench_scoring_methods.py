"""Benchmark: time of a single-mutant scan scored with masked marginals vs wild-type marginals
(``openesm3 score --method masked-marginal|wt-marginal``).

The scan: every single mutant of BLAT_ECOLX (Ranganathan 2015, 4,997 variants over 263 positions; wild type from
ProteinGym's reference table), as ``openesm3 score --dms`` reads it. One random ESM3, two ways:

- ``masked-marginal``: one forward pass per mutated position (variants at one position share it), ``--batch-size``
  masked copies per pass;
- ``wt-marginal``: one forward pass of the unmasked wild type for the whole scan.

Every forward pass is counted and timed (wall and process CPU seconds). With ``--positions N`` the masked-marginal
way scores only the variants at the first N positions of the scan (a full scan of the official-size model takes
too long on a few CPU cores); the result then records that subset's passes and time, and how many passes the full
scan needs, for the reader to scale. The model is random (``--weights DIR`` for an official-format file, e.g. the
full-size random weights that ``bench_trunk.py`` caches under ``/tmp/openesm3-bench/trunk/random``, else a small
random ESM3 of ``--d-model`` / ``--n-layers``), so the scores say nothing about fitness; only their cost is
measured.

Usage:
    python benchmarks/bench_scoring_methods.py --out benchmarks/results/scoring-methods-small.json
    flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock python benchmarks/bench_scoring_methods.py \\
        --weights /tmp/openesm3-bench/trunk/random --positions 8 --out benchmarks/results/scoring-methods-1.4b.json
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from benchmarks.common import SHARED_DATA, machine_info, output_error, peak_rss_gb, write_results  # noqa: E402

from openesm3.config import ESM3_TINY  # noqa: E402
from openesm3.generation import scoring  # noqa: E402
from openesm3.generation.encoding import encode_protein  # noqa: E402
from openesm3.generation.variants import parse_variant, read_dms_csv, spearman  # noqa: E402
from openesm3.protein import Protein  # noqa: E402

SCAN = SHARED_DATA / "dms" / "deepsequence" / "BLAT_ECOLX_Ranganathan2015.csv"
REFERENCE = SHARED_DATA / "dms" / "proteingym_reference" / "DMS_substitutions.csv"


def load(args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    if args.weights is not None:
        from openesm3.checkpoints.loading import load_model  # noqa: PLC0415

        model = load_model(args.weights, "esm3")[0]
        config = model.config
        return model, {"weights": str(args.weights), "d_model": config.d_model, "n_layers": config.n_layers}
    from tests.protein_testing import tiny_esm3  # noqa: PLC0415

    model = tiny_esm3(args.seed, ESM3_TINY.replace(d_model=args.d_model, n_layers=args.n_layers))
    return model, {"weights": f"random, seed {args.seed}", "d_model": args.d_model, "n_layers": args.n_layers}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, _ = read_dms_csv(SCAN, score_column="2500")
    with REFERENCE.open(newline="") as handle:
        wild_type = next(r["target_seq"] for r in csv.DictReader(handle) if r["DMS_id"].startswith("BLAT_ECOLX"))
    variants = [parse_variant(r.mutant) for r in rows]
    positions = sorted({v.mutations[0].position for v in variants})
    model, described = load(args)
    model.eval()
    tensor = encode_protein(Protein(sequence=wild_type))
    passes: list[tuple[int, float]] = []  # rows of each forward pass and its wall seconds
    real = scoring.sequence_log_probs

    def counted(model: Any, proteins: Any) -> torch.Tensor:
        start = time.perf_counter()
        out = real(model, proteins)
        passes.append((out.shape[0], time.perf_counter() - start))
        return out

    scoring.sequence_log_probs = counted  # type: ignore[assignment]
    subset = set(positions[: args.positions]) if args.positions else set(positions)
    ways = {
        "wt-marginal": (variants, lambda vs: scoring.wt_marginal_scores(model, tensor, vs)),
        "masked-marginal": (
            [v for v in variants if v.mutations[0].position in subset],
            lambda vs: scoring.masked_marginal_scores(model, tensor, vs, batch_size=args.batch_size),
        ),
    }
    out: dict[str, Any] = {}
    scores: dict[str, dict[str, float]] = {}
    try:
        with torch.inference_mode():
            scoring.wt_marginal_scores(model, tensor, variants[:1])  # warm-up pass (allocator, kernels), not timed
            for name, (chosen, score) in ways.items():
                passes.clear()
                start, start_cpu = time.perf_counter(), time.process_time()
                results = score(chosen)
                seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
                errors = [r.error for r in results if r.error is not None]
                if errors:
                    raise SystemExit(f"{name}: {len(errors)} variant(s) not scored, e.g. {errors[0]}")
                scores[name] = {str(r.variant): float(r.score) for r in results if r.score is not None}
                out[name] = {
                    "variants": len(chosen),
                    "positions": len({v.mutations[0].position for v in chosen}),
                    "forward_passes": len(passes),
                    "rows_per_pass": sorted({n for n, _ in passes}),
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                    "seconds_per_pass": round(float(np.median([t for _, t in passes])), 3),
                }
                print(f"{name:16s} {out[name]}", file=sys.stderr)
    finally:
        scoring.sequence_log_probs = real  # type: ignore[assignment]
    common = sorted(scores["masked-marginal"])
    rho, n = spearman([scores["wt-marginal"][k] for k in common], [scores["masked-marginal"][k] for k in common])
    return {
        "scan": SCAN.name,
        "variants": len(variants),
        "positions": len(positions),
        "masked_marginal_passes_for_the_full_scan": -(-len(positions) // args.batch_size),
        "batch_size": args.batch_size,
        "model": described,
        "threads": torch.get_num_threads(),
        "results": out,
        "spearman_wt_vs_masked": {"rho": rho, "n": n},
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    parser.add_argument("--weights", type=Path, help="an official-format trunk (.pth or its directory)")
    parser.add_argument("--d-model", type=int, default=ESM3_TINY.d_model, help="without --weights")
    parser.add_argument("--n-layers", type=int, default=ESM3_TINY.n_layers, help="without --weights")
    parser.add_argument("--seed", type=int, default=1, help="without --weights")
    parser.add_argument("--positions", type=int, default=0,
                        help="masked marginals of the variants at the first N positions only (0: all)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="masked copies per pass (openesm3's default 8)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if error := output_error(args.out, overwrite=args.overwrite):
        parser.error(error)
    write_results(args.out, run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
