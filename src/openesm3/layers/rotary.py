"""Rotary position embedding (Su et al., 2021), GPT-NeoX layout (spec §4.4).

The head dimension is split in two halves ``x1 = x[..., :d/2]`` and ``x2 = x[..., d/2:]`` (not interleaved) and
all ``d`` dimensions are rotated. Positions are the absolute token indices 0..L-1 of each row (BOS is 0); they
do not restart for packed sequences, as in the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from openesm3 import constants as C


class RotaryEmbedding(nn.Module):
    """Applies rotary embeddings to queries and keys of shape [B, L, H, Dh]."""

    inv_freq: Tensor

    def __init__(self, head_dim: int, base: float = C.ROTARY_BASE) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        # Not persistent: the official checkpoints do not contain it (spec §9).
        self.register_buffer("inv_freq", self._inv_freq(None), persistent=False)

    def _inv_freq(self, device: torch.device | str | None) -> Tensor:
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        return 1.0 / (self.base**exponent)

    def reset_non_persistent_buffers(self, device: torch.device | str) -> None:
        """Re-create ``inv_freq`` after loading onto a model built on the meta device."""
        self.inv_freq = self._inv_freq(device)

    def cos_sin(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos, sin tables [L, Dh] in fp32 (built in fp32 whatever the model dtype, as the reference does)."""
        positions = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq.to(device=device, dtype=torch.float32))
        angles = torch.cat([freqs, freqs], dim=-1)
        return angles.cos(), angles.sin()

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        cos, sin = self.cos_sin(q.shape[1], q.device)
        cos = cos[:, None, :].to(q.dtype)  # [L, 1, Dh], broadcast over heads
        sin = sin[:, None, :].to(q.dtype)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin over the two halves of the last dimension."""
    return x * cos + _rotate_half(x) * sin
