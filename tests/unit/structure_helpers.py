"""Helpers shared by the structure tests: file locations and an independent reader of raw PDB lines."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tests.conftest import TEST_DATA

STRUCTURES = TEST_DATA / "structures"
DERIVED = STRUCTURES / "derived"


def pdb_lines(path: Path) -> list[str]:
    """ATOM/HETATM lines of a (gzip'd) PDB file, as text."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:  # type: ignore[operator]
        return [line.rstrip("\n") for line in handle if line.startswith(("ATOM", "HETATM"))]


def raw_atom(path: Path, chain: str, res_seq: int, atom: str, altloc: str = " ", icode: str = " ") -> np.ndarray:
    """Coordinates of one atom, read with plain string slicing (independent of the library's parser)."""
    for line in pdb_lines(path):
        if (
            line[21] == chain
            and int(line[22:26]) == res_seq
            and line[26] == icode
            and line[12:16].strip() == atom
            and line[16] == altloc
        ):
            return np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
    raise KeyError(f"{path.name}: no atom {chain} {res_seq}{icode.strip()} {atom} altloc {altloc!r}")


def assert_same_chains(a: object, b: object, atol: float = 1e-3) -> None:
    """Two complexes hold the same chains: ids, sequences, numbering, masks exactly; coordinates to ``atol``."""
    assert a.chain_ids == b.chain_ids  # type: ignore[attr-defined]
    for x, y in zip(a.chains, b.chains):  # type: ignore[attr-defined]
        assert x.sequence == y.sequence
        np.testing.assert_array_equal(x.residue_index, y.residue_index)
        np.testing.assert_array_equal(x.insertion_code, y.insertion_code)
        np.testing.assert_array_equal(x.atom37_mask, y.atom37_mask)
        np.testing.assert_allclose(x.atom37[x.atom37_mask], y.atom37[y.atom37_mask], atol=atol, rtol=0)
        assert np.isnan(y.atom37[~y.atom37_mask]).all()
