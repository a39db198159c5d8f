"""All-atom losses of the stage-2 decoder (paper A.1.7.3.2, Table S2 stage 2A; PAPER_NOTES §2.10).

The decoder's affine head gives backbone frames and 7 torsion (sin, cos) pairs; :mod:`openesm3.geometry.all_atom`
builds atom14 from them and the true residue types. Losses:

- :func:`all_atom_distance_loss`: Algorithm 10 over atom14 atoms (missing atoms masked).
- :func:`all_atom_direction_loss`: Algorithm 11 over per-atom bond vectors: within each residue, atoms of the
  true structure closer than 2 A are bonded; an atom with at least two bonds contributes its first two bond
  vectors (atom14 order) and their cross product.
- :func:`torsion_loss`: squared distance between predicted unit (sin, cos) and the true one (the nearer of the two
  for pi-periodic chis), plus AlphaFold2's small penalty keeping the raw outputs near unit norm. Not in the paper;
  it gives the torsion outputs a direct signal, which the coordinate losses only give through long lever arms.

On a 2-core CPU the full (14 L)^2 and 10,000-vector Gram matrices are too costly, so each protein contributes a
random subset of ``all_atom_max_points`` atoms / ``all_atom_max_vectors`` vectors, the same subset for prediction and
truth (the paper subsamples the direction vectors to 10,000 the same way).
"""

from __future__ import annotations

import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.geometry.all_atom import (
    AllAtom,
    all_atom_from_frames,
    atom37_to_atom14,
    normalize_torsions,
    restype_from_sequence_tokens,
    torsion_angles,
)
from openesm3.training.data import ProteinBatch
from openesm3.training.tokenizer.config import TokenizerLossConfig
from openesm3.training.tokenizer.losses import distance_loss, gram_loss, masked_mean
from openesm3.training.tokenizer.model import TokenizerForward

TORSION_NORM_WEIGHT = 0.02  # AlphaFold2's angle-norm penalty weight


