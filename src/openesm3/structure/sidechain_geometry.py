"""Side-chain rigid groups, torsion definitions and ideal local coordinates for all-atom decoding (paper A.1.7.2,
Algorithm 8 steps 4-6: "T_local from up to 7 torsions, composed along the side-chain tree into atom14").

Chemistry (standard facts, IUPAC-IUB 1970 chi definitions):

- **atom14**: per residue type, N, CA, C, O, then its side-chain heavy atoms in the order of
  :data:`openesm3.structure.residue_constants.RESIDUE_HEAVY_ATOMS` (Trp fills all 14 slots; OXT is not modelled).
- **Rigid groups** 0..5: 0 backbone (N, CA, C, CB), 1 psi (O), 2..5 chi1..chi4. A group's atoms move with its
  torsion; chi-k atoms are those placed by chi k and not by a later chi.
- **Torsion k of a group** is defined by four atoms (a, b, c, d): the group's frame has its origin at c, x along
  b -> c, and a in its xy-plane on the +y side; the torsion is the angle of d about x, ``atan2(d_z, d_y)``, which is
  the IUPAC dihedral a-b-c-d. Psi's group uses N-CA-C-O (the N-CA-C-O dihedral, psi + 180 degrees).
- Torsions of symmetric groups (Asp chi2, Glu chi3, Phe chi2, Tyr chi2) are defined only modulo pi.

Ideal coordinates (:data:`IDEAL_LOCAL_COORDS`) were **measured**, not copied: every atom's position in its group's
frame at torsion 0, averaged over the residues of the train-split ``top240`` structures of ``../shared/data/dev``
(high-resolution X-ray, Richardson lab), by :func:`measure_ideal_coordinates`; ``scripts/measure_sidechain_geometry.py``
regenerates the table. Backbone N, CA, C use ``constants.BACKBONE_LOCAL_COORDS`` (those the decoder places), so the
all-atom backbone equals the decoder's backbone.

This module is numpy only (the torch builder is :mod:`openesm3.geometry.all_atom`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from openesm3 import constants as C
from openesm3.structure.residue_constants import ATOM37_ORDER, RESIDUE_HEAVY_ATOMS, RESTYPE_1TO3

# Residue types in the official sequence-vocabulary order (ids 4..23); index 20 is "unknown" (backbone + O only).
RESTYPES: str = C.CANONICAL_AMINO_ACIDS
N_RESTYPES = len(RESTYPES) + 1
UNKNOWN_RESTYPE = len(RESTYPES)
N_ATOM14 = 14
N_GROUPS = 6  # backbone, psi, chi1..chi4
N_CHI = 4
GROUP_NAMES: tuple[str, ...] = ("backbone", "psi", "chi1", "chi2", "chi3", "chi4")
GROUP_PARENT: tuple[int, ...] = (-1, 0, 0, 2, 3, 4)  # psi and chi1 hang on the backbone, chi k on chi k-1
# The decoder's 7 torsion outputs (AlphaFold2's order omega, phi, psi, chi1..chi4): output slot of groups 1..5.
TORSION_SLOT_OF_GROUP: tuple[int, ...] = (-1, 2, 3, 4, 5, 6)

# Chi quadruples (IUPAC-IUB 1970).
CHI_ATOMS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ALA": (),
    "ARG": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "NE"), ("CG", "CD", "NE", "CZ")),
    "ASN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "ASP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "CYS": (("N", "CA", "CB", "SG"),),
    "GLN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "GLU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "GLY": (),
    "HIS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "ND1")),
    "ILE": (("N", "CA", "CB", "CG1"), ("CA", "CB", "CG1", "CD1")),
    "LEU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "LYS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "CE"), ("CG", "CD", "CE", "NZ")),
    "MET": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
    "PHE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "PRO": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD")),
    "SER": (("N", "CA", "CB", "OG"),),
    "THR": (("N", "CA", "CB", "OG1"),),
    "TRP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "TYR": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "VAL": (("N", "CA", "CB", "CG1"),),
}
PSI_ATOMS: tuple[str, str, str, str] = ("N", "CA", "C", "O")
# Chi torsions defined only modulo pi (a 180-degree flip swaps two chemically equivalent atoms): (residue, chi k).
PI_PERIODIC_CHI: frozenset[tuple[str, int]] = frozenset({("ASP", 2), ("GLU", 3), ("PHE", 2), ("TYR", 2)})
# Pairs of atoms swapped by that flip (for symmetry-aware all-atom RMSD).
SYMMETRIC_ATOMS: dict[str, tuple[tuple[str, str], ...]] = {
    "ASP": (("OD1", "OD2"),),
    "GLU": (("OE1", "OE2"),),
    "PHE": (("CD1", "CD2"), ("CE1", "CE2")),
    "TYR": (("CD1", "CD2"), ("CE1", "CE2")),
}


def atom14_names(resname: str) -> tuple[str, ...]:
    """The atom14 slots of a residue (three-letter name): N, CA, C, O, side chain (fewer than 14 for most)."""
    return tuple(a for a in RESIDUE_HEAVY_ATOMS[resname] if a != "OXT")


# Side-chain atoms of each chi group (chi1, chi2, ...): the atoms that chi k places and no later chi moves.
CHI_GROUP_ATOMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ALA": (),
    "ARG": (("CG",), ("CD",), ("NE",), ("CZ", "NH1", "NH2")),
    "ASN": (("CG",), ("OD1", "ND2")),
    "ASP": (("CG",), ("OD1", "OD2")),
    "CYS": (("SG",),),
    "GLN": (("CG",), ("CD",), ("OE1", "NE2")),
    "GLU": (("CG",), ("CD",), ("OE1", "OE2")),
    "GLY": (),
    "HIS": (("CG",), ("ND1", "CD2", "CE1", "NE2")),
    "ILE": (("CG1", "CG2"), ("CD1",)),
    "LEU": (("CG",), ("CD1", "CD2")),
    "LYS": (("CG",), ("CD",), ("CE",), ("NZ",)),
    "MET": (("CG",), ("SD",), ("CE",)),
    "PHE": (("CG",), ("CD1", "CD2", "CE1", "CE2", "CZ")),
    "PRO": (("CG",), ("CD",)),
    "SER": (("OG",),),
    "THR": (("OG1", "CG2"),),
    "TRP": (("CG",), ("CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2")),
    "TYR": (("CG",), ("CD1", "CD2", "CE1", "CE2", "CZ", "OH")),
    "VAL": (("CG1", "CG2"),),
}


def group_of_atom(resname: str, atom: str) -> int:
    """Rigid group (0..5) of an atom14 atom of ``resname``: 0 backbone (N, CA, C, CB), 1 psi (O), 2 + k chi k+1."""
    if atom in ("N", "CA", "C", "CB"):
        return 0
    if atom == "O":
        return 1
    for k, atoms in enumerate(CHI_GROUP_ATOMS[resname]):
        if atom in atoms:
            return 2 + k
    raise ValueError(f"{resname} has no atom {atom!r} in a rigid group")


def group_definitions(resname: str) -> list[tuple[str, str, str, str] | None]:
    """The four defining atoms of groups 1..5 (psi, chi1..chi4) of a residue; None for groups it lacks."""
    chis = CHI_ATOMS[resname]
    return [PSI_ATOMS] + [chis[k] if k < len(chis) else None for k in range(N_CHI)]


# Measured by scripts/measure_sidechain_geometry.py on 198 top240 train-split chains (39925 residues) of the dev set.
IDEAL_LOCAL_COORDS: dict[str, dict[str, tuple[float, float, float]]] = {
    "ALA": {
        "CB": (0.5224, -0.7635, 1.2116),
        "O": (0.6237, 1.0677, 0.0),
    },
    "ARG": {
        "CB": (0.522, -0.7754, 1.2076),
        "CD": (0.5531, 1.4114, 0.0),
        "CG": (0.6071, 1.3938, 0.0),
        "CZ": (0.7601, 1.0907, 0.0),
        "NE": (0.5338, 1.3558, 0.0),
        "NH1": (0.2972, 2.2515, 0.0017),
        "NH2": (2.0077, 1.0127, 0.0002),
        "O": (0.6248, 1.0662, 0.0),
    },
    "ASN": {
        "CB": (0.5358, -0.7786, 1.2021),
        "CG": (0.5793, 1.4032, 0.0),
        "ND2": (0.5962, -1.181, 0.0032),
        "O": (0.6202, 1.0684, 0.0),
        "OD1": (0.6319, 1.0627, 0.0),
    },
    "ASP": {
        "CB": (0.5314, -0.7758, 1.2055),
        "CG": (0.5949, 1.397, 0.0),
        "O": (0.622, 1.0674, 0.0),
        "OD1": (0.6178, 1.0809, 0.0),
        "OD2": (0.5765, -1.1055, 0.0006),
    },
    "CYS": {
        "CB": (0.5215, -0.7685, 1.2136),
        "O": (0.6201, 1.0684, 0.0),
        "SG": (0.7266, 1.6576, 0.0),
    },
    "GLN": {
        "CB": (0.5216, -0.7771, 1.2062),
        "CD": (0.5846, 1.4005, 0.0),
        "CG": (0.6008, 1.3981, 0.0),
        "NE2": (0.5976, -1.1817, 0.0019),
        "O": (0.6227, 1.0666, 0.0),
        "OE1": (0.6368, 1.0591, 0.0),
    },
    "GLU": {
        "CB": (0.5139, -0.7767, 1.209),
        "CD": (0.6091, 1.3878, 0.0),
        "CG": (0.6164, 1.3921, 0.0),
        "O": (0.625, 1.0661, 0.0),
        "OE1": (0.6145, 1.0822, 0.0),
        "OE2": (0.5734, -1.1068, -0.0022),
    },
    "GLY": {
        "O": (0.6245, 1.0668, 0.0),
    },
    "HIS": {
        "CB": (0.5191, -0.7769, 1.2163),
        "CD2": (0.8707, -1.0417, 0.0023),
        "CE1": (2.0322, 0.815, 0.0032),
        "CG": (0.5877, 1.3813, 0.0),
        "ND1": (0.7517, 1.1477, 0.0),
        "NE2": (2.1248, -0.5021, 0.0039),
        "O": (0.6222, 1.0674, 0.0),
    },
    "ILE": {
        "CB": (0.545, -0.7865, 1.2186),
        "CD1": (0.6117, 1.3991, 0.0),
        "CG1": (0.5288, 1.4419, 0.0),
        "CG2": (0.5436, -0.7824, -1.2009),
        "O": (0.6227, 1.0673, 0.0),
    },
    "LEU": {
        "CB": (0.5288, -0.7621, 1.218),
        "CD1": (0.5226, 1.4301, 0.0),
        "CD2": (0.5225, -0.7573, 1.2102),
        "CG": (0.6837, 1.3659, 0.0),
        "O": (0.6218, 1.0672, 0.0),
    },
    "LYS": {
        "CB": (0.5173, -0.7692, 1.2122),
        "CD": (0.5504, 1.4173, 0.0),
        "CE": (0.5639, 1.4137, 0.0),
        "CG": (0.6098, 1.392, 0.0),
        "NZ": (0.5446, 1.3828, 0.0),
        "O": (0.6242, 1.0666, 0.0),
    },
    "MET": {
        "CB": (0.5231, -0.7735, 1.2085),
        "CE": (0.3252, 1.7549, 0.0),
        "CG": (0.6006, 1.3917, 0.0),
        "O": (0.6205, 1.0687, 0.0),
        "SD": (0.6722, 1.6808, 0.0),
    },
    "PHE": {
        "CB": (0.5257, -0.7703, 1.2163),
        "CD1": (0.7062, 1.1989, 0.0),
        "CD2": (0.6986, -1.2021, 0.0002),
        "CE1": (2.0995, 1.2018, 0.0005),
        "CE2": (2.0925, -1.2075, 0.0009),
        "CG": (0.6058, 1.381, 0.0),
        "CZ": (2.7885, -0.004, 0.0005),
        "O": (0.6231, 1.0664, 0.0),
    },
    "PRO": {
        "CB": (0.5593, -0.6276, 1.2738),
        "CD": (0.3797, 1.4665, 0.0),
        "CG": (0.3639, 1.4582, 0.0),
        "O": (0.6269, 1.0662, 0.0),
    },
    "SER": {
        "CB": (0.5207, -0.7721, 1.2108),
        "O": (0.6226, 1.0671, 0.0),
        "OG": (0.4911, 1.3292, 0.0),
    },
    "THR": {
        "CB": (0.528, -0.7895, 1.2225),
        "CG2": (0.5609, -0.7245, -1.2148),
        "O": (0.6221, 1.0683, 0.0),
        "OG1": (0.4443, 1.3643, 0.0),
    },
    "TRP": {
        "CB": (0.5285, -0.7752, 1.2114),
        "CD1": (0.8138, 1.1007, 0.0),
        "CD2": (0.8487, -1.1449, -0.0068),
        "CE2": (2.1739, -0.6628, -0.0087),
        "CE3": (0.6201, -2.5233, -0.0083),
        "CG": (0.6089, 1.3736, 0.0),
        "CH2": (3.0234, -2.872, -0.0171),
        "CZ2": (3.2733, -1.5177, -0.0144),
        "CZ3": (1.7154, -3.3749, -0.0142),
        "NE1": (2.1222, 0.6997, -0.0045),
        "O": (0.6227, 1.0664, 0.0),
    },
    "TYR": {
        "CB": (0.5195, -0.7681, 1.2205),
        "CD1": (0.7129, 1.1978, 0.0),
        "CD2": (0.7056, -1.1993, 0.0017),
        "CE1": (2.1033, 1.2008, -0.0017),
        "CE2": (2.0952, -1.2084, 0.0012),
        "CG": (0.6013, 1.3875, 0.0),
        "CZ": (2.7837, -0.0054, -0.0013),
        "O": (0.6241, 1.0661, 0.0),
        "OH": (4.1569, -0.0112, -0.0023),
    },
    "VAL": {
        "CB": (0.544, -0.7851, 1.2148),
        "CG1": (0.5451, 1.4263, 0.0),
        "CG2": (0.5359, -0.7705, 1.1994),
        "O": (0.6222, 1.0679, 0.0),
    },
}


# --------------------------------------------------------------------------------------------------------
# Frames and torsions in numpy (float64).
# --------------------------------------------------------------------------------------------------------
def frame_from_atoms(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation [..., 3, 3] (columns x, y, z) and origin [..., 3] of the frame with origin c, x along b -> c and a
    in the xy-plane on the +y side (the group frame of a torsion a-b-c-d at angle 0)."""
    x = c - b
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    v = a - b
    y = v - (v * x).sum(-1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1), c


