"""Structure-tokenizer losses (paper A.1.7.3, Algorithms 10-11): zero for identical structures, the hand-computed
value for hand-made perturbations, invariance to rigid motions and a mirror image as the negative."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.structure.io import load_chain
from openesm3.training.tokenizer import losses as L
from openesm3.training.tokenizer.confidence import aligned_errors, pae_bins, pae_loss, plddt_loss, plddt_targets
from tests.conftest import TEST_DATA


def _backbone(name: str = "1igd.pdb.gz") -> tuple[torch.Tensor, torch.Tensor]:
    """[1, L, 3, 3] N, CA, C of a real chain and its [1, L] mask (residues with all three)."""
    chain = load_chain(TEST_DATA / name)
    bb = torch.tensor(np.nan_to_num(chain.atom37[:, :3]), dtype=torch.float32)[None]
    mask = torch.tensor(chain.atom37_mask[:, :3].all(-1))[None]
    return bb, mask


def _random_rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()


def _moved(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return x @ _random_rotation(seed).T + torch.tensor([3.0, -7.0, 11.0])


# ---- reductions ---------------------------------------------------------------------------------------------
def test_masked_mean_weighs_proteins_equally() -> None:
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 5.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[True] * 4, [True, False, False, False], [False] * 4])
    # protein 0 mean 1, protein 1 mean 3, protein 2 has nothing: (1 + 3) / 2
    assert L.masked_mean(values, mask).item() == pytest.approx(2.0)
    assert L.masked_mean(values, torch.zeros_like(mask)).item() == 0.0


# ---- distance loss (Algorithm 10) -----------------------------------------------------------------------------
def test_distance_loss_hand_made() -> None:
    true = torch.tensor([[[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    for delta, expected in [(0.0, 0.0), (1.5, 1.5**2 * 2 / 4), (6.0, 25.0 * 2 / 4)]:  # 2 of 4 pairs off-diagonal
        pred = true.clone()
        pred[0, 1, 0] += delta
        assert L.distance_loss(pred, true, mask).item() == pytest.approx(expected, abs=1e-5)


def test_backbone_distance_loss_real_structure() -> None:
    bb, mask = _backbone()
    assert L.backbone_distance_loss(bb, bb, mask).item() < 1e-6
    assert L.backbone_distance_loss(_moved(bb), bb, mask).item() < 1e-6  # superposition-free
    pred = bb.clone()
    pred[0, 10, 1] += torch.tensor([0.0, 0.0, 100.0])  # CA of residue 10 far away: all its pairs clamp at 25
    n = int(mask.sum()) * 3
    loss = L.backbone_distance_loss(pred, bb, mask).item()
    # the moved atom's row and column (2 (n - 1) pairs) are clamped at 25; nothing else changes
    assert loss == pytest.approx(25.0 * 2 * (n - 1) / n**2, rel=1e-4)


def _residue_5_far_and_masked() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prediction with residue 5 moved 50 A away, truth, mask, the mask without residue 5)."""
    bb, mask = _backbone()
    pred = bb.clone()
    pred[0, 5] += 50.0
    without = mask.clone()
    without[0, 5] = False
    return pred, bb, mask, without


def test_distance_loss_ignores_masked_points() -> None:
    pred, bb, _, mask2 = _residue_5_far_and_masked()
    assert L.backbone_distance_loss(pred, bb, mask2).item() < 1e-6


# ---- direction loss (Algorithm 11) ----------------------------------------------------------------------------
def test_gram_loss_hand_made() -> None:
    true = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    pred = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # Gram entries: (0,0) 4 vs 1 -> 9; others equal
    assert L.gram_loss(pred, true, mask).item() == pytest.approx(9.0 / 4)
    pred = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # (100 - 1)^2 clamps at 20
    assert L.gram_loss(pred, true, mask).item() == pytest.approx(20.0 / 4)


