"""Benchmark: how finely variant scores resolve when the model runs in bf16 (``openesm3 score --dtype bf16``).

Masked-marginal scores of every single mutant of a real deep mutational scan (BLAT_ECOLX, Ranganathan 2015, 4,997
variants; wild type from ProteinGym's reference table) from one random ESM3 of the given size, three ways:

- ``fp32``: the model in fp32 (the exact path);
- ``bf16``: the same weights cast to bf16, scored as the library scores them (the trunk in bf16, its last state
  through the final norm and sequence head in fp32);
- ``bf16 logits``: the same bf16 model, log-probabilities taken from its bf16 ``sequence_logits`` (what the
  library did before the head was moved to fp32).

Reported per way: the number of distinct scores (ties a ranking cannot break), Spearman's rho against the fp32
scores, the largest absolute difference from them, and Spearman's rho against the measured fitness (meaningless for
random weights, recorded only to show that it barely moves). Random weights, so nothing here says how well a
trained model ranks variants.

Usage:
    python benchmarks/bench_scoring_bf16.py --out benchmarks/results/scoring-bf16-ties.json [--limit N]
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from benchmarks.common import SHARED_DATA, machine_info, write_results  # noqa: E402

from openesm3.config import ESM3_TINY  # noqa: E402
from openesm3.generation.encoding import encode_protein  # noqa: E402
from openesm3.generation.scoring import masked_marginal_scores  # noqa: E402
from openesm3.generation.variants import parse_variant, read_dms_csv, spearman  # noqa: E402
from openesm3.protein import Protein  # noqa: E402
from tests.protein_testing import tiny_esm3  # noqa: E402

SCAN = SHARED_DATA / "dms" / "deepsequence" / "BLAT_ECOLX_Ranganathan2015.csv"
REFERENCE = SHARED_DATA / "dms" / "proteingym_reference" / "DMS_substitutions.csv"


class _ForwardOnly(torch.nn.Module):
    """The model seen through ``forward`` only, so scoring takes ``sequence_logits`` as the model returns them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, **inputs: Any) -> Any:
        return self.inner(**inputs)


def random_esm3(seed: int, d_model: int, n_layers: int) -> torch.nn.Module:
    """An ESM3 with every parameter drawn at random, as the parity tests draw them (``tests/protein_testing.py``)."""
    return tiny_esm3(seed, ESM3_TINY.replace(d_model=d_model, n_layers=n_layers))


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    rows, _ = read_dms_csv(SCAN, score_column="2500")
    rows = rows[: args.limit] if args.limit else rows
    with REFERENCE.open(newline="") as handle:
        wild_type = next(r["target_seq"] for r in csv.DictReader(handle) if r["DMS_id"].startswith("BLAT_ECOLX"))
    variants = [parse_variant(r.mutant) for r in rows]
    measured = np.array([r.score for r in rows], float)
    fp32 = random_esm3(args.seed, args.d_model, args.n_layers)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    tensor = encode_protein(Protein(sequence=wild_type))
    ways = {"fp32": fp32, "bf16": bf16, "bf16 logits": _ForwardOnly(bf16)}
    scores: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {}
    for name, model in ways.items():
        start = time.perf_counter()
        results = masked_marginal_scores(model, tensor, variants, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        errors = [r.error for r in results if r.error is not None]
        if errors:
            raise SystemExit(f"{name}: {len(errors)} variant(s) not scored, e.g. {errors[0]}")
        scores[name] = np.array([r.score for r in results], float)
        rho_fp32, _ = spearman(scores[name], scores["fp32"])
        rho_measured, n_measured = spearman(scores[name], measured)
        out[name] = {
            "distinct_scores": int(len(np.unique(scores[name]))),
            "spearman_vs_fp32": rho_fp32,
            "max_abs_diff_vs_fp32": float(np.abs(scores[name] - scores["fp32"]).max()),
            "spearman_vs_measured": rho_measured,
            "n_measured": n_measured,
            "seconds": round(seconds, 2),
        }
        print(f"{name:12s} {out[name]}", file=sys.stderr)
    return {
        "scan": SCAN.name,
        "score_column": "2500",
        "variants": len(variants),
        "model": {"d_model": args.d_model, "n_layers": args.n_layers, "seed": args.seed, "weights": "random"},
        "results": out,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N variants (0: all)")
    parser.add_argument("--d-model", type=int, default=ESM3_TINY.d_model)
    parser.add_argument("--n-layers", type=int, default=ESM3_TINY.n_layers)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    write_results(args.out, run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
