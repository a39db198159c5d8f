"""Output heads (paper Algorithm 4, spec §4.5)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from openesm3 import constants as C


class RegressionHead(nn.Module):
    """``proj_out(LayerNorm(GELU(proj_in(x))))`` with biases everywhere and exact (erf) GELU."""

    def __init__(self, d_in: int, d_out: int, d_hidden: int | None = None) -> None:
        super().__init__()
        d_hidden = d_in if d_hidden is None else d_hidden
        self.proj_in = nn.Linear(d_in, d_hidden)
        self.norm = nn.LayerNorm(d_hidden, eps=C.LAYER_NORM_EPS)
        self.proj_out = nn.Linear(d_hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., d_in] -> [..., d_out]."""
        return self.proj_out(self.norm(F.gelu(self.proj_in(x))))