def test_backbone_vectors_on_ideal_geometry() -> None:
    bb, mask = _backbone()
    bonded = L.peptide_bonds(bb, mask)
    v = L.backbone_vectors(bb, bonded)[0]
    i = 20
    assert bool(bonded[0, i])
    n, ca, c = bb[0, i]
    torch.testing.assert_close(v[i, 0], ca - n)
    torch.testing.assert_close(v[i, 2], bb[0, i + 1, 0] - c)
    torch.testing.assert_close(v[i, 3], -torch.linalg.cross(ca - n, c - ca))
    torch.testing.assert_close(v[i, 4], torch.linalg.cross(n - bb[0, i - 1, 2], ca - n))
    assert 1.2 < v[i, 2].norm() < 1.45  # a peptide bond
    # the last residue has no next bond: its C->N_next vector is zero and masked
    last = int(mask.sum()) - 1
    assert not bool(bonded[0, last])
    assert not bool(L.backbone_vector_mask(mask, bonded)[0, last, 2])


def test_backbone_vector_mask_table() -> None:
    # Vectors: 0 N->CA, 1 CA->C, 2 C->N_next, 3 n_CA, 4 n_N (needs the bond to the previous residue), 5 n_C (needs
    # the bond to the next). Residues 0-1-2 bonded, 3 alone (2 -> 3 is a gap), 4 absent.
    mask = torch.tensor([[True, True, True, True, False]])
    bonded = torch.tensor([[True, True, False, False, False]])
    expected = [
        [True, True, True, True, False, True],
        [True, True, True, True, True, True],
        [True, True, False, True, True, False],
        [True, True, False, True, False, False],
        [False] * 6,
    ]
    assert L.backbone_vector_mask(mask, bonded)[0].tolist() == expected


def test_peptide_bonds_detect_gaps() -> None:
    bb, mask = _backbone()
    gapped = torch.cat([bb[:, :10], bb[:, 15:]], dim=1)  # residues 10..14 removed: 9 -> 15 is not bonded
    m = torch.cat([mask[:, :10], mask[:, 15:]], dim=1)
    bonded = L.peptide_bonds(gapped, m)
    assert bool(bonded[0, 8]) and not bool(bonded[0, 9])


def test_backbone_direction_loss_zero_rigid_positive_for_mirror() -> None:
    bb, mask = _backbone()
    assert L.backbone_direction_loss(bb, bb, mask).item() < 1e-6
    assert L.backbone_direction_loss(_moved(bb, 3), bb, mask).item() < 1e-4
    mirror = bb * torch.tensor([-1.0, 1.0, 1.0])  # distances unchanged, handedness flipped
    assert L.backbone_distance_loss(mirror, bb, mask).item() < 1e-6
    assert L.backbone_direction_loss(mirror, bb, mask).item() > 0.5


# ---- distogram and binned directions ----------------------------------------------------------------------------
def test_virtual_cb_is_close_to_real_cb() -> None:
    chain = load_chain(TEST_DATA / "1igd.pdb.gz")
    bb = torch.tensor(chain.atom37[:, :3], dtype=torch.float32)
    cb = torch.tensor(chain.atom37[:, 3], dtype=torch.float32)
    has = torch.tensor(chain.atom37_mask[:, :4].all(-1))
    err = (L.virtual_cb(bb[has]) - cb[has]).norm(dim=-1)
    assert err.median() < 0.2 and err.max() < 0.5


def _pair_at(distance: float) -> torch.Tensor:
    """Two copies of residue 20 of 1igd, the second translated by ``distance`` A: C-beta distance = distance."""
    bb, _ = _backbone()
    res = bb[0, 20]
    return torch.stack([res, res + torch.tensor([distance, 0.0, 0.0])])[None]


def test_distogram_bins_af2_edges() -> None:
    edges = L.distogram_edges()
    assert edges.shape == (63,)
    assert edges[1] - edges[0] == pytest.approx(0.3125)
    cases = [(1.0, 0), (2.3125 + 0.01, 1), (2.3125 + 0.3125 * 10 + 0.01, 11), (21.6875 - 0.01, 62), (30.0, 63)]
    for d, expected in cases:
        target = L.distogram_targets(_pair_at(d))
        assert int(target[0, 0, 1]) == expected and int(target[0, 1, 0]) == expected
        assert int(target[0, 0, 0]) == 0  # self: distance 0


def test_distogram_loss_known_values() -> None:
    true = _pair_at(7.0)
    mask = torch.ones(1, 2, dtype=torch.bool)
    uniform = torch.zeros(1, 2, 2, C.DISTOGRAM_N_BINS)
    assert L.distogram_loss(uniform, true, mask).item() == pytest.approx(math.log(64), rel=1e-6)
    perfect = torch.nn.functional.one_hot(L.distogram_targets(true), C.DISTOGRAM_N_BINS).float() * 100
    assert L.distogram_loss(perfect, true, mask).item() < 1e-6


