"""Paired comparison of two tokenizer evaluations (``benchmarks/eval_tokenizer.py`` JSONs) on the same proteins:
per-protein differences of lDDT-CA, backbone RMSD, TM-score and, where both have it, all-atom RMSD (first minus
second), their mean with a 95 % bootstrap interval, and the fraction of proteins on which the first is better.
Where both have the confidences, the same for their errors (|pTM - TM-score| and |mean pLDDT - lDDT-CA| per protein)
and the difference in how they rank proteins (Pearson r of pTM with TM-score, of mean pLDDT with lDDT-CA).
Medians of 77 proteins move by chance; the paired differences say whether one tokenizer is better on the same chains
(docs/tokenizer_training.md).

    python scripts/compare_tokenizer_evals.py FIRST.json SECOND.json [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openesm3.cli.common import one_line_errors
from openesm3.training.tokenizer.calibrate import pearson, r_difference
from openesm3.training.tokenizer.evaluate import bootstrap_mean
from openesm3.utils.atomic import atomic_write_json

# metric -> whether larger is better
METRICS = {"lddt_ca": True, "backbone_rmsd": False, "tm_score": True, "all_atom_rmsd": False}
# confidence -> the figure it estimates
CONFIDENCES = {"ptm": "tm_score", "mean_plddt": "lddt_ca"}


def compare_confidences(
    a: dict[str, dict], b: dict[str, dict], names: list[str], rng: np.random.Generator, *, n_boot: int
) -> dict[str, dict[str, float]]:
    """Per confidence both evaluations report: the paired difference of its absolute error (first - second; smaller
    is better), and of its Pearson r with what it estimates (each evaluation against its own truth), with 95 %
    bootstrap intervals over the proteins."""
    out: dict[str, dict[str, float]] = {}
    for conf, truth in CONFIDENCES.items():
        shared = [n for n in names if all(x[n].get(k) is not None for x in (a, b) for k in (conf, truth))]
        if len(shared) < 3:
            continue
        x = {k: np.array([[a[n][k], b[n][k]] for n in shared], dtype=np.float64) for k in (conf, truth)}
        error = np.abs(x[conf] - x[truth])
        d = error[:, 0] - error[:, 1]
        out[f"{conf}_abs_error"] = {
            "n_proteins": len(d),
            **bootstrap_mean(d, rng, n_boot=n_boot),
            "first_better_fraction": float(np.mean(d < 0)),
            "first_mean": float(error[:, 0].mean()),
            "second_mean": float(error[:, 1].mean()),
        }
        gain = r_difference(x[conf][:, 0], x[conf][:, 1], x[truth][:, 0], x[truth][:, 1], n_boot=n_boot)
        out[f"{conf}_vs_{truth}_r"] = {
            "n_proteins": len(d),
            "mean_difference": gain["difference"],
            "ci95_low": gain["low"],
            "ci95_high": gain["high"],
            "first": pearson(x[conf][:, 0], x[truth][:, 0]),
            "second": pearson(x[conf][:, 1], x[truth][:, 1]),
        }
    return out


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
    return out | compare_confidences(a, b, names, rng, n_boot=n_boot)


@one_line_errors
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
        if "first_better_fraction" not in r:  # a correlation: no per-protein winner
            print(f"{key}: {r['first']:.3f} against {r['second']:.3f}, difference {r['mean_difference']:+.4f} ({ci})")
            continue
        better = f"first better on {r['first_better_fraction']:.0%} of {r['n_proteins']}"
        print(f"{key}: mean difference {r['mean_difference']:+.4f} ({ci}), {better}")
    if args.out is not None:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
