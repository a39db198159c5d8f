"""Learning curves of a tokenizer training run (``metrics.jsonl``) as a PNG: losses, CA RMSD, lDDT-CA, codebook
perplexity, train and validation.

    python scripts/plot_tokenizer_curves.py runs/tokenizer_v2_stage1 docs/tokenizer_v2_stage1_curves.png --title "S1"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from openesm3.cli.common import one_line_errors


def read(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]


def series(rows: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r["split"] != split:
            continue
        value = r["loss"] if key == "loss" else r["metrics"].get(key)
        if value is not None:
            xs.append(r["step"])
            ys.append(value)
    return xs, ys


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    rows = read(args.run)
    loss_keys = sorted({k for r in rows for k in r["metrics"] if k.startswith("loss_")})
    panels = [("loss", "total loss"), ("ca_rmsd", "CA RMSD after Kabsch (A)"), ("lddt_ca", "lDDT-CA")]
    if any("codebook_perplexity" in r["metrics"] for r in rows):
        panels.append(("codebook_perplexity", "codebook perplexity (EMA usage)"))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.6))
    for ax, (key, label) in zip(axes, panels):
        for split, style in (("train", "-"), ("valid", "o-")):
            xs, ys = series(rows, split, key)
            if xs:
                ax.plot(xs, ys, style, label=split, markersize=3)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[-1]
    for key in loss_keys:
        xs, ys = series(rows, "train", key)
        ax.plot(xs, ys, label=key.removeprefix("loss_"))
    ax.set_yscale("log")
    ax.set_title("loss terms (train)", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