def random_subset(mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Up to ``k`` random valid items per row of ``mask`` [B, N]: (index [B, k'], valid [B, k']), k' = min(k, N).
    Valid items are preferred; rows with fewer than k' valid items are padded with invalid ones."""
    k = min(k, mask.shape[1])
    score = torch.rand(mask.shape, device=mask.device) + mask.to(torch.float32) * 2.0
    index = score.topk(k, dim=1).indices
    return index, torch.gather(mask, 1, index)


def _gather_points(x: Tensor, index: Tensor) -> Tensor:
    return torch.gather(x, 1, index[..., None].expand(*index.shape, x.shape[-1]))


def all_atom_distance_loss(
    pred: Tensor, true: Tensor, mask: Tensor, max_points: int, clamp: float = C.DISTANCE_LOSS_CLAMP
) -> Tensor:
    """Algorithm 10 over atoms: pred, true [B, L, 14, 3]; mask [B, L, 14] (true atom present)."""
    b = mask.shape[0]
    p, t, m = pred.reshape(b, -1, 3), true.reshape(b, -1, 3), mask.reshape(b, -1)
    index, valid = random_subset(m, max_points)
    return distance_loss(_gather_points(p, index), _gather_points(t, index), valid, clamp)


def bond_vectors(atom14: Tensor, partners: Tensor) -> Tensor:
    """Per atom: the two bond vectors to ``partners`` [B, L, 14, 2] (atom14 slots) and their cross product:
    [B, L, 14, 3, 3]."""
    idx = partners.flatten(-2)  # [B, L, 28]
    other = torch.gather(atom14, 2, idx[..., None].expand(*idx.shape, 3)).unflatten(2, (14, 2))  # [B, L, 14, 2, 3]
    v1 = other[..., 0, :] - atom14
    v2 = other[..., 1, :] - atom14
    return torch.stack([v1, v2, torch.linalg.cross(v1, v2, dim=-1)], dim=-2)


def bonded_partners(true: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """First two bonded partners (atom14 order) of each atom in the true structure and whether it has two.

    Args:
        true: [B, L, 14, 3]; mask [B, L, 14].

    Returns:
        (partners [B, L, 14, 2] int64, has_two [B, L, 14] bool).
    """
    d = torch.cdist(true, true)  # [B, L, 14, 14]
    eye = torch.eye(14, dtype=torch.bool, device=true.device)
    bonded = (d < C.ALL_ATOM_BOND_CUTOFF) & mask[..., :, None] & mask[..., None, :] & ~eye
    rank = bonded.long().cumsum(-1)
    first = ((rank == 1) & bonded).long().argmax(-1)
    second = ((rank == 2) & bonded).long().argmax(-1)
    return torch.stack([first, second], -1), bonded.sum(-1) >= 2


def all_atom_direction_loss(
    pred: Tensor, true: Tensor, mask: Tensor, max_vectors: int, clamp: float = C.DIRECTION_LOSS_CLAMP
) -> Tensor:
    """Algorithm 11 over bond vectors (see the module docstring): pred, true [B, L, 14, 3]; mask [B, L, 14]."""
    partners, has_two = bonded_partners(true, mask)
    b = mask.shape[0]
    vp = bond_vectors(pred, partners).reshape(b, -1, 3)
    vt = bond_vectors(true, partners).reshape(b, -1, 3)
    m = has_two[..., None].expand(*has_two.shape, 3).reshape(b, -1)
    index, valid = random_subset(m, max_vectors)
    return gram_loss(_gather_points(vp, index), _gather_points(vt, index), valid, clamp)


def torsion_loss(raw: Tensor, true: Tensor, alternative: Tensor, mask: Tensor) -> Tensor:
    """raw [B, L, 7, 2] predicted (sin, cos); true / alternative [B, L, 7, 2] unit; mask [B, L, 7]."""
    unit = normalize_torsions(raw)
    err = torch.minimum((unit - true).pow(2).sum(-1), (unit - alternative).pow(2).sum(-1))
    norm_penalty = (raw.pow(2).sum(-1).sqrt() - 1.0).abs()
    return masked_mean(err, mask) + TORSION_NORM_WEIGHT * masked_mean(norm_penalty, mask)


def predicted_all_atom(fwd: TokenizerForward, restype: Tensor) -> AllAtom:
    """atom14 of the decoded structure [B, L, 14, 3] for residue types ``restype`` [B, L]."""
    frames = fwd.decoder.frames
    length = restype.shape[1]
    return all_atom_from_frames(frames[:, 1 : length + 1], fwd.residues(fwd.decoder.torsions).float(), restype)


def all_atom_terms(fwd: TokenizerForward, batch: ProteinBatch, weights: TokenizerLossConfig) -> dict[str, Tensor]:
    """The stage-2 all-atom loss terms with non-zero weight, over proteins whose sequence the decoder saw."""
    w = weights
    if not (w.all_atom_distance or w.all_atom_direction or w.torsion):
        return {}
    restype = restype_from_sequence_tokens(batch.sequence_tokens)
    seen = fwd.sequence_given[:, None] & fwd.residue_mask  # [B, L]
    true14, present = atom37_to_atom14(batch.atom37.float(), batch.atom37_mask, restype)
    present = present & seen[..., None]
    terms: dict[str, Tensor] = {}
    if w.all_atom_distance or w.all_atom_direction:
        pred14 = predicted_all_atom(fwd, restype).atom14
        if w.all_atom_distance:
            terms["all_atom_distance"] = all_atom_distance_loss(
                pred14, true14, present, w.all_atom_max_points, w.distance_clamp
            )
        if w.all_atom_direction:
            terms["all_atom_direction"] = all_atom_direction_loss(
                pred14, true14, present, w.all_atom_max_vectors, w.direction_clamp
            )
    if w.torsion:
        sc, alt, tmask = torsion_angles(batch.atom37, batch.atom37_mask, restype)
        raw = fwd.residues(fwd.decoder.torsions).float()
        terms["torsion"] = torsion_loss(raw, sc, alt, tmask & seen[..., None])
    return terms
