"""Test helpers for DSSP: a minimal PDB -> atom37 loader and the mkdssp reference table.

The loader is private to the DSSP tests (the project's reader, ``openesm3.structure.io``, can replace it): biotite,
first model, amino-acid residues including modified ones (biotite's CCD amino-acid names), one residue per
(chain, resseq, icode) in file order, N/CA/C/O (and CD, to spot prolines) in their atom37 slots.

Alternate locations, two rules:
- ``"last"``: the last record of each atom name wins, whatever its altloc. This is what mkdssp 4.2.2 does (it
  overwrites a backbone atom each time it meets one), so it is the rule for comparing with mkdssp.
- ``"occupancy"``: the altloc with the highest summed occupancy over the residue (first one on ties), plus the
  atoms without altloc.
biotite's own ``altloc="occupancy"``/``"first"`` only recognise letters and drop every atom of a residue whose
altloc ids are digits (e.g. '1'/'2' in 1dos), hence the selection here.
"""

from __future__ import annotations

import functools
import gzip
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from biotite.structure.info import amino_acid_names
from biotite.structure.io.pdb import PDBFile

# atom37 slots (spec §12) of the atoms DSSP reads: backbone N, CA, C, O and proline CD.
_SLOTS = {"N": 0, "CA": 1, "C": 2, "O": 4, "CD": 11}
_NO_ALTLOC = (".", "?", " ", "")

ResidueKey = tuple[str, int, str]


@dataclass(frozen=True)
class LoadedChains:
    atom37: np.ndarray  # [L, 37, 3] float32, NaN where absent
    chain_index: np.ndarray  # [L] int64, chains numbered in order of appearance
    residue_index: np.ndarray  # [L] int64 (PDB resseq)
    sequence: str  # 'P' for PRO, 'X' for anything else (only prolines matter to DSSP)
    keys: list[ResidueKey]  # (chain, resseq, icode) per residue


def _chosen_atoms(alt: list[str], occ: np.ndarray, names: list[str], mode: str) -> list[int]:
    """Indices (within one residue) of the atoms kept under the altloc rule ``mode``."""
    if mode == "last":
        last = {name: k for k, name in enumerate(names)}
        return sorted(last.values())
    if mode != "occupancy":
        raise ValueError(f"altloc rule {mode!r}: use 'last' or 'occupancy'")
    named = [x for x in dict.fromkeys(alt) if x not in _NO_ALTLOC]
    if not named:
        return list(range(len(alt)))
    alt_arr = np.array(alt)
    chosen = max(named, key=lambda x: (float(occ[alt_arr == x].sum()), -named.index(x)))
    return [k for k, x in enumerate(alt) if x in _NO_ALTLOC or x == chosen]


@functools.cache
def _amino_acid_names() -> frozenset[str]:
    return frozenset(amino_acid_names())


def _is_amino_acid(res_name: np.ndarray) -> np.ndarray:
    """biotite's ``filter_amino_acids`` (CCD amino acids, modified ones included), looked up once per name."""
    names, inverse = np.unique(res_name, return_inverse=True)
    known = _amino_acid_names()
    return np.array([name in known for name in names.tolist()], dtype=bool)[inverse.reshape(-1)]


def _first_model_dssp_atoms(text: str) -> str:
    """The ATOM/HETATM records of the first model whose atom is one DSSP reads (4x less for biotite to parse)."""
    keep = []
    for line in text.splitlines():
        if line.startswith(("ATOM  ", "HETATM")):
            if line[12:16].strip() in _SLOTS:
                keep.append(line)
        elif line.startswith("ENDMDL"):
            break
    return "\n".join(keep) + "\n"


