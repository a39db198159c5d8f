"""Time ``Protein(coordinates=...)`` for coordinates given as nested Python lists against the same as a NumPy array.

Usage: ``python benchmarks/bench_coordinate_lists.py [--residues N] [--repeats R]`` (default 5000 residues, 5 runs).
Three forms of the same random ``[N, 37, 3]`` coordinates, a third of the atoms missing:

- ``array``: a float32 NumPy array (NaN for missing atoms), the baseline;
- ``lists``: ``array.tolist()``, every atom a list of three floats (NaN for missing ones);
- ``json``: as the JSON format holds them (``Protein.save`` to ``.json``, read back by ``json.loads``), a missing
  atom is ``None`` (JSON ``null``).

Reports the median wall time of each and its ratio to the array time. Run under ``flock /tmp/openesm3-bench.lock``
on a shared machine; numbers are indicative.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402

from openesm3.protein import Protein  # noqa: E402
from openesm3.protein_io import json_string  # noqa: E402


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residues", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.residues < 1 or args.repeats < 1:
        parser.error("--residues and --repeats must be at least 1")
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(args.residues, 37, 3)) * 30).astype(np.float32)
    array[rng.random((args.residues, 37)) < 1 / 3] = np.nan
    sequence = "A" * args.residues
    forms: dict[str, Any] = {
        "array": array,
        "lists": array.tolist(),
        "json": json.loads(json_string(Protein(sequence=sequence, coordinates=array)))["coordinates"],
    }
    base = None
    for label, coordinates in forms.items():
        median = _median_s(lambda c=coordinates: Protein(sequence=sequence, coordinates=c), args.repeats)
        base = base or median
        print(f"{label:>6}: {1e3 * median:8.2f} ms  ({median / base:6.1f}x the array time)")


if __name__ == "__main__":
    main()
