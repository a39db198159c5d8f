"""Time structure loading (and optionally SASA) over a directory of structure files.

Usage: ``python benchmarks/bench_structure_io.py [DIR] [--sasa] [--biotite]`` (default DIR: ../shared/data/dev).
Reports wall time per stage; ``--biotite`` also times biotite's own PDB reader on the same files as a
baseline (``PDBFile.read(...).get_structure(model=1, altloc="occupancy")``, no atom37 conversion).
Run under ``flock /tmp/openesm3-bench.lock`` on a shared machine; numbers are indicative.
"""

from __future__ import annotations

import argparse
import gzip
import io
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from openesm3.structure import load_structure  # noqa: E402
from openesm3.structure.io import SUFFIX_FORMATS  # noqa: E402


def _files(root: Path) -> list[Path]:
    suffixes = tuple(SUFFIX_FORMATS) + tuple(s + ".gz" for s in SUFFIX_FORMATS)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=REPO.parent / "shared" / "data" / "dev")
    parser.add_argument("--sasa", action="store_true", help="also time per-residue SASA of every chain")
    parser.add_argument("--biotite", action="store_true", help="also time biotite's PDB reader as a baseline")
    args = parser.parse_args()
    files = _files(args.root)
    load_structure(files[0])  # imports and the CCD lookup tables, paid once per process

    per_file = []
    residues = 0
    start = time.perf_counter()
    complexes = []
    for path in files:
        t0 = time.perf_counter()
        complex_ = load_structure(path)
        per_file.append(time.perf_counter() - t0)
        residues += len(complex_)
        complexes.append(complex_)
    total = time.perf_counter() - start
    print(
        f"load_structure: {len(files)} files, {residues} residues in {total:.2f} s "
        f"({1e3 * total / len(files):.2f} ms/file mean, {1e3 * statistics.median(per_file):.2f} ms median)"
    )

    if args.sasa:
        start = time.perf_counter()
        for complex_ in complexes:
            for chain in complex_:
                chain.sasa()
        print(f"sasa: {time.perf_counter() - start:.2f} s for {residues} residues")

    if args.biotite:
        from biotite.structure.io.pdb import PDBFile  # noqa: PLC0415

        start = time.perf_counter()
        for path in files:
            data = path.read_bytes()
            text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
            PDBFile.read(io.StringIO(text)).get_structure(model=1, altloc="occupancy", extra_fields=["b_factor"])
        total = time.perf_counter() - start
        print(f"biotite PDBFile.get_structure: {total:.2f} s ({1e3 * total / len(files):.2f} ms/file)")


if __name__ == "__main__":
    main()