def test_direction_targets_known_values() -> None:
    true = _pair_at(5.0)  # same orientation: u_a(i) . u_b(j) = u_a . u_b of one residue
    target = L.direction_targets(true)[0, 0, 1]
    n, ca, c = true[0, 0]
    cos_ncac = float(torch.nn.functional.cosine_similarity(c - ca, n - ca, dim=0))  # about cos(111 deg)
    expected_01 = math.floor((cos_ncac + 1) * 8)
    assert target.tolist() == [15, 15, 15, expected_01, 8, 8]  # dot 1 -> last bin; 0 -> bin 8
    # residue j turned 180 degrees about the normal: u_c and u_n flip, the normal stays
    rotated = true.clone()
    centre = true[0, 1, 1]
    normal = torch.nn.functional.normalize(torch.linalg.cross(c - ca, n - ca), dim=0)
    rot = 2 * torch.outer(normal, normal) - torch.eye(3)  # rotation by pi about the normal
    rotated[0, 1] = (true[0, 1] - centre) @ rot.T + centre
    target = L.direction_targets(rotated)[0, 0, 1]
    assert target.tolist()[:3] == [0, 0, 15]


def test_binned_direction_loss_known_values() -> None:
    bb, mask = _backbone()
    bb, mask = bb[:, :12], mask[:, :12]
    uniform = torch.zeros(1, 12, 12, C.DIRECTION_N_PAIRS, C.DIRECTION_N_BINS)
    assert L.binned_direction_loss(uniform, bb, mask).item() == pytest.approx(math.log(16), rel=1e-6)
    perfect = torch.nn.functional.one_hot(L.direction_targets(bb), 16).float() * 100
    assert L.binned_direction_loss(perfect, bb, mask).item() < 1e-6


def test_inverse_folding_loss() -> None:
    tokens = torch.tensor([[5, 4, 24, 1]])  # A, L, X (not scored), <pad>
    mask = torch.tensor([[True, True, True, False]])
    uniform = torch.zeros(1, 4, C.SEQUENCE_EMBED_DIM)
    assert L.inverse_folding_loss(uniform, tokens, mask).item() == pytest.approx(math.log(64))
    perfect = torch.nn.functional.one_hot(tokens, C.SEQUENCE_EMBED_DIM).float() * 100
    perfect[0, 2] = 0.0  # the X position would cost ln 64 if it were scored
    assert L.inverse_folding_loss(perfect, tokens, mask).item() < 1e-6


# ---- confidence targets -------------------------------------------------------------------------------------
def test_plddt_targets_and_loss() -> None:
    bb, mask = _backbone()
    per_residue, bins = plddt_targets(_moved(bb), bb, mask)
    assert torch.allclose(per_residue[mask], torch.ones(()))
    assert bool((bins[mask] == C.PLDDT_N_BINS - 1).all())
    logits = torch.zeros(1, bb.shape[1], C.PLDDT_N_BINS)
    assert plddt_loss(logits, bb, bb, mask).item() == pytest.approx(math.log(50), rel=1e-6)


def test_aligned_errors_hand_made() -> None:
    bb, mask = _backbone()
    assert aligned_errors(_moved(bb, 1), bb).abs().max() < 1e-3  # invariant to a rigid motion
    pred = bb.clone()
    shift = torch.tensor([0.6, -0.8, 0.0])  # |shift| = 1 A
    pred[0, 7] += shift  # residue 7 translated rigidly: its own frame moves with it
    err = aligned_errors(pred, bb)[0]
    others = torch.ones(bb.shape[1], dtype=torch.bool)
    others[7] = False
    torch.testing.assert_close(err[others, 7], torch.ones(int(others.sum())), atol=1e-4, rtol=0)
    assert err[7, 7].item() < 1e-4
    # residue 7 sees every other CA displaced by -shift in its (unrotated) frame: also 1 A
    torch.testing.assert_close(err[7, others], torch.ones(int(others.sum())), atol=1e-4, rtol=0)
    assert pae_bins(torch.tensor([0.26, 0.5, 1.0, 31.49, 31.5, 40.0])).tolist() == [0, 1, 2, 62, 63, 63]
    logits = torch.nn.functional.one_hot(pae_bins(err)[None], C.PAE_N_BINS).float() * 100
    assert pae_loss(logits, pred, bb, mask).item() < 1e-6


