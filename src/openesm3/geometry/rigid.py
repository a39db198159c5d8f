"""Rigid transforms (rotation + translation) and backbone frames, always in fp32.

Convention (paper A.1.6.1, spec §4.3): a frame maps local points to global ones as ``R @ p + t``. The columns
of ``R`` are the local x, y, z axes expressed in global coordinates. Backbone frames put CA at the origin,
the x-axis from C to CA (C sits on the negative x-axis) and N in the xy-plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from openesm3 import constants as C


def _normalize(v: Tensor, eps: float) -> Tensor:
    # sqrt(|v|^2 + eps), not max(|v|, eps): reproduces the reference's Gram-Schmidt to the last bit (spec §4.3).
    return v / torch.sqrt((v * v).sum(-1, keepdim=True) + eps)


def gram_schmidt(x_axis: Tensor, xy_plane: Tensor, eps: float = C.GRAM_SCHMIDT_EPS) -> Tensor:
    """Rotation whose first column is along ``x_axis`` and whose xy-plane contains ``xy_plane`` ([..., 3, 3]).

    Paper Algorithm 5: e0 = x/|x|; e1 = y - e0 (e0 . y), normalised; e2 = e0 x e1.
    """
    e0 = _normalize(x_axis, eps)
    e1 = _normalize(xy_plane - e0 * (e0 * xy_plane).sum(-1, keepdim=True), eps)
    e2 = torch.linalg.cross(e0, e1, dim=-1)
    return torch.stack([e0, e1, e2], dim=-1)


@dataclass(frozen=True)
class Rigid:
    """A batch of rigid transforms: ``rot`` [..., 3, 3] and ``trans`` [..., 3], same batch shape."""

    rot: Tensor
    trans: Tensor

    def __post_init__(self) -> None:
        if self.rot.shape[-2:] != (3, 3) or self.trans.shape[-1] != 3:
            raise ValueError(f"Rigid needs rot [...,3,3] and trans [...,3], got {self.rot.shape}, {self.trans.shape}")
        if self.rot.shape[:-2] != self.trans.shape[:-1]:
            raise ValueError(f"Rigid batch shapes differ: {self.rot.shape[:-2]} vs {self.trans.shape[:-1]}")

    # ---- construction ------------------------------------------------------------------------------------
    @staticmethod
    def identity(
        shape: tuple[int, ...], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Rigid:
        rot = torch.eye(3, device=device, dtype=dtype).expand(*shape, 3, 3).clone()
        return Rigid(rot, torch.zeros(*shape, 3, device=device, dtype=dtype))

    @staticmethod
    def from_gram_schmidt(origin: Tensor, x_axis: Tensor, xy_plane: Tensor, eps: float = C.GRAM_SCHMIDT_EPS) -> Rigid:
        """Frame at ``origin`` with x along ``x_axis`` and ``xy_plane`` in its xy-plane (all [..., 3])."""
        return Rigid(gram_schmidt(x_axis, xy_plane, eps), origin)

    @staticmethod
    def from_backbone(n: Tensor, ca: Tensor, c: Tensor) -> tuple[Rigid, Tensor]:
        """Backbone frames from N, CA, C coordinates ([..., 3] each), computed in fp32.

        Returns ``(frames, valid)``. A residue is valid when all nine coordinates are finite and below 1e6
        (an upper bound only, as in the reference: spec §4.3). Invalid residues get the identity frame at the
        origin; every consumer masks them, so their frame never reaches an output.
        """
        n, ca, c = (x.float() for x in (n, ca, c))
        coords = torch.stack([n, ca, c], dim=-2)
        valid = (torch.isfinite(coords) & (coords < C.FRAME_VALID_MAX_COORD)).all(-1).all(-1)
        mask = valid[..., None]
        # Placeholder backbone for invalid residues (N on +y, CA at 0, C on -x): its frame is the identity.
        n = torch.where(mask, n, torch.tensor([0.0, 1.0, 0.0], device=n.device))
        ca = torch.where(mask, ca, torch.zeros((), device=n.device))
        c = torch.where(mask, c, torch.tensor([-1.0, 0.0, 0.0], device=n.device))
        # x-axis from C to CA, xy-plane vector from CA to N: the paper's convention (C on the negative x-axis).
        return Rigid.from_gram_schmidt(ca, ca - c, n - ca), valid

    # ---- algebra -----------------------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.trans.shape[:-1]

    def apply(self, points: Tensor) -> Tensor:
        """Local -> global: ``R @ p + t``. ``points`` [..., 3] broadcast against the frame batch shape."""
        return self.apply_rotation(points) + self.trans

    def apply_rotation(self, vectors: Tensor) -> Tensor:
        return (self.rot @ vectors.unsqueeze(-1)).squeeze(-1)

    def invert_apply(self, points: Tensor) -> Tensor:
        """Global -> local: ``R^T (p - t)``."""
        return self.invert_apply_rotation(points - self.trans)

    def invert_apply_rotation(self, vectors: Tensor) -> Tensor:
        return (self.rot.transpose(-1, -2) @ vectors.unsqueeze(-1)).squeeze(-1)

    def compose(self, other: Rigid) -> Rigid:
        """``self ∘ other``: apply ``other`` first, then ``self``."""
        return Rigid(self.rot @ other.rot, self.apply(other.trans))

    def cumulative_compose(self) -> Rigid:
        """Prefix products along the last batch dimension: ``out[..., i] = self[..., 0] o self[..., 1] o ... o
        self[..., i]`` (frame i expressed through the chain of relative transforms before it). A parallel scan:
        ceil(log2 n) batched compositions, differentiable."""
        rot, trans = self.rot, self.trans
        n = trans.shape[-2]
        step = 1
        while step < n:
            prev_rot, prev_trans = rot[..., :-step, :, :], trans[..., :-step, :]
            cur_rot, cur_trans = rot[..., step:, :, :], trans[..., step:, :]
            new_rot = prev_rot @ cur_rot
            new_trans = (prev_rot @ cur_trans.unsqueeze(-1)).squeeze(-1) + prev_trans
            rot = torch.cat([rot[..., :step, :, :], new_rot], dim=-3)
            trans = torch.cat([trans[..., :step, :], new_trans], dim=-2)
            step *= 2
        return Rigid(rot, trans)

    def invert(self) -> Rigid:
        rot_t = self.rot.transpose(-1, -2)
        return Rigid(rot_t, -(rot_t @ self.trans.unsqueeze(-1)).squeeze(-1))

    def unsqueeze(self, dim: int) -> Rigid:
        """Insert a batch dimension (``dim`` counts over batch dimensions only, negatives from the end)."""
        if dim < 0:
            dim = len(self.shape) + 1 + dim
        return Rigid(self.rot.unsqueeze(dim), self.trans.unsqueeze(dim))

    def __getitem__(self, index: object) -> Rigid:
        idx = index if isinstance(index, tuple) else (index,)
        # Explicit trailing slices keep an Ellipsis in ``index`` away from the 3x3 / 3 dimensions.
        return Rigid(self.rot[idx + (slice(None), slice(None))], self.trans[idx + (slice(None),)])  # type: ignore[index]

    def to(self, *args: object, **kwargs: object) -> Rigid:
        return Rigid(self.rot.to(*args, **kwargs), self.trans.to(*args, **kwargs))  # type: ignore[call-overload]

    def float(self) -> Rigid:
        return Rigid(self.rot.float(), self.trans.float())

    def to_tensor_12(self) -> Tensor:
        """[..., 12]: the rotation flattened row-major, then the translation (the decoder's affine output)."""
        return torch.cat([self.rot.flatten(-2), self.trans], dim=-1)

    @staticmethod
    def from_tensor_12(t: Tensor) -> Rigid:
        return Rigid(t[..., :9].unflatten(-1, (3, 3)), t[..., 9:])

    @staticmethod
    def cat(rigids: list[Rigid], dim: int) -> Rigid:
        d_rot = dim if dim >= 0 else dim - 2
        d_trans = dim if dim >= 0 else dim - 1
        return Rigid(torch.cat([r.rot for r in rigids], d_rot), torch.cat([r.trans for r in rigids], d_trans))
