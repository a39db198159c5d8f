"""Per-residue solvent-accessible surface area, as the reference computes it for ESM3's SASA track (spec §12).

The reference builds a biotite atom array from the chain's atom37 atoms (residue names from the one-letter
sequence, X and other letters -> UNK; element = first letter of the atom name), runs biotite's Shrake-Rupley
``sasa`` with its defaults (probe 1.4 A, 1000 Fibonacci points, ProtOr radii, ions ignored) and sums the atom
values per residue. We do the same, with two differences that do not change any value: the ProtOr radii are
looked up once per distinct (residue, atom) name pair instead of once per atom (biotite's own loop), and a
residue without atoms gets NaN (the reference requires every residue to have atoms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from openesm3.structure import residue_constants as RC

if TYPE_CHECKING:
    from openesm3.structure.chain import ProteinChain

SASA_PROBE_RADIUS = 1.4  # biotite default, used by the reference (spec §12)
SASA_POINTS = 1000  # biotite default, used by the reference (spec §12)
# biotite's fallback for atoms ProtOr has no radius for (residues named UNK). For an atom name its residue does
# not have, biotite raises KeyError (so would the reference); we use the same fallback instead.
PROTOR_DEFAULT_RADIUS = 1.8


def _protor_radii(res_names: np.ndarray, atom_names: np.ndarray) -> np.ndarray:
    from biotite.structure.info import vdw_radius_protor  # noqa: PLC0415

    pairs = np.char.add(np.char.add(res_names, ":"), atom_names)
    uniq, inverse = np.unique(pairs, return_inverse=True)
    radii = np.empty(len(uniq), dtype=np.float32)
    for k, pair in enumerate(uniq.tolist()):  # one lookup per distinct (residue, atom) name pair
        res, atom = pair.split(":")
        try:
            radius = vdw_radius_protor(res, atom)
        except KeyError:  # an atom name the residue does not have (e.g. ILE "CD" in old files): default radius
            radius = None
        radii[k] = PROTOR_DEFAULT_RADIUS if radius is None else radius
    return radii[inverse.reshape(-1)]


def residue_sasa(chain: ProteinChain) -> np.ndarray:
    """[L] float32 SASA per residue in A^2 (sum of its atoms' Shrake-Rupley areas); NaN for residues with no atoms.

    Only the chain's own atoms are present, so in a complex the other chains do not occlude it (as in the
    reference, which works per chain).
    """
    import biotite.structure as struc  # noqa: PLC0415

    out = np.full(len(chain), np.nan, dtype=np.float32)
    residue, slot = np.nonzero(chain.atom37_mask)
    if len(residue) == 0:
        return out
    res_names = np.array([RC.three_letter_code(aa) for aa in chain.sequence], dtype="<U3")[residue]
    atom_names = np.array(RC.ATOM37_NAMES)[slot]
    atoms = struc.AtomArray(len(residue))
    atoms.coord = chain.atom37[residue, slot]
    atoms.res_id = residue + 1
    atoms.res_name = res_names
    atoms.atom_name = atom_names
    atoms.element = np.array([name[0] for name in RC.ATOM37_NAMES])[slot]
    per_atom = struc.sasa(
        atoms,
        probe_radius=SASA_PROBE_RADIUS,
        point_number=SASA_POINTS,
        vdw_radii=_protor_radii(res_names, atom_names),
        ignore_ions=True,
    )
    sums = np.bincount(residue, weights=np.nan_to_num(per_atom), minlength=len(chain))
    has_atoms = chain.atom37_mask.any(axis=1)
    out[has_atoms] = sums[has_atoms]
    return out


def relative_sasa(sasa: np.ndarray, sequence: str) -> np.ndarray:
    """[L] float32 SASA / maximal ASA of the residue type (Tien et al. 2013, theoretical; NaN outside the 20).

    Values can exceed 1 for exposed terminal residues, as with any maximal-ASA normalisation.
    """
    max_asa = np.array([RC.MAX_ASA_TIEN2013.get(aa, np.nan) for aa in sequence], dtype=np.float32)
    return (np.asarray(sasa, dtype=np.float32) / max_asa).astype(np.float32)
