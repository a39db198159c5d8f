"""Structure-tokenizer reconstruction losses (paper A.1.7.3.1, Algorithms 10-11; PAPER_NOTES §2.10).

Geometric losses compare a predicted structure with the true one without superposition:

- :func:`distance_loss` / :func:`backbone_distance_loss` (Algorithm 10): squared error of all pairwise distances,
  clamped at (5 A)^2, averaged over pairs.
- :func:`gram_loss` / :func:`backbone_direction_loss` (Algorithm 11): squared error of all pairwise dot products
  of six backbone vectors per residue, clamped at 20, averaged over pairs.

Classification losses read the decoder's pairwise / per-residue logits:

- :func:`distogram_loss`: 64 bins of virtual C-beta distance (AlphaFold2 edges).
- :func:`binned_direction_loss`: 16 bins of the dot products between residue frames' unit vectors, 6 pairs.
- :func:`inverse_folding_loss`: amino-acid cross-entropy.

Every loss is a per-protein mean over its valid items, then a mean over the proteins of the batch that have any,
so padding and batch composition do not change a protein's weight. Inputs are fp32 (call under
``full_precision``); shapes use B proteins, L residues, N points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from openesm3 import constants as C
from openesm3.geometry.rigid import Rigid

_DISTANCE_EPS = 1e-8  # sqrt(d^2 + eps): a finite gradient at d = 0 (the diagonal)


# --------------------------------------------------------------------------------------------------------
# Reductions.
# --------------------------------------------------------------------------------------------------------
def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per-protein mean of ``values`` [B, ...] over ``mask`` [B, ...] (bool), then the mean over proteins with at
    least one valid item; 0 (with a gradient path) when no protein has any."""
    m = mask.to(values.dtype)
    dims = tuple(range(1, values.dim()))
    count = m.sum(dims)
    per_protein = (values * m).sum(dims) / count.clamp_min(1.0)
    has = (count > 0).to(values.dtype)
    return (per_protein * has).sum() / has.sum().clamp_min(1.0)


def pair_mask(mask: Tensor) -> Tensor:
    """[B, N] bool -> [B, N, N] bool: both items valid."""
    return mask[:, :, None] & mask[:, None, :]


def pairwise_distances(x: Tensor) -> Tensor:
    """[B, N, 3] -> [B, N, N] Euclidean distances (``sqrt(d^2 + 1e-8)``, differentiable everywhere)."""
    diff = x[:, :, None, :] - x[:, None, :, :]
    return torch.sqrt(diff.pow(2).sum(-1) + _DISTANCE_EPS)


# --------------------------------------------------------------------------------------------------------
# Geometric losses (Algorithms 10 and 11).
# --------------------------------------------------------------------------------------------------------
def distance_loss(pred: Tensor, true: Tensor, mask: Tensor, clamp: float = C.DISTANCE_LOSS_CLAMP) -> Tensor:
    """Clamped squared error of all pairwise distances (Algorithm 10): ``mean min((|p_i - p_j| - |t_i - t_j|)^2,
    clamp)`` over pairs of valid points.

    The algorithm writes squared norms but the prose says "L2 distance" (PAPER_NOTES §7 item 5); we compare plain
    distances, so the clamp at 25 is (5 A)^2 of distance error, the reading under which the clamp is meaningful
    (with squared norms a 1 A error at 10 A would already be clamped).

    Args:
        pred, true: [B, N, 3] points. mask: [B, N] bool.
    """
    err = (pairwise_distances(pred) - pairwise_distances(true)).pow(2).clamp_max(clamp)
    return masked_mean(err, pair_mask(mask))


def backbone_distance_loss(pred: Tensor, true: Tensor, mask: Tensor, clamp: float = C.DISTANCE_LOSS_CLAMP) -> Tensor:
    """:func:`distance_loss` over the 3L backbone atoms N, CA, C. pred, true [B, L, 3, 3]; mask [B, L] bool."""
    b, length = mask.shape
    flat = mask.repeat_interleave(3, 1)
    return distance_loss(pred.reshape(b, 3 * length, 3), true.reshape(b, 3 * length, 3), flat, clamp)


