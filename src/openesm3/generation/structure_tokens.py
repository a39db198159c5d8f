"""Structure tokens from structures and back (paper A.1.7; spec §2, §6, §7, §10.2, §12).

This module is filled in below; see :func:`normalize_coordinates`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from openesm3.geometry.rigid import Rigid


def normalize_coordinates(coords: Tensor) -> Tensor:
    """Express atom coordinates [..., L, A, 3] (A >= 3; N, CA, C first) in the protein's mean backbone frame (spec §12).

    The frame is built (as a residue frame, spec §4.3) from the mean N, CA and C over the residues whose three
    backbone atoms are all finite (``sum / (count + 1e-8)``); every atom is mapped by its inverse ``R^T (p - t)``.
    Missing atoms stay NaN, infinite ones stay +inf, and a protein whose frame origin is exactly 0 (e.g. no valid
    residue) is left unchanged. Computed in fp32 with the reference's operation order, so that the encoder sees
    the same coordinates to the last bit.
    """
    coords = coords.float()
    backbone = coords[..., :3, :]
    valid = torch.isfinite(backbone).all(-1).all(-1)  # [..., L]
    count = valid.sum(-1).float()[..., None, None]
    means = torch.where(valid[..., None, None], backbone, torch.zeros((), device=coords.device)).sum(-3)
    means = means / (count + 1e-8)  # [..., 3 atoms, 3]
    n, ca, c = means.unbind(-2)
    frame = Rigid.from_gram_schmidt(ca, ca - c, n - ca)
    rot_t = frame.rot.transpose(-1, -2)  # [..., 3, 3]
    # R^T p - R^T t as element-wise products summed over j (not matmul): bit-identical to the reference.
    inverse_trans = -(rot_t * frame.trans[..., None, :]).sum(-1)  # [..., 3]
    rot_b = rot_t[..., None, None, :, :]  # broadcast over residues and atoms
    moved = (rot_b * coords[..., None, :]).sum(-1) + inverse_trans[..., None, None, :]
    keep = (frame.trans.norm(dim=-1) > 0)[..., None, None, None]
    out = torch.where(keep, moved, coords)
    return out.masked_fill(torch.isinf(coords), float("inf"))
