"""Paired comparison of two tokenizer evaluations (``benchmarks/eval_tokenizer.py`` JSONs) on the same proteins:
per-protein differences of lDDT-CA, backbone RMSD, TM-score and, where both have it, all-atom RMSD (first minus
second), their mean with a 95 % bootstrap interval, and the fraction of proteins on which the first is better.
Medians of 77 proteins move by chance; the paired differences say whether one tokenizer is better on the same chains
(docs/tokenizer_training.md).

    python scripts/compare_tokenizer_evals.py FIRST.json SECOND.json [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openesm3.training.tokenizer.evaluate import bootstrap_mean
from openesm3.utils.atomic import atomic_write_json

# metric -> whether larger is better
METRICS = {"lddt_ca": True, "backbone_rmsd": False, "tm_score": True, "all_atom_rmsd": False}


def compare(first: dict, second: dict, *, n_boot: int = 5000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Paired differences (first - second) over the proteins both evaluations scored."""
    a = {p["name"]: p for p in first["proteins"]}
    b = {p["name"]: p for p in second["proteins"]}
    names = sorted(set(a) & set(b))
    if not names:
        raise SystemExit("the two evaluations share no protein")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for key, larger_better in METRICS.items():
        # all-atom RMSD only exists for proteins with side chains, and only in evaluations that decoded them
        shared = [n for n in names if a[n].get(key) is not None and b[n].get(key) is not None]
        if not shared:
            continue
        d = np.array([a[n][key] - b[n][key] for n in shared], dtype=np.float64)
        out[key] = {
            "n_proteins": len(d),
            **bootstrap_mean(d, rng, n_boot=n_boot),
            "first_better_fraction": float(np.mean(d > 0 if larger_better else d < 0)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    paired = compare(json.loads(args.first.read_text()), json.loads(args.second.read_text()))
    result = {"first": str(args.first), "second": str(args.second), "paired": paired}
    for key, r in paired.items():
        ci = f"95% CI {r['ci95_low']:+.4f} .. {r['ci95_high']:+.4f}"
        better = f"first better on {r['first_better_fraction']:.0%} of {r['n_proteins']}"
        print(f"{key}: mean difference {r['mean_difference']:+.4f} ({ci}), {better}")
    if args.out is not None:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
