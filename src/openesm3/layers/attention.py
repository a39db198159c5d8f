"""Multi-head self-attention with fused QKV, optional QK-LayerNorm and rotary embeddings (paper A.1.5).

The softmax attention itself goes through :func:`attention`, the single seam for fused kernels: it calls
``torch.nn.functional.scaled_dot_product_attention`` (fused on CPU and CUDA) with a boolean mask.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.layers.rotary import RotaryEmbedding


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Scaled dot-product attention. q, k, v [B, H, L, Dh]; ``mask`` bool, True = may attend, broadcastable
    to [B, H, L, L], or None for full attention. Returns [B, H, L, Dh]."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MultiHeadAttention(nn.Module):
    """Pre-LayerNorm self-attention block branch (spec §4.4 step 1).

    ``h = LN(x)``; ``q, k, v = split(W_qkv h)``; with ``qk_norm``, q and k are LayerNorm'ed over the full model
    width (weight only) *before* the head split; rotary on all head dims; softmax attention with scale
    1/sqrt(Dh); heads merged head-major; output projection.
    """

    def __init__(
        self, d_model: int, n_heads: int, *, bias: bool = False, qk_norm: bool = True, rotary: bool = True
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.norm = nn.LayerNorm(d_model, eps=C.LAYER_NORM_EPS, bias=True)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        # The QK LayerNorms carry a bias exactly when the projections do (none in ESM3 and the decoder).
        self.q_norm: nn.Module = nn.LayerNorm(d_model, eps=C.LAYER_NORM_EPS, bias=bias) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(d_model, eps=C.LAYER_NORM_EPS, bias=bias) if qk_norm else nn.Identity()
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, L, D]; mask bool broadcastable to [B, H, L, L] (True = attend) or None. Returns [B, L, D]."""
        b, length, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        q, k, v = (t.view(b, length, self.n_heads, self.head_dim) for t in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        o = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)  # [B, H, L, Dh]
        return self.out(o.transpose(1, 2).reshape(b, length, self.d_model))
