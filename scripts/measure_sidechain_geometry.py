"""Measure the ideal side-chain coordinates of ``openesm3.structure.sidechain_geometry`` from real structures.

Every atom's position in its rigid group's frame at torsion 0, averaged over the residues of the train-split
``top240`` files of the dev set (high-resolution X-ray). Prints the Python table that the module holds.

    python scripts/measure_sidechain_geometry.py ../shared/data/dev
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from openesm3.cli.common import one_line_errors
from openesm3.structure.io import load_chain
from openesm3.structure.sidechain_geometry import format_table, measure_ideal_coordinates


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dev", type=Path, help="the dev data directory (with manifest.tsv and top240/)")
    parser.add_argument("--subset", default="top240")
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    rows = list(csv.DictReader(open(args.dev / "manifest.tsv", encoding="utf-8"), delimiter="\t"))
    files = [r for r in rows if r["subset"] == args.subset and r["suggested_split"] == args.split]
    chains = []
    n_res = 0
    for r in files:
        chain = load_chain(args.dev / r["file"], chain_id=r["primary_chain"])
        chains.append((chain.sequence, np.asarray(chain.atom37), np.asarray(chain.atom37_mask)))
        n_res += len(chain.sequence)
    table = measure_ideal_coordinates(chains)
    header = [
        f"# Measured by scripts/measure_sidechain_geometry.py on {len(files)} {args.subset} "
        f"{args.split}-split chains ({n_res} residues) of the dev set."
    ]
    print(format_table(table, header))


if __name__ == "__main__":
    raise SystemExit(main())