def gram_loss(pred: Tensor, true: Tensor, mask: Tensor, clamp: float = C.DIRECTION_LOSS_CLAMP) -> Tensor:
    """Clamped squared error of all pairwise dot products: ``mean min((p_i . p_j - t_i . t_j)^2, clamp)``.

    Args:
        pred, true: [B, N, 3] vectors (not normalised). mask: [B, N] bool.
    """
    err = (pred @ pred.transpose(-1, -2) - true @ true.transpose(-1, -2)).pow(2).clamp_max(clamp)
    return masked_mean(err, pair_mask(mask))


def peptide_bonds(true: Tensor, mask: Tensor) -> Tensor:
    """[B, L] bool: residue i is bonded to residue i + 1 (both present, true C_i-N_{i+1} < 2 A; so crops, gaps and
    chain ends have no bond). true [B, L, 3, 3] N, CA, C; mask [B, L] bool."""
    length = mask.shape[1]
    bonded = torch.zeros_like(mask)
    if length > 1:
        gap = (true[:, 1:, 0] - true[:, :-1, 2]).norm(dim=-1)
        bonded[:, :-1] = mask[:, :-1] & mask[:, 1:] & (gap < C.PEPTIDE_BOND_MAX_LENGTH)
    return bonded


def backbone_vectors(backbone: Tensor, bonded: Tensor) -> Tensor:
    """The six vectors of Algorithm 11 per residue: [B, L, 3, 3] -> [B, L, 6, 3].

    N->CA, CA->C, C->N_next, n_CA = -(N->CA) x (CA->C), n_N = (C_prev->N) x (N->CA), n_C = (CA->C) x (C->N_next).
    Vectors that need a missing peptide bond (``bonded`` [B, L], see :func:`peptide_bonds`) are zero.
    """
    n, ca, c = backbone.unbind(-2)
    n_ca, ca_c = ca - n, c - ca
    c_next = torch.zeros_like(c)
    c_next[:, :-1] = n[:, 1:] - c[:, :-1]
    c_next = c_next * bonded[..., None].to(c.dtype)
    prev_c_n = torch.zeros_like(n)
    prev_c_n[:, 1:] = c_next[:, :-1]
    cross = torch.linalg.cross
    return torch.stack(
        [n_ca, ca_c, c_next, -cross(n_ca, ca_c, dim=-1), cross(prev_c_n, n_ca, dim=-1), cross(ca_c, c_next, dim=-1)],
        dim=-2,
    )


def backbone_vector_mask(mask: Tensor, bonded: Tensor) -> Tensor:
    """[B, L, 6] bool: which of :func:`backbone_vectors` exist (vectors 2 and 5 need the next bond, 4 the
    previous one)."""
    prev = torch.zeros_like(bonded)
    prev[:, 1:] = bonded[:, :-1]
    return torch.stack([mask, mask, bonded, mask, prev, bonded], dim=-1)


def backbone_direction_loss(pred: Tensor, true: Tensor, mask: Tensor, clamp: float = C.DIRECTION_LOSS_CLAMP) -> Tensor:
    """:func:`gram_loss` over the 6L backbone vectors (Algorithm 11). pred, true [B, L, 3, 3]; mask [B, L] bool.
    Peptide bonds are read from the true structure and used for both."""
    b, length = mask.shape
    bonded = peptide_bonds(true, mask)
    vp = backbone_vectors(pred, bonded).reshape(b, 6 * length, 3)
    vt = backbone_vectors(true, bonded).reshape(b, 6 * length, 3)
    return gram_loss(vp, vt, backbone_vector_mask(mask, bonded).reshape(b, 6 * length), clamp)


