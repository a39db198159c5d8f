"""Per-residue SASA: equal to a direct biotite computation; buried residues are buried; relative SASA."""

from __future__ import annotations

import gzip
from dataclasses import replace

import biotite.structure as struc
import numpy as np
import pytest
from biotite.structure.io import pdb

from openesm3.structure import ProteinChain, load_chain, relative_sasa
from openesm3.structure import residue_constants as RC
from tests.unit.structure_helpers import STRUCTURES


@pytest.fixture(scope="module")
def lysozyme() -> ProteinChain:
    return load_chain(STRUCTURES / "107L.pdb.gz")


def _biotite_sasa(file: str, chain_id: str) -> np.ndarray:
    """Shrake-Rupley straight from biotite on the file's heavy protein atoms, default parameters."""
    with gzip.open(STRUCTURES / file, "rt") as handle:
        atoms = pdb.PDBFile.read(handle).get_structure(model=1, altloc="occupancy")
    atoms = atoms[(atoms.chain_id == chain_id) & struc.filter_amino_acids(atoms) & ~atoms.hetero]
    atoms = atoms[np.isin(atoms.atom_name, RC.ATOM37_NAMES)]  # heavy atoms that atom37 holds
    per_atom = struc.sasa(atoms)  # probe 1.4, 1000 points, ProtOr, ions ignored
    return struc.apply_residue_wise(atoms, per_atom, np.nansum)


@pytest.mark.parametrize(("file", "chain_id"), [("107L.pdb.gz", "A"), ("2ZTA.pdb.gz", "B"), ("1orc.pdb.gz", "A")])
def test_residue_sasa_equals_biotite(file: str, chain_id: str) -> None:
    ours = load_chain(STRUCTURES / file, chain_id).sasa()
    expected = _biotite_sasa(file, chain_id)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-3)


def test_buried_residues_have_far_less_surface_than_exposed_ones(lysozyme: ProteinChain) -> None:
    rel = lysozyme.relative_sasa()
    ca = lysozyme.atom37[:, RC.ATOM_CA]
    neighbours = (np.linalg.norm(ca[:, None] - ca[None], axis=-1) < 10.0).sum(1) - 1
    buried = neighbours >= np.quantile(neighbours, 0.8)
    exposed = neighbours <= np.quantile(neighbours, 0.2)
    assert np.nanmean(rel[buried]) < 0.3 * np.nanmean(rel[exposed]), (np.nanmean(rel[buried]), np.nanmean(rel[exposed]))
    assert np.corrcoef(neighbours, rel)[0, 1] < -0.5
    assert 0.0 <= np.nanmin(rel) and np.nanmax(rel) < 1.5


def test_context_matters_negative_check(lysozyme: ProteinChain) -> None:
    # A residue cut out of the protein is far more exposed than inside it.
    whole = lysozyme.sasa()
    alone = lysozyme[50:51].sasa()
    assert alone[0] > whole[50] + 20.0


def test_residues_without_atoms_get_nan(lysozyme: ProteinChain) -> None:
    atom37, mask = lysozyme.atom37.copy(), lysozyme.atom37_mask.copy()
    atom37[7], mask[7] = np.nan, False
    sasa = replace(lysozyme, atom37=atom37, atom37_mask=mask).sasa()
    assert np.isnan(sasa[7]) and np.isfinite(np.delete(sasa, 7)).all()


def test_backbone_only_chain_and_unknown_residues() -> None:
    chain = load_chain(STRUCTURES / "localunfolding__trp-cage-cage__2JOF_A.pdb.gz")
    sasa = chain.sasa()
    assert np.isfinite(sasa).all() and (sasa >= 0).all()
    unknown = ProteinChain.from_atom37(chain.atom37, sequence="X" * len(chain))
    assert np.isfinite(unknown.sasa()).all()
    assert np.isnan(unknown.relative_sasa()).all()  # no maximal ASA for X


def test_relative_sasa_uses_the_tien_2013_table() -> None:
    sasa = np.array([129.0, 52.0, 285.0, 10.0], dtype=np.float32)
    np.testing.assert_allclose(relative_sasa(sasa, "AGWX")[:3], [1.0, 0.5, 1.0])
    assert np.isnan(relative_sasa(sasa, "AGWX")[3])
    assert len(RC.MAX_ASA_TIEN2013) == 20 and RC.MAX_ASA_TIEN2013["R"] == 274.0
