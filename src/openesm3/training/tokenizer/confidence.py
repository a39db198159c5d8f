"""Confidence-head losses of the stage-2 structure decoder: pLDDT and PAE (paper A.1.7.3.2; PAPER_NOTES §2.10).

Targets come from the decoder's own errors on the protein being decoded (the prediction is detached):

- pLDDT: the per-residue lDDT-CA of the predicted backbone against the true one (``geometry.lddt``), in 50 bins
  of width 0.02 on [0, 1].
- PAE: the *aligned* error ``e_ij = |T_i^-1 x_j - T*_i^-1 x*_j|`` of residue j's CA seen from residue i's frame,
  prediction (T, x) against truth (T*, x*), in the 64 bins of the decoder's PAE head (0.5 A wide, last bin open).
  The paper describes "the difference of pairwise distances"; we use AlphaFold2's frame-aligned error because the
  pTM formula of the released decoder (a TM-score over PAE bin centres, per aligned row) estimates a TM-score only
  under that definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from openesm3 import constants as C
from openesm3.geometry.lddt import lddt
from openesm3.geometry.rigid import Rigid
from openesm3.training.tokenizer.losses import masked_mean, pair_mask


def plddt_targets(pred: Tensor, true: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-residue lDDT-CA of pred vs true ([B, L, 3, 3] backbones; mask [B, L]) and its bin in 0..49.

    Returns ``(lddt [B, L] fp32, bins [B, L] int64)``; residues without any scored pair read 1.0 (as lDDT does).
    """
    with torch.no_grad():
        per_residue = lddt(pred[..., 1, :].detach().float(), true[..., 1, :].float(), mask).per_residue
    bins = (per_residue * C.PLDDT_N_BINS).floor().long().clamp(0, C.PLDDT_N_BINS - 1)
    return per_residue, bins


def plddt_loss(logits: Tensor, pred: Tensor, true: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of pLDDT logits [B, L, 50] against :func:`plddt_targets`."""
    _, target = plddt_targets(pred, true, mask)
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
    return masked_mean(ce, mask)


def aligned_errors(pred: Tensor, true: Tensor) -> Tensor:
    """[B, L, L] aligned error (Angstrom) of residue j's CA in residue i's frame, prediction vs truth
    (pred, true [B, L, 3, 3] N, CA, C; no gradient)."""
    with torch.no_grad():
        pred, true = pred.detach().float(), true.float()
        fp, _ = Rigid.from_backbone(pred[..., 0, :], pred[..., 1, :], pred[..., 2, :])
        ft, _ = Rigid.from_backbone(true[..., 0, :], true[..., 1, :], true[..., 2, :])
        # x_j in frame i: R_i^T (x_j - t_i)  ->  [B, i, j, 3]
        local_p = torch.einsum("bikd,bijk->bijd", fp.rot, pred[:, None, :, 1] - fp.trans[:, :, None])
        local_t = torch.einsum("bikd,bijk->bijd", ft.rot, true[:, None, :, 1] - ft.trans[:, :, None])
        return (local_p - local_t).norm(dim=-1)


def pae_bins(errors: Tensor) -> Tensor:
    """Bin index in 0..63 of aligned errors (bins of 0.5 A: [0, 0.5), [0.5, 1), ..., the last open)."""
    width = C.PAE_MAX_BIN / (C.PAE_N_BINS - 2)
    return (errors / width).floor().long().clamp(0, C.PAE_N_BINS - 1)


def pae_loss(logits: Tensor, pred: Tensor, true: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of PAE logits [B, L, L, 64] against the binned :func:`aligned_errors`."""
    target = pae_bins(aligned_errors(pred, true))
    ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none").view_as(target)
    return masked_mean(ce, pair_mask(mask))