def load_pdb_backbone(path: Path | str, altloc: Literal["last", "occupancy"] = "last") -> LoadedChains:
    """Read a (gzipped) PDB file into atom37 arrays holding N, CA, C, O (and CD) of every amino-acid residue."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    pdb = PDBFile.read(io.StringIO(_first_model_dssp_atoms(raw.decode("latin-1"))))
    atoms = pdb.get_structure(model=1, altloc="all", extra_fields=["occupancy"])
    atoms = atoms[_is_amino_acid(atoms.res_name)]
    chain_ids = atoms.chain_id.tolist()
    res_ids = atoms.res_id.tolist()
    icodes = atoms.ins_code.tolist()
    names = atoms.atom_name.tolist()
    alts = atoms.altloc_id.tolist()
    res_names = atoms.res_name.tolist()
    occupancy = atoms.occupancy
    xyz = atoms.coord
    # Residues = runs of one (chain, resseq, icode); microheterogeneity (two residue names) stays one residue.
    starts = (
        [0]
        + [
            k
            for k in range(1, len(res_ids))
            if (chain_ids[k], res_ids[k], icodes[k]) != (chain_ids[k - 1], res_ids[k - 1], icodes[k - 1])
        ]
        + [len(res_ids)]
    )
    n_res = len(starts) - 1
    coords = np.full((n_res, 37, 3), np.nan, dtype=np.float32)
    keys: list[ResidueKey] = []
    letters: list[str] = []
    chain_map: dict[str, int] = defaultdict(lambda: len(chain_map))
    chain_index = np.zeros(n_res, dtype=np.int64)
    for r, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        kept = [lo + k for k in _chosen_atoms(alts[lo:hi], occupancy[lo:hi], names[lo:hi], altloc)]
        res_name = res_names[lo]
        for k in kept:
            slot = _SLOTS.get(names[k])
            if slot is not None:
                coords[r, slot] = xyz[k]
            if names[k] == "CA":
                res_name = res_names[k]
        keys.append((chain_ids[lo], int(res_ids[lo]), icodes[lo]))
        letters.append("P" if res_name == "PRO" else "X")
        chain_index[r] = chain_map[chain_ids[lo]]
    residue_index = np.array([k[1] for k in keys], dtype=np.int64)
    return LoadedChains(coords, chain_index, residue_index, "".join(letters), keys)


def read_mkdssp_table(path: Path | str) -> dict[str, dict[ResidueKey, str]]:
    """mkdssp_ss8.tsv.gz -> {file: {(chain, resseq, icode): ss8}}, with blank and P (polyproline) mapped to C."""
    table: dict[str, dict[ResidueKey, str]] = defaultdict(dict)
    with gzip.open(path, "rt") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        col = {name: k for k, name in enumerate(header)}
        for line in handle:
            f = line.rstrip("\n").split("\t")
            ss = f[col["ss8"]].strip() or "C"
            if ss == "P":
                ss = "C"
            table[f[col["file"]]][(f[col["chain"]], int(f[col["resseq"]]), f[col["icode"]].strip())] = ss
    return dict(table)


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """NeRF: the atom d with |cd| = bond, angle(b, c, d) = angle and torsion(a, b, c, d) = torsion (degrees)."""
    angle, torsion = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    d = (-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion), bond * np.sin(angle) * np.sin(torsion))
    return c + d[0] * bc + d[1] * np.cross(n, bc) + d[2] * n


def ideal_backbone(phi: list[float], psi: list[float], omega: float = 180.0) -> np.ndarray:
    """[L, 37, 3] float64 backbone (N, CA, C, O; the rest NaN) with the given torsions (degrees), ideal geometry.

    Bond lengths and angles of Engh & Huber; O lies in the peptide plane, trans to the next N. Coordinates are
    rounded to 0.001 A, as a PDB file stores them: the expected strings in the tests are mkdssp 4.2.2's output on
    these coordinates written as PDB files.
    """
    n_res = len(phi)
    xyz = np.full((n_res, 37, 3), np.nan)
    n_at, ca, c_at = np.array([-0.5, 1.36, 0.0]), np.zeros(3), np.array([1.525, 0.0, 0.0])
    for k in range(n_res):
        if k > 0:
            n_at = _place(xyz[k - 1, 0], xyz[k - 1, 1], xyz[k - 1, 2], 1.329, 116.2, psi[k - 1])
            ca = _place(xyz[k - 1, 1], xyz[k - 1, 2], n_at, 1.458, 121.7, omega)
            c_at = _place(xyz[k - 1, 2], n_at, ca, 1.525, 111.2, phi[k])
        xyz[k, 0], xyz[k, 1], xyz[k, 2] = n_at, ca, c_at
        xyz[k, 4] = _place(n_at, ca, c_at, 1.231, 120.5, psi[k] + 180.0)
    return np.round(xyz, 3)


def ideal_helix(n_res: int) -> np.ndarray:
    """An ideal right-handed alpha helix (phi, psi) = (-57.8, -47.0)."""
    return ideal_backbone([-57.8] * n_res, [-47.0] * n_res)


def ideal_hairpin(strand: int = 7) -> np.ndarray:
    """Two antiparallel strands (phi, psi) = (-139, 135) joined by a two-residue turn (60, -120), (-80, 0)."""
    phi = [-139.0] * strand + [60.0, -80.0] + [-139.0] * strand
    psi = [135.0] * strand + [-120.0, 0.0] + [135.0] * strand
    return ideal_backbone(phi, psi)