def to_local(rot: np.ndarray, origin: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Coordinates [..., 3] of global points p in the frame (rot, origin)."""
    return np.einsum("...ji,...j->...i", rot, p - origin)


def torsion_angle(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The torsion of d about b -> c relative to a, ``atan2(d_z, d_y)`` in :func:`frame_from_atoms` (radians)."""
    rot, origin = frame_from_atoms(a, b, c)
    local = to_local(rot, origin, d)
    return np.arctan2(local[..., 2], local[..., 1])


def backbone_phi_psi(backbone: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backbone dihedrals phi (C-1, N, CA, C) and psi (N, CA, C, N+1) in radians, [L] each, from N, CA, C
    [L, 3, 3]; NaN where a residue lacks a backbone (``mask`` [L] False) or the peptide bond to the neighbour is
    missing (C-N > 2 A: chain breaks and gaps)."""
    n = len(backbone)
    phi, psi = np.full(n, np.nan), np.full(n, np.nan)
    if n < 2:
        return phi, psi
    with np.errstate(invalid="ignore", divide="ignore"):
        bonded = mask[1:] & mask[:-1] & (np.linalg.norm(backbone[1:, 0] - backbone[:-1, 2], axis=-1) < 2.0)
        n_at, ca, c = backbone[:, 0], backbone[:, 1], backbone[:, 2]
        phi[1:] = np.where(bonded, torsion_angle(c[:-1], n_at[1:], ca[1:], c[1:]), np.nan)
        psi[:-1] = np.where(bonded, torsion_angle(n_at[:-1], ca[:-1], c[:-1], n_at[1:]), np.nan)
    return phi, psi


def rotate_x(p: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points [..., 3] rotated by ``angle`` [...] about the x-axis."""
    cos, sin = np.cos(angle), np.sin(angle)
    y = cos * p[..., 1] - sin * p[..., 2]
    z = sin * p[..., 1] + cos * p[..., 2]
    return np.stack([p[..., 0], y, z], axis=-1)


def backbone_frame(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's backbone frame (paper Algorithm 5: origin CA, x along C -> CA, N in the xy-plane)."""
    x = ca - c
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    v = n - ca
    y = v - (v * x).sum(-1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return np.stack([x, y, np.cross(x, y)], axis=-1), ca


# --------------------------------------------------------------------------------------------------------
# Measuring ideal coordinates.
# --------------------------------------------------------------------------------------------------------
def measure_ideal_coordinates(
    chains: Iterable[tuple[str, np.ndarray, np.ndarray]],
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Mean local coordinates of every atom14 atom in its group frame at torsion 0.

    Args:
        chains: ``(sequence, atom37 [L, 37, 3], atom37_mask [L, 37])`` per chain.

    Returns:
        ``{three-letter name: {atom: (x, y, z)}}`` for the 20 residues; backbone N, CA, C are not measured
        (``BACKBONE_LOCAL_COORDS`` is used). A residue instance counts for a group when all the atoms it needs
        are present.
    """
    sums: dict[tuple[str, str], np.ndarray] = {}
    counts: dict[tuple[str, str], int] = {}
    for sequence, atom37, mask in chains:
        for one, three in RESTYPE_1TO3.items():
            rows = np.flatnonzero(np.frombuffer(sequence.encode("ascii"), dtype=np.uint8) == ord(one))
            if len(rows) == 0:
                continue
            xyz = atom37[rows].astype(np.float64)
            present = mask[rows]

            def idx(name: str) -> int:
                return ATOM37_ORDER[name]

            for atom in atom14_names(three):
                if atom in ("N", "CA", "C"):
                    continue
                g = group_of_atom(three, atom)
                if g == 0:
                    ok = present[:, [idx(n) for n in ("N", "CA", "C", atom)]].all(-1)
                    rot, origin = backbone_frame(xyz[:, idx("N")], xyz[:, idx("CA")], xyz[:, idx("C")])
                    local = to_local(rot, origin, xyz[:, idx(atom)])
                else:
                    defn = group_definitions(three)[g - 1]
                    assert defn is not None
                    a, b, c, d = defn
                    ok = present[:, [idx(n) for n in (a, b, c, d, atom)]].all(-1)
                    rot, origin = frame_from_atoms(xyz[:, idx(a)], xyz[:, idx(b)], xyz[:, idx(c)])
                    angle = torsion_angle(xyz[:, idx(a)], xyz[:, idx(b)], xyz[:, idx(c)], xyz[:, idx(d)])
                    local = rotate_x(to_local(rot, origin, xyz[:, idx(atom)]), -angle)
                ok &= np.isfinite(local).all(-1)
                key = (three, atom)
                sums[key] = sums.get(key, np.zeros(3)) + local[ok].sum(0)
                counts[key] = counts.get(key, 0) + int(ok.sum())
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for (three, atom), total in sorted(sums.items()):
        n = counts[(three, atom)]
        if n:
            mean = total / n
            out.setdefault(three, {})[atom] = (
                round(float(mean[0]), 4),
                round(float(mean[1]), 4),
                round(float(mean[2]), 4),
            )
    return out


def format_table(table: dict[str, dict[str, tuple[float, float, float]]], header: Sequence[str] = ()) -> str:
    """Python source of :data:`IDEAL_LOCAL_COORDS` for a measured table (one atom per line)."""
    lines = [*header, "IDEAL_LOCAL_COORDS: dict[str, dict[str, tuple[float, float, float]]] = {"]
    for three in sorted(table):
        lines.append(f'    "{three}": {{')
        lines += [f'        "{a}": ({x + 0.0}, {y + 0.0}, {z + 0.0}),' for a, (x, y, z) in table[three].items()]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines)
