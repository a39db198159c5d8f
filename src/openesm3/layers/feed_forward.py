"""Position-wise feed-forward branches: SwiGLU (trunk, VQ-VAE) and GELU MLP (function decoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openesm3 import constants as C


class SwiGLU(nn.Module):
    """Pre-LN SwiGLU (paper A.1.5, spec §4.4 step 3): ``W2 (SiLU(a) * b)`` with ``[a | b] = W1 LN(x)``."""

    def __init__(self, d_model: int, hidden: int, *, bias: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=C.LAYER_NORM_EPS, bias=True)
        self.w_in = nn.Linear(d_model, 2 * hidden, bias=bias)
        self.w_out = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, L, D] -> [B, L, D]."""
        a, b = self.w_in(self.norm(x)).chunk(2, dim=-1)  # a is the first half (spec §4.4)
        if torch.is_grad_enabled():
            return self.w_out(F.silu(a) * b)
        # Inference: the same operations in place on the projection's buffer (no new [.., hidden] tensors).
        return self.w_out(F.silu(a, inplace=True).mul_(b))


class GeluMLP(nn.Module):
    """Pre-LN MLP with exact (erf) GELU: ``W2 GELU(W1 LN(x))`` (function decoder, spec §8)."""

    def __init__(self, d_model: int, hidden: int, *, bias: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=C.LAYER_NORM_EPS, bias=True)
        self.w_in = nn.Linear(d_model, hidden, bias=bias)
        self.w_out = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_out(F.gelu(self.w_in(self.norm(x))))
