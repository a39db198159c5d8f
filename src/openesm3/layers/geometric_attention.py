"""Geometric multi-head attention (paper A.1.6.2, Algorithm 6; spec §5).

Every head owns 3-vectors instead of feature channels. Rotation queries/keys and values are rotated into the
global frame of their residue; distance queries/keys are rotated *and* translated. The attention logit
combines a directional agreement and a distance penalty, each weighted per head by a softplus'ed learned
scale; values are averaged in the global frame and rotated back into the query residue's frame. The operation
is invariant to a global rotation and translation of the coordinates.

All frame arithmetic, logits and the softmax run in fp32 whatever the autocast dtype (spec §13.10); only the
input projection and the output projection follow the caller's dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.geometry.rigid import Rigid

_SQRT3 = math.sqrt(3.0)
# Number of 3-vectors per head in the projection: q_rot, k_rot, v (rotation part), q_dist, k_dist (distance part).
_VECTORS_PER_HEAD = 5


class GeometricAttention(nn.Module):
    """Geometric attention over residue frames.

    Args:
        d_model: model width D.
        v_heads: number of geometric heads V (each with one 3-vector per role).
        bias: biases on the input/output projections and the LayerNorm (the VQ-VAE encoder has them; the
            ESM3 trunk has none, spec §13.1).
        zero_frameless_queries: zero the output of residues without a frame (ESM3 does, the encoder does not).
    """

    def __init__(self, d_model: int, v_heads: int, *, bias: bool = False, zero_frameless_queries: bool = True) -> None:
        super().__init__()
        self.d_model = d_model
        self.v_heads = v_heads
        self.zero_frameless_queries = zero_frameless_queries
        self.norm = nn.LayerNorm(d_model, eps=C.LAYER_NORM_EPS, bias=bias)
        self.proj = nn.Linear(d_model, 3 * _VECTORS_PER_HEAD * v_heads, bias=bias)
        self.out = nn.Linear(3 * v_heads, d_model, bias=bias)
        # Stored pre-softplus; initialised to 0 (softplus(0) = ln 2), as in the reference.
        self.distance_scale = nn.Parameter(torch.zeros(v_heads))
        self.rotation_scale = nn.Parameter(torch.zeros(v_heads))

    def forward(
        self,
        x: Tensor,
        frames: Rigid,
        frame_mask: Tensor,
        sequence_id: Tensor | None = None,
        chain_id: Tensor | None = None,
    ) -> Tensor:
        """x [B, L, D]; frames [B, L]; frame_mask [B, L] bool (residue has a valid frame); sequence_id and
        chain_id [B, L] int or None. Returns [B, L, D]."""
        return self.attend(self.project(x), frames, frame_mask, sequence_id, chain_id)

    def project(self, x: Tensor) -> Tensor:
        """The input projection ``proj(LN(x))``: [B, L, D] -> [B, L, 15V] (caller's dtype). Split out so that a
        caller can project once and reuse the result (the structure encoder projects its 66-row position table)."""
        return self.proj(self.norm(x))

    def attend(
        self,
        p: Tensor,
        frames: Rigid,
        frame_mask: Tensor,
        sequence_id: Tensor | None = None,
        chain_id: Tensor | None = None,
        *,
        n_queries: int | None = None,
    ) -> Tensor:
        """Attention from projected features p [B, L, 15V] (see :meth:`project`). With ``n_queries``, only the
        first ``n_queries`` positions are queries (all L remain keys): returns [B, n_queries, D], else [B, L, D]."""
        b, length, _ = p.shape
        n_q = length if n_queries is None else n_queries
        v_heads = self.v_heads
        p = p.float()
        with torch.autocast(device_type=p.device.type, enabled=False):  # frames, logits, softmax in fp32
            # Vectors are rows, so R v is v @ R^T: one (nV x 3) @ (3 x 3) product per residue, no broadcast copies.
            rot = frames.rot.float()  # [B, L, 3, 3]
            rot_t = rot.transpose(-1, -2)
            # Layout (spec §5): first 9V features = 3V consecutive 3-vectors (q_rot | k_rot | v), rotated only; last
            # 6V = 2V 3-vectors (q_dist | k_dist), rotated and translated.
            rot_part, dist_part = p.split([9 * v_heads, 6 * v_heads], dim=-1)
            rot_vecs = rot_part.reshape(b, length, 3 * v_heads, 3) @ rot_t  # [B, L, 3V, 3]
            dist_vecs = dist_part.reshape(b, length, 2 * v_heads, 3) @ rot_t + frames.trans.float()[:, :, None, :]
            # One transposing copy per part, then per-head slices: [B, 3V, L, 3] and [B, 2V, L, 3].
            rot_vecs, dist_vecs = rot_vecs.transpose(1, 2).contiguous(), dist_vecs.transpose(1, 2).contiguous()
            q_rot, k_rot, value = rot_vecs.split(v_heads, dim=1)  # [B, V, L, 3]
            q_dist, k_dist = dist_vecs.split(v_heads, dim=1)
            q_rot, q_dist = q_rot[:, :, :n_q], q_dist[:, :, :n_q]

            directional = q_rot @ k_rot.transpose(-1, -2)  # [B, V, n_q, L]
            # The plain Euclidean norm, not squared (the reference's docstring says squared, its code does not).
            # Computed directly from differences, not through |q|^2 + |k|^2 - 2 q.k, to avoid cancellation.
            distance = torch.cdist(q_dist, k_dist, compute_mode="donot_use_mm_for_euclid_dist")
            w_rot = F.softplus(self.rotation_scale.float())[None, :, None, None]
            w_dist = F.softplus(self.distance_scale.float())[None, :, None, None]
            bias = self.pair_bias(frame_mask, sequence_id, chain_id)[:, :, :n_q]
            if torch.is_grad_enabled():
                logits = w_rot * (directional / _SQRT3) - w_dist * (distance / _SQRT3) + bias
            else:  # the same operations in the same order, in place: no new [B, V, n_q, L] buffers
                logits = directional.div_(_SQRT3).mul_(w_rot).sub_(distance.div_(_SQRT3).mul_(w_dist)).add_(bias)

            attn = torch.softmax(logits, dim=-1)
            out = (attn @ value).transpose(1, 2)  # [B, n_q, V, 3], global frame
            out = out @ rot[:, :n_q]  # back to each query's frame: R^T o as a row vector is o @ R
            if self.zero_frameless_queries:
                out = out * frame_mask[:, :n_q, None, None].to(out.dtype)
        out = out.reshape(b, n_q, 3 * v_heads)  # (head, xyz) order
        return self.out(out.to(self.out.weight.dtype))

    @staticmethod
    def pair_bias(frame_mask: Tensor, sequence_id: Tensor | None, chain_id: Tensor | None) -> Tensor:
        """[B, 1, L, L] fp32: +1 within a sequence (a soft bias, not a mask: spec §13.5; every pair when
        ``sequence_id`` is None), replaced by float32-min for keys without a frame or across chains."""
        b, length = frame_mask.shape
        if sequence_id is None:
            bias = torch.ones(b, length, length, device=frame_mask.device)
        else:
            bias = (sequence_id[:, :, None] == sequence_id[:, None, :]).float()
        blocked = ~frame_mask[:, None, :]
        if chain_id is not None:
            blocked = blocked | (chain_id[:, :, None] != chain_id[:, None, :])
        bias = bias.masked_fill(blocked, C.FLOAT32_MIN)
        return bias[:, None]
