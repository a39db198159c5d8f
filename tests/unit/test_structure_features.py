"""Per-residue features of whole structures (``openesm3.structure.features``, what ``openesm3 featurize`` prints)
and the SS8/SASA annotations of ``Protein.from_structure``: residues DSSP cannot assess must not pass for coil."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from openesm3.protein import Protein
from openesm3.structure import ProteinChain, load_chain
from openesm3.structure import residue_constants as RC
from openesm3.structure.complex import ProteinComplex
from openesm3.structure.dssp import assign_ss8
from openesm3.structure.features import SS8_NOT_ASSIGNED, featurize
from tests.conftest import TEST_DATA

LYSOZYME = TEST_DATA / "structures" / "107L.pdb.gz"


def _drop_atoms(chain: ProteinChain, rows: np.ndarray | slice, slots: list[int]) -> ProteinChain:
    atom37, mask = chain.atom37.copy(), chain.atom37_mask.copy()
    sel = np.zeros(len(chain), dtype=bool)
    sel[rows] = True
    for slot in slots:
        atom37[sel, slot] = np.nan
        mask[sel, slot] = False
    return replace(chain, atom37=atom37, atom37_mask=mask)


def test_residues_without_a_complete_backbone_are_not_reported_as_coil() -> None:
    chain = load_chain(LYSOZYME)
    full = featurize(ProteinComplex((chain,), "107L"))[0].ss8
    assert set(full) <= set("GHITEBSC") and full.count("H") > 50  # mostly helical protein
    # Residues 60..79 reduced to CA only: DSSP (like mkdssp) skips them, so they have no assignment.
    rows = slice(60, 80)
    partial = _drop_atoms(chain, rows, [i for i in range(RC.N_ATOM37) if i != RC.ATOM_CA])
    ss8 = featurize(ProteinComplex((partial,), "107L"))[0].ss8
    assert ss8[rows] == SS8_NOT_ASSIGNED * 20
    assert set(ss8[:58] + ss8[82:]) <= set("GHITEBSC")  # the others keep real states
    # A backbone without O (N, CA, C only) cannot be assessed at all; before, it came out as all coil.
    no_oxygen = _drop_atoms(chain, slice(None), [RC.ATOM_O])
    assert featurize(ProteinComplex((no_oxygen,), "107L"))[0].ss8 == SS8_NOT_ASSIGNED * len(chain)
    # The library function keeps its documented default (coil) unless asked otherwise.
    assert set(assign_ss8(no_oxygen.atom37)) == {"C"}


def test_protein_annotations_mask_residues_dssp_cannot_assess() -> None:
    chain = load_chain(LYSOZYME)
    annotated = Protein.from_structure(chain, with_annotations=True)
    assert annotated.secondary_structure is not None and "_" not in annotated.secondary_structure
    no_oxygen = _drop_atoms(chain, slice(None), [RC.ATOM_O])
    masked = Protein.from_structure(no_oxygen, with_annotations=True)
    # Masked (unknown to the model), not a confident "all coil" conditioning.
    assert masked.secondary_structure == "_" * len(chain)
