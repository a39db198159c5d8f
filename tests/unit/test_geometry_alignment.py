"""Kabsch superposition and RMSD: hand-computed cases, an independent algorithm (Horn's quaternions), real
conformation pairs, reflections, masks, batching and input errors."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.errors import InputError
from openesm3.geometry import Rigid, kabsch, rmsd
from openesm3.geometry.alignment import _select_within, seed_fragment_lengths, seed_fragments
from tests.conftest import TEST_DATA

AKE_CLOSED = "domainmotion__P69441__1AKE_A.pdb.gz"
AKE_OPEN = "domainmotion__P69441__4AKE_A.pdb.gz"
SMALL_A, SMALL_B = "ood60__Q2FYI5__8E2B_A.pdb.gz", "ood60__Q2FYI5__8E2C_A.pdb.gz"


def _read_ca(path: Path) -> dict[tuple[int, str], tuple[str, np.ndarray]]:
    """CA of every amino-acid residue: (res_id, ins_code) -> (res_name, xyz). Read with biotite directly."""
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdb

    with gzip.open(path, "rt") as handle:
        atoms = pdb.PDBFile.read(handle).get_structure(model=1)
    atoms = atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero & (atoms.atom_name == "CA")]
    return {(int(a.res_id), str(a.ins_code)): (str(a.res_name), a.coord.astype(np.float64)) for a in atoms}


def paired_ca(name_a: str, name_b: str, folder: Path = TEST_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """CA coordinates [L, 3] (float64) of the residues present, with the same name, in both files."""
    a, b = _read_ca(folder / name_a), _read_ca(folder / name_b)
    keys = sorted(k for k in a.keys() & b.keys() if a[k][0] == b[k][0])
    return (torch.tensor(np.stack([a[k][1] for k in keys])), torch.tensor(np.stack([b[k][1] for k in keys])))


def random_rotation(generator: torch.Generator | None = None) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(q) < 0:
        q[:, 0] *= -1
    return q


def horn_rotation(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Independent algorithm: Horn (1987) unit quaternion, the top eigenvector of the 4x4 key matrix."""
    xc = x - (w[:, None] * x).sum(0) / w.sum()
    yc = y - (w[:, None] * y).sum(0) / w.sum()
    s = (w[:, None, None] * xc[:, :, None] * yc[:, None, :]).sum(0)
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = s
    n = np.array(
        [
            [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
            [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
            [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
            [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
        ]
    )
    q0, qx, qy, qz = np.linalg.eigh(n)[1][:, -1]
    return np.array(
        [
            [q0**2 + qx**2 - qy**2 - qz**2, 2 * (qx * qy - q0 * qz), 2 * (qx * qz + q0 * qy)],
            [2 * (qy * qx + q0 * qz), q0**2 - qx**2 + qy**2 - qz**2, 2 * (qy * qz - q0 * qx)],
            [2 * (qz * qx - q0 * qy), 2 * (qz * qy + q0 * qx), q0**2 - qx**2 - qy**2 + qz**2],
        ]
    )


# ---- hand-computed cases ----------------------------------------------------------------------------------


def test_hand_computed_rmsd_values() -> None:
    # Two atoms stretched from +-1 to +-2 along x: the best fit keeps the centroid, each atom is 1 A off.
    mobile = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    target = torch.tensor([[-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]) + torch.tensor([5.0, -3.0, 1.0])
    assert rmsd(mobile, target).item() == pytest.approx(1.0, abs=1e-6)
    # Without superposition: one atom of four displaced by 2 A -> sqrt(4 / 4) = 1; the reference's
    # normalisation over 3 * n coordinates gives 1 / sqrt(3).
    x = torch.tensor([[0.0, 0, 0], [3.8, 0, 0], [3.8, 3.8, 0], [0, 3.8, 3.8]])
    y = x.clone()
    y[2, 2] += 2.0
    assert rmsd(x, y, superpose=False).item() == pytest.approx(1.0, abs=1e-6)
    assert rmsd(x, y, superpose=False, normalization="coordinates").item() == pytest.approx(1 / math.sqrt(3), abs=1e-6)
    # A square turned by 90 degrees about z and shifted superposes exactly, with that rotation.
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    sq = torch.tensor([[1.0, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0], [0, 0, 2]])
    sup = kabsch(sq, sq @ rz.T + torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(sup.rotation, rz, atol=1e-6, rtol=0)
    torch.testing.assert_close(sup.translation, torch.tensor([1.0, 2.0, 3.0]), atol=1e-6, rtol=0)
    assert sup.rmsd.item() < 1e-6


def test_seed_fragment_lengths_follow_the_tm_score_program() -> None:
    assert seed_fragment_lengths(214) == [214, 107, 53, 26, 13, 4]
    assert seed_fragment_lengths(20) == [20, 10, 5, 4]
    assert seed_fragment_lengths(9) == [9, 4]
    assert seed_fragment_lengths(4) == [4]
    assert seed_fragment_lengths(3) == [3]
    seeds = seed_fragments(9)
    assert seeds.shape == (1 + 6, 9)  # the whole chain, then 4-residue windows at starts 0..5
    assert seeds[0].all() and seeds[1:].sum(-1).tolist() == [4] * 6 and seeds[6, 5:].all()


def test_selection_cutoff_grows_until_three_pairs() -> None:
    d = torch.tensor([[0.1, 5.0, 6.0, 6.6, 9.0], [0.1, 0.2, 0.3, 7.0, 9.0]], dtype=torch.float64)
    sel = _select_within(d, 1.0)
    # Row 0: 1 A selects one pair; 1 + 0.5 k must exceed 6.0, so k = 11: 6.5 A selects three (not 6.6).
    assert sel.tolist() == [[True, True, True, False, False], [True, True, True, False, False]]
    assert _select_within(d, 8.0).sum(-1).tolist() == [4, 4]
    # Per-row cutoffs (one search runs several objectives): row 1 at 0.15 A grows to 0.65 A -> three pairs.
    assert _select_within(d, torch.tensor([7.0, 0.15], dtype=torch.float64)).sum(-1).tolist() == [4, 3]
    assert _select_within(d[:, :3], 0.01).all()  # three residues or fewer: always all of them


# ---- exactness against an independent method and on real structures ----------------------------------------


def test_recovers_a_rigid_motion_of_a_real_protein() -> None:
    ca, _ = paired_ca(AKE_CLOSED, AKE_OPEN)
    rot, trans = random_rotation(), torch.tensor([12.0, -7.0, 30.0], dtype=torch.float64)
    moved = (ca @ rot.T + trans).float()
    sup = kabsch(moved, ca.float())
    assert sup.rotation.dtype == torch.float32 and sup.superposed.dtype == torch.float32
    torch.testing.assert_close(sup.rotation, rot.T.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(sup.superposed, ca.float(), atol=1e-3, rtol=0)
    assert sup.rmsd.item() < 1e-3
    torch.testing.assert_close(sup.rigid.apply(moved), sup.superposed, atol=1e-4, rtol=0)
    assert isinstance(sup.rigid, Rigid)


def test_agrees_with_horn_quaternions_on_two_conformations_with_weights() -> None:
    x, y = paired_ca(AKE_CLOSED, AKE_OPEN)
    w = torch.rand(x.shape[0], dtype=torch.float64) + 0.1
    sup = kabsch(x, y, weights=w)  # float64 in -> float64 out
    assert sup.rotation.dtype == torch.float64
    expected = torch.from_numpy(horn_rotation(x.numpy(), y.numpy(), w.numpy()))
    torch.testing.assert_close(sup.rotation, expected, atol=1e-9, rtol=0)
    assert torch.det(sup.rotation).item() == pytest.approx(1.0, abs=1e-12)
    # The weighted RMSD is the weighted mean of the squared deviations of the superposed atoms.
    dev = ((sup.superposed - y) ** 2).sum(-1)
    assert sup.rmsd.item() == pytest.approx(math.sqrt(float((w * dev).sum() / w.sum())), rel=1e-12)
    # Domain motion: a few A of RMSD after superposition, far more before.
    assert 5.0 < sup.rmsd.item() < 10.0


def test_superposition_is_optimal_and_never_worse_than_none() -> None:
    for a, b in ((AKE_CLOSED, AKE_OPEN), (SMALL_A, SMALL_B)):
        x, y = paired_ca(a, b)
        sup = kabsch(x, y)
        assert sup.rmsd.item() <= rmsd(x, y, superpose=False).item()
        # Negative: any small rotation away from the optimum (about the target centroid) raises the RMSD.
        for _ in range(5):
            axis = torch.nn.functional.normalize(torch.randn(3, dtype=torch.float64), dim=0)
            k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            nudge = torch.linalg.matrix_exp(0.02 * k)
            centre = y.mean(0)
            nudged = (sup.superposed - centre) @ nudge.T + centre
            assert rmsd(nudged, y, superpose=False).item() > sup.rmsd.item()


# ---- reflections --------------------------------------------------------------------------------------------


def test_mirror_image_needs_a_reflection_which_only_the_reference_mode_uses() -> None:
    x, _ = paired_ca(AKE_CLOSED, AKE_OPEN)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    proper = kabsch(x, mirrored)
    reference_like = kabsch(x, mirrored, allow_reflection=True)
    assert torch.det(proper.rotation).item() == pytest.approx(1.0, abs=1e-9)
    assert torch.det(reference_like.rotation).item() == pytest.approx(-1.0, abs=1e-9)
    assert reference_like.rmsd.item() < 1e-6  # the mirror image "superposes" exactly by a reflection
    assert proper.rmsd.item() > 5.0  # a proper rotation cannot undo a mirror: a large residual remains
    # On two real conformations the optimum is a proper rotation, and both modes agree.
    x, y = paired_ca(SMALL_A, SMALL_B)
    torch.testing.assert_close(kabsch(x, y).rotation, kabsch(x, y, allow_reflection=True).rotation)


# ---- masks, weights, batching, dtypes -------------------------------------------------------------------------


def test_masked_atoms_are_ignored_and_weights_act_as_multiplicities() -> None:
    x, y = paired_ca(SMALL_A, SMALL_B)
    mask = torch.rand(x.shape[0]) > 0.3
    garbage_x, garbage_y = x.clone(), y.clone()
    garbage_x[~mask] = float("nan")
    garbage_y[~mask] = 1e6
    masked = kabsch(garbage_x, garbage_y, mask)
    subset = kabsch(x[mask], y[mask])
    torch.testing.assert_close(masked.rotation, subset.rotation)
    torch.testing.assert_close(masked.rmsd, subset.rmsd)
    torch.testing.assert_close(masked.superposed[mask], subset.superposed)
    assert torch.isnan(masked.superposed[~mask]).all()  # NaN placeholders stay NaN, never become numbers
    # Missing atoms as NaN are dropped by the default mask (finite in both).
    torch.testing.assert_close(kabsch(garbage_x, y).rotation, subset.rotation)
    # Weight 2 on one atom equals listing it twice; weight 0 equals masking it out.
    w = torch.ones(x.shape[0], dtype=torch.float64)
    w[3], w[7] = 2.0, 0.0
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[7] = False
    dup_x, dup_y = torch.cat([x[keep], x[3:4]]), torch.cat([y[keep], y[3:4]])
    torch.testing.assert_close(kabsch(x, y, weights=w).rotation, kabsch(dup_x, dup_y).rotation)
    torch.testing.assert_close(kabsch(x, y, weights=w).rmsd, kabsch(dup_x, dup_y).rmsd)


def test_batched_matches_one_by_one_with_any_leading_shape() -> None:
    x, y = paired_ca(SMALL_A, SMALL_B)
    n = x.shape[0]
    xs = torch.stack([x, y, x @ random_rotation().T, x + 3.0, y, x]).float().reshape(2, 3, n, 3)
    ys = torch.stack([y, x, x, y, y, x + torch.randn(n, 3, dtype=torch.float64)]).float().reshape(2, 3, n, 3)
    masks = torch.rand(2, 3, n) > 0.2
    sup = kabsch(xs, ys, masks)
    assert sup.rotation.shape == (2, 3, 3, 3) and sup.rmsd.shape == (2, 3) and sup.superposed.shape == xs.shape
    for i in range(2):
        for j in range(3):
            one = kabsch(xs[i, j], ys[i, j], masks[i, j])
            torch.testing.assert_close(sup.rotation[i, j], one.rotation)
            torch.testing.assert_close(sup.rmsd[i, j], one.rmsd)
    torch.testing.assert_close(rmsd(xs, ys, masks), sup.rmsd)


def test_dtypes_half_precision_inputs_compute_in_float32_or_better() -> None:
    x, y = paired_ca(SMALL_A, SMALL_B)
    value = rmsd(x.float(), y.float()).item()
    assert rmsd(x.bfloat16(), y.bfloat16()).dtype == torch.float32
    assert rmsd(x, y).dtype == torch.float64
    assert rmsd(x, y).item() == pytest.approx(value, rel=1e-6)


# ---- errors ---------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_input_errors_that_name_the_problem() -> None:
    x = torch.randn(2, 10, 3)
    with pytest.raises(InputError, match=r"mobile has shape \(2, 10, 3\) but target has shape \(2, 9, 3\)"):
        kabsch(x, torch.randn(2, 9, 3))
    with pytest.raises(InputError, match=r"target: expected shape \[\*, N, 3\]"):
        kabsch(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(InputError, match="floating-point"):
        kabsch(torch.zeros(10, 3, dtype=torch.long), torch.zeros(10, 3, dtype=torch.long))
    with pytest.raises(InputError, match=r"mask has shape \(10,\)"):
        kabsch(x, x, torch.ones(10, dtype=torch.bool))
    with pytest.raises(InputError, match="boolean"):
        kabsch(x, x, torch.ones(2, 10))
    bad = x.clone()
    bad[1, 4, 0] = float("nan")
    with pytest.raises(InputError, match=r"mobile: non-finite coordinates at batch item 1, atom 4"):
        kabsch(bad, x, torch.ones(2, 10, dtype=torch.bool))
    empty = torch.ones(2, 10, dtype=torch.bool)
    empty[1] = False
    with pytest.raises(InputError, match=r"no atoms selected \(batch item 1\)"):
        rmsd(x, x, empty)
    with pytest.raises(InputError, match="negative or non-finite weight at batch item 0, atom 2"):
        w = torch.ones(2, 10)
        w[0, 2] = -1.0
        kabsch(x, x, weights=w)
    with pytest.raises(InputError, match=r"weights: expected a tensor of shape \(2, 10\)"):
        kabsch(x, x, weights=torch.ones(10))


def test_selection_is_strictly_closer_than_the_cutoff() -> None:
    # The TM-score program selects pairs with dis < d: a pair exactly at the cutoff is left out (when 3 remain),
    # and a grown cutoff passes the third-smallest distance by a whole step.
    d = torch.tensor([[1.0, 2.0, 3.0, 4.0, 6.0], [0.5, 2.0, 4.0, 4.5, 9.0]], dtype=torch.float64)
    assert _select_within(d, 4.0)[0].tolist() == [True, True, True, False, False]
    # Row 1: two pairs under 4 A; 4 + 0.5 k must exceed 4.0 (the third), so 4.5 A, which leaves 4.5 out.
    assert _select_within(d, 4.0)[1].tolist() == [True, True, True, False, False]


def test_rmsd_without_superposition_uses_the_weights() -> None:
    # Deviations 1, 2, 3 A along x with weights 1, 0, 3: sqrt((1 + 27) / 4).
    target = torch.zeros(3, 3, dtype=torch.float64)
    mobile = target.clone()
    mobile[:, 0] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    w = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64)
    value = rmsd(mobile, target, weights=w, superpose=False)
    assert value.item() == pytest.approx(math.sqrt(28 / 4), abs=1e-12)
    assert rmsd(mobile, target, superpose=False).item() == pytest.approx(math.sqrt(14 / 3), abs=1e-12)