def backbone_fape(pred: Tensor, true: Tensor, mask: Tensor, clamp: float = C.FAPE_CLAMP) -> Tensor:
    """Frame-aligned point error of the backbone (AlphaFold2's FAPE; not in the ESM3 paper, see
    docs/tokenizer_training.md): every N, CA, C atom j seen from every residue frame i, prediction against truth,
    ``mean min(|T_i^-1 x_j - T*_i^-1 x*_j|, clamp)`` in Angstrom. Unlike the distance loss it is not invariant to
    mirroring, so a decoder cannot settle on the mirror image of a fold. pred, true [B, L, 3, 3]; mask [B, L]."""
    b, length = mask.shape
    frames_p, _ = Rigid.from_backbone(pred[..., 0, :], pred[..., 1, :], pred[..., 2, :])
    frames_t, _ = Rigid.from_backbone(true[..., 0, :], true[..., 1, :], true[..., 2, :])
    points_p = pred.reshape(b, 1, 3 * length, 3)
    points_t = true.reshape(b, 1, 3 * length, 3)
    local_p = torch.einsum("bixy,bijx->bijy", frames_p.rot, points_p - frames_p.trans[:, :, None])
    local_t = torch.einsum("bixy,bijx->bijy", frames_t.rot, points_t - frames_t.trans[:, :, None])
    err = torch.sqrt((local_p - local_t).pow(2).sum(-1) + _DISTANCE_EPS).clamp_max(clamp)
    return masked_mean(err, mask[:, :, None] & mask.repeat_interleave(3, 1)[:, None, :])


LOCAL_WINDOW = 2  # the local-structure loss scores residues i - 2 .. i + 2 seen from residue i


def local_window_targets(true: Tensor, mask: Tensor, window: int = LOCAL_WINDOW) -> tuple[Tensor, Tensor]:
    """N, CA, C of the residues ``i - window .. i + window`` in the backbone frame of residue i.

    Returns coordinates [B, L, 2w + 1, 3, 3] and a mask [B, L, 2w + 1]: the centre and the window residue both
    have a backbone and every peptide bond between them exists (true C-N < 2 A), so gaps and crop ends are never
    bridged. true [B, L, 3, 3]; mask [B, L] bool.
    """
    b, length = mask.shape
    frames, _ = Rigid.from_backbone(true[..., 0, :], true[..., 1, :], true[..., 2, :])
    bonded = peptide_bonds(true, mask)  # bond i -> i + 1
    # chain run id: residues connected by consecutive bonds share an id
    run = torch.cumsum(torch.cat([torch.ones_like(bonded[:, :1]), ~bonded[:, :-1]], dim=1).long(), dim=1)
    coords, valid = [], []
    for offset in range(-window, window + 1):
        idx = (torch.arange(length, device=mask.device) + offset).clamp(0, length - 1)
        inside = (torch.arange(length, device=mask.device) + offset >= 0) & (
            torch.arange(length, device=mask.device) + offset < length
        )
        other = true[:, idx]  # [B, L, 3, 3]
        local = frames.unsqueeze(-1).invert_apply(other)
        same_run = run[:, idx] == run
        coords.append(local)
        valid.append(mask & mask[:, idx] & same_run & inside[None, :])
    return torch.stack(coords, dim=2), torch.stack(valid, dim=2)


def local_structure_loss(pred: Tensor, true: Tensor, mask: Tensor, clamp: float = C.FAPE_CLAMP) -> Tensor:
    """Error (Angstrom, clamped) of the local backbone window of every residue predicted from its own code:
    ``pred`` [B, L, (2w + 1) * 9] against :func:`local_window_targets` of true [B, L, 3, 3], mean over window atoms.
    An auxiliary stage-1 loss of ours (not in the paper, docs/tokenizer_training.md): it asks each code to describe
    its residue's local backbone directly, so codes become informative before the decoder has learned to use them."""
    target, valid = local_window_targets(true, mask)
    pred = pred.view(target.shape)
    err = torch.sqrt((pred - target).pow(2).sum(-1) + _DISTANCE_EPS).clamp_max(clamp)  # [B, L, W, 3]
    return masked_mean(err, valid[..., None].expand_as(err))


