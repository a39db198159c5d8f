"""Superposition, RMSD, lDDT and GDT-TS against the official package's structure utilities (spec §12), on real
structures: two conformations of adenylate kinase, a mirror image, and an all-atom structure with noise."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.geometry import gdt_ts, kabsch, lddt, lddt_all_atom, lddt_ca, rmsd
from tests.conftest import TEST_DATA

ATOM37 = (
    "N CA C CB O CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE CE1 CE2 CE3 NE NE1 NE2 OE1 OE2 CH2 NH1 "
    "NH2 OH CZ CZ2 CZ3 NZ OXT"
).split()


def _atom37(path: Path) -> tuple[torch.Tensor, list[tuple[int, str, str]]]:
    """atom37 [L, 37, 3] float32 (NaN where missing) and residue keys, first chain, read with biotite."""
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdb

    with gzip.open(path, "rt") as handle:
        atoms = pdb.PDBFile.read(handle).get_structure(model=1)
    atoms = atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero & np.isin(atoms.atom_name, ATOM37)]
    atoms = atoms[atoms.chain_id == atoms.chain_id[0]]
    keys = [(int(r), str(i), str(n)) for r, i, n in zip(atoms.res_id, atoms.ins_code, atoms.res_name)]
    order = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(order)}
    xyz = torch.full((len(order), 37, 3), float("nan"))
    xyz[[index[k] for k in keys], [ATOM37.index(a) for a in atoms.atom_name]] = torch.from_numpy(atoms.coord)
    return xyz, order


def _conformations() -> tuple[torch.Tensor, torch.Tensor]:
    """Adenylate kinase closed / open, atom37 of the residues both files have."""
    a, keys_a = _atom37(TEST_DATA / "domainmotion__P69441__1AKE_A.pdb.gz")
    b, keys_b = _atom37(TEST_DATA / "domainmotion__P69441__4AKE_A.pdb.gz")
    common = [k for k in keys_a if k in set(keys_b)]
    return a[[keys_a.index(k) for k in common]], b[[keys_b.index(k) for k in common]]


@pytest.fixture(scope="module")
def ref_utils(esm_reference):  # noqa: ANN001, ANN201
    from esm.utils.structure import metrics, protein_structure

    return metrics, protein_structure


def test_kabsch_and_rmsd_match_compute_affine_and_rmsd(ref_utils) -> None:  # noqa: ANN001
    _, ps = ref_utils
    a, b = _conformations()
    x, y = a[:, 1], b[:, 1]
    mask = torch.rand(x.shape[0]) > 0.1
    mirrored = y * torch.tensor([1.0, -1.0, 1.0])
    for target in (y, mirrored):
        affine, expected = ps.compute_affine_and_rmsd(x[None], target[None], mask[None])
        ours = rmsd(x, target, mask, allow_reflection=True, normalization="coordinates")
        assert ours.item() == pytest.approx(expected.item(), abs=1e-5)
        sup = kabsch(x, target, mask, allow_reflection=True)
        torch.testing.assert_close(sup.superposed, affine.apply(x[None])[0], atol=1e-4, rtol=0)
    # The reference reaches the mirror image by a reflection (no determinant fix); the default mode cannot.
    assert rmsd(x, mirrored, mask).item() > 5.0


def test_lddt_matches_compute_lddt_and_compute_lddt_ca(ref_utils) -> None:  # noqa: ANN001
    metrics, _ = ref_utils
    a, b = _conformations()
    mask = torch.isfinite(a).all(-1) & torch.isfinite(b).all(-1)
    a, b = torch.nan_to_num(a), torch.nan_to_num(b)
    batch_a, batch_b, batch_m = torch.stack([a, b]), torch.stack([b, b]), torch.stack([mask, mask])
    ours = lddt_ca(batch_a, batch_b, batch_m)
    torch.testing.assert_close(ours.per_residue, metrics.compute_lddt_ca(batch_a, batch_b, batch_m), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        ours.score, metrics.compute_lddt_ca(batch_a, batch_b, batch_m, per_residue=False), atol=1e-6, rtol=0
    )
    ca_mask = batch_m[..., 1]
    plain = lddt(batch_a[:, :, 1], batch_b[:, :, 1], ca_mask)
    expected = metrics.compute_lddt(batch_a[:, :, 1], batch_b[:, :, 1], ca_mask[..., None].float())
    torch.testing.assert_close(plain.per_residue, expected, atol=1e-6, rtol=0)


def test_lddt_matches_the_reference_when_the_model_lacks_residues(ref_utils) -> None:  # noqa: ANN001
    # The reference scores pairs with a NaN model atom 0 (its NaN distances fail every threshold); so do we.
    metrics, _ = ref_utils
    a, b = _conformations()
    mask = torch.isfinite(b).all(-1)
    b = torch.nan_to_num(b)
    a = torch.where(torch.isfinite(a), a, b)
    a[20:35] = float("nan")  # the model lacks 15 residues
    ours = lddt_ca(a[None], b[None], mask[None])
    expected = metrics.compute_lddt_ca(a[None], b[None], mask[None].float())
    torch.testing.assert_close(ours.per_residue, expected, atol=1e-6, rtol=0)
    assert ours.score.item() == pytest.approx(
        metrics.compute_lddt_ca(a[None], b[None], mask[None].float(), per_residue=False).item(), abs=1e-6
    )
    assert lddt_ca(a, b).score.item() == pytest.approx(ours.score.item(), abs=1e-6)  # default mask: the same


def test_all_atom_lddt_matches_compute_lddt_on_flattened_atom37(ref_utils) -> None:  # noqa: ANN001
    metrics, _ = ref_utils
    ref, _ = _atom37(TEST_DATA / "1igd.pdb.gz")
    mask = torch.isfinite(ref).all(-1)
    ref = torch.nan_to_num(ref)
    model = torch.where(mask[..., None], ref + 0.7 * torch.randn(ref.shape), 0.0)
    n = ref.shape[0] * 37
    args = (model.reshape(1, n, 3), ref.reshape(1, n, 3), mask.reshape(1, n, 1).float())
    ours = lddt_all_atom(model, ref, mask, pairs="reference")
    assert ours.per_atom is not None
    torch.testing.assert_close(ours.per_atom.reshape(1, n), metrics.compute_lddt(*args), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.score, metrics.compute_lddt(*args, per_residue=False)[0], atol=1e-6, rtol=0)


def test_gdt_ts_matches_compute_gdt_ts(ref_utils) -> None:  # noqa: ANN001
    metrics, ps = ref_utils
    a, b = _conformations()
    x, y = a[:, 1], b[:, 1]
    mask = torch.rand(x.shape[0]) > 0.1
    for target in (y, y * torch.tensor([-1.0, 1.0, 1.0])):
        expected = metrics.compute_gdt_ts(x[None], target[None], mask[None])
        assert gdt_ts(x, target, mask, allow_reflection=True).item() == pytest.approx(expected.item(), abs=1e-6)
    superposed = kabsch(x, y, mask).superposed
    expected = ps.compute_gdt_ts_no_alignment(superposed[None], y[None], mask[None])
    assert gdt_ts(superposed, y, mask, superposition="none").item() == pytest.approx(expected.item(), abs=1e-6)