# ---- FAPE and the local-structure loss (our additions) -------------------------------------------------------
def test_backbone_fape_zero_rigid_positive_for_mirror() -> None:
    bb, mask = _backbone()
    assert L.backbone_fape(bb, bb, mask).item() < 1e-3
    assert L.backbone_fape(_moved(bb, 5), bb, mask).item() < 1e-3  # invariant to rigid motions
    mirror = bb * torch.tensor([-1.0, 1.0, 1.0])
    assert L.backbone_distance_loss(mirror, bb, mask).item() < 1e-6  # the distance loss cannot see a mirror
    assert L.backbone_fape(mirror, bb, mask).item() > 3.0


def test_backbone_fape_ignores_masked_residues() -> None:
    # A residue left out by the mask is neither a frame nor a scored atom, however far its prediction is.
    pred, bb, mask, mask2 = _residue_5_far_and_masked()
    assert L.backbone_fape(pred, bb, mask).item() > 0.1  # seen when scored
    assert L.backbone_fape(pred, bb, mask2).item() < 1e-3


def test_backbone_fape_hand_made() -> None:
    """Two residues; residue 1 translated by d along x (its frame moves with it, rotation unchanged). From frame 1
    the residue's own atoms do not move but residue 0's move by d; from frame 0, residue 1's three atoms move by d:
    6 of the 12 (frame, atom) pairs err by d."""
    n, ca, c = C.BACKBONE_LOCAL_COORDS
    res = torch.tensor([n, ca, c])
    true = torch.stack([res, res + torch.tensor([3.8, 0.0, 0.0])])[None]
    mask = torch.ones(1, 2, dtype=torch.bool)
    for d, expected in [(0.5, 0.5 * 6 / 12), (4.0, 4.0 * 6 / 12), (25.0, 10.0 * 6 / 12)]:  # clamp at 10 A
        pred = true.clone()
        pred[0, 1] += torch.tensor([d, 0.0, 0.0])
        assert L.backbone_fape(pred, true, mask).item() == pytest.approx(expected, abs=1e-3)


def test_local_window_targets_and_loss() -> None:
    bb, mask = _backbone()
    target, valid = L.local_window_targets(bb, mask)
    w = L.LOCAL_WINDOW
    assert target.shape == (*mask.shape, 2 * w + 1, 3, 3)
    # the centre of every window is the residue in its own frame: the ideal local N, CA, C up to bond geometry
    torch.testing.assert_close(target[0, 5, w, 1], torch.zeros(3), atol=1e-5, rtol=0)
    assert abs(float(target[0, 5, w, 2, 0]) + 1.52) < 0.1 and float(target[0, 5, w, 2, 1:].abs().max()) < 1e-4
    # rigid motions do not change the windows
    moved, _ = L.local_window_targets(_moved(bb, 2), mask)
    torch.testing.assert_close(moved[valid], target[valid], atol=1e-3, rtol=0)
    # windows end at the chain ends and never bridge a gap
    assert not bool(valid[0, 0, 0]) and not bool(valid[0, 1, 0]) and bool(valid[0, 2, 0])
    gapped = torch.cat([bb[:, :10], bb[:, 15:]], dim=1)
    m = torch.cat([mask[:, :10], mask[:, 15:]], dim=1)
    _, v = L.local_window_targets(gapped, m)
    assert bool(v[0, 9, w - 1]) and not bool(v[0, 9, w + 1]) and not bool(v[0, 10, w - 1])
    # the loss: 0 for the exact windows, the offset's length for a uniform offset of every atom
    flat = target.reshape(*mask.shape, -1)
    assert L.local_structure_loss(flat, bb, mask).item() < 1e-3
    shift = torch.tensor([0.3, 0.4, 0.0]).repeat((2 * w + 1) * 3)  # |(0.3, 0.4, 0)| = 0.5 A
    assert L.local_structure_loss(flat + shift, bb, mask).item() == pytest.approx(0.5, abs=1e-3)