# --------------------------------------------------------------------------------------------------------
# Classification losses.
# --------------------------------------------------------------------------------------------------------
def virtual_cb(backbone: Tensor) -> Tensor:
    """Virtual C-beta [..., 3] from N, CA, C [..., 3, 3]: ``a n + b (N->CA) + c (CA->C) + CA`` with
    ``n = (N->CA) x (CA->C)`` (paper A.1.7.3.1; constants ``VIRTUAL_CB_COEFFS``)."""
    n, ca, c = backbone.unbind(-2)
    b_vec, c_vec = ca - n, c - ca
    normal = torch.linalg.cross(b_vec, c_vec, dim=-1)
    a, b, cc = C.VIRTUAL_CB_COEFFS
    return a * normal + b * b_vec + cc * c_vec + ca


def distogram_edges(device: torch.device | str | None = None) -> Tensor:
    """[63] bin edges in Angstrom: linspace(2.3125, 21.6875, 63) (AlphaFold2's distogram)."""
    return torch.linspace(C.DISTOGRAM_FIRST_EDGE, C.DISTOGRAM_LAST_EDGE, C.DISTOGRAM_N_BINS - 1, device=device)


def distogram_targets(true: Tensor) -> Tensor:
    """[B, L, L] int64 bin of every C-beta pair distance (0: below 2.3125 A, 63: at least 21.6875 A).
    The paper bins squared distances by squared edges; comparing distances with edges is the same."""
    cb = virtual_cb(true)
    d = torch.cdist(cb, cb)
    return torch.bucketize(d, distogram_edges(d.device), right=True)


def distogram_loss(logits: Tensor, true: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of distogram logits [B, L, L, 64] against :func:`distogram_targets` of true [B, L, 3, 3]."""
    target = distogram_targets(true)
    ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none").view_as(target)
    return masked_mean(ce, pair_mask(mask))


# The 6 (vector of i, vector of j) pairs: vectors 0 = CA->C, 1 = CA->N, 2 = their normal. With both orders (i, j)
# and (j, i) scored, these six cover all nine entries of R_i^T R_j, i.e. the whole relative orientation.
DIRECTION_PAIRS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def direction_dot_products(backbone: Tensor) -> Tensor:
    """[B, L, L, 6] dot products u_a(i) . u_b(j) for the pairs in :data:`DIRECTION_PAIRS`, unit vectors from a
    backbone [B, L, 3, 3] (N, CA, C)."""
    n, ca, c = backbone.unbind(-2)
    u_c = F.normalize(c - ca, dim=-1)
    u_n = F.normalize(n - ca, dim=-1)
    u_z = F.normalize(torch.linalg.cross(u_c, u_n, dim=-1), dim=-1)
    vecs = torch.stack([u_c, u_n, u_z], dim=-2)  # [B, L, 3, 3]
    dots = torch.einsum("biad,bjcd->bijac", vecs, vecs)  # [B, L, L, 3, 3]
    return torch.stack([dots[..., a, b] for a, b in DIRECTION_PAIRS], dim=-1)


def direction_targets(true: Tensor) -> Tensor:
    """[B, L, L, 6] int64 bin in 0..15 of :func:`direction_dot_products` of true [B, L, 3, 3] (16 equal bins on
    [-1, 1])."""
    pairs = direction_dot_products(true)
    n_bins = C.DIRECTION_N_BINS
    return ((pairs + 1.0) * (n_bins / 2.0)).floor().long().clamp(0, n_bins - 1)


def binned_direction_loss(logits: Tensor, true: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of direction logits [B, L, L, 6, 16] against :func:`direction_targets`, averaged over the
    L x L x 6 valid entries."""
    target = direction_targets(true)
    ce = F.cross_entropy(logits.flatten(0, 3), target.flatten(), reduction="none").view_as(target)
    return masked_mean(ce, pair_mask(mask)[..., None].expand_as(target))


def inverse_folding_loss(logits: Tensor, sequence_tokens: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of amino-acid logits [B, L, V] against official sequence ids [B, L], over residues in ``mask``
    whose identity is one of the 20 standard amino acids (X, B, Z, ... are not scored)."""
    standard = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    standard[list(C.CANONICAL_AMINO_ACID_IDS)] = True
    valid = mask & standard[sequence_tokens.clamp(0, logits.shape[-1] - 1)]
    ce = F.cross_entropy(logits.flatten(0, 1), sequence_tokens.flatten(), reduction="none").view_as(sequence_tokens)
    return masked_mean(ce, valid)
