"""The transformer block shared by the ESM3 trunk, the structure VQ-VAE and the function decoder.

Pre-LN, each residual branch divided by ``residual_scale`` (paper A.1.5 writes x + s * f(x) with
s = sqrt(36 / n_layers); the reference divides by sqrt(n_layers / 36), which is the same):

    x = x + attn(x) / s            (optional: the structure encoder has no self-attention)
    x = x + geometric_attn(x) / s  (optional: block 0 of ESM3 and every encoder block)
    x = x + ffn(x) / s
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from openesm3.geometry.rigid import Rigid
from openesm3.layers.attention import MultiHeadAttention
from openesm3.layers.feed_forward import GeluMLP, SwiGLU
from openesm3.layers.geometric_attention import GeometricAttention


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """Shape and options of one block; derived by each network from its own config."""

    d_model: int
    n_heads: int  # 0: no self-attention branch
    ffn_dim: int
    v_heads: int = 0  # 0: no geometric attention branch
    ffn: Literal["swiglu", "gelu"] = "swiglu"
    bias: bool = False  # biases in the Linear layers of attention and FFN
    qk_norm: bool = True
    residual_scale: float = 1.0
    geometric_bias: bool = False  # biases in the geometric attention (LayerNorm and Linear layers)
    zero_frameless_queries: bool = True


class TransformerBlock(nn.Module):
    # Dropout on each residual branch while training (set by training code; not part of the weights or the config,
    # and inactive in eval mode, so loaded models compute exactly as before).
    dropout: float = 0.0

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.residual_scale = cfg.residual_scale
        self.attn = (
            MultiHeadAttention(cfg.d_model, cfg.n_heads, bias=cfg.bias, qk_norm=cfg.qk_norm) if cfg.n_heads else None
        )
        self.geom_attn = (
            GeometricAttention(
                cfg.d_model, cfg.v_heads, bias=cfg.geometric_bias, zero_frameless_queries=cfg.zero_frameless_queries
            )
            if cfg.v_heads
            else None
        )
        ffn_cls = SwiGLU if cfg.ffn == "swiglu" else GeluMLP
        self.ffn = ffn_cls(cfg.d_model, cfg.ffn_dim, bias=cfg.bias)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        frames: Rigid | None = None,
        frame_mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        chain_id: Tensor | None = None,
    ) -> Tensor:
        """x [B, L, D]; mask: self-attention mask (bool, True = attend) broadcastable to [B, H, L, L] or None;
        frames/frame_mask/sequence_id/chain_id: inputs of the geometric branch. Returns [B, L, D]."""
        s = self.residual_scale
        if self.attn is not None:
            x = x + self._branch(self.attn(x, mask)) / s
        if self.geom_attn is not None:
            if frames is None or frame_mask is None:
                raise ValueError("this block has geometric attention and needs frames and frame_mask")
            x = x + self._branch(self.geom_attn(x, frames, frame_mask, sequence_id, chain_id)) / s
        return x + self._branch(self.ffn(x)) / s

    def _branch(self, y: Tensor) -> Tensor:
        return F.dropout(y, self.dropout, training=True) if self.dropout and self.training else y


def set_block_dropout(module: nn.Module, p: float) -> None:
    """Set the training-time residual-branch dropout of every :class:`TransformerBlock` inside ``module``."""
    for sub in module.modules():
        if isinstance(sub, TransformerBlock):
            sub.dropout = p
