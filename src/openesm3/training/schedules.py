"""Learning-rate schedule: linear warmup, then cosine decay to a fraction of the peak (paper A.2.3).

The rate is a pure function of the optimizer step, so the schedule has no state of its own beyond the step
counter stored in every checkpoint: a resumed run sets exactly the rates the uninterrupted run would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, kw_only=True)
class WarmupCosineSchedule:
    """``lr(step)`` for 0-based optimizer steps ``0 .. total_steps - 1``.

    Warmup: ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (the first step already moves).
    Decay: ``peak * (r + (1 - r) * (1 + cos(pi * p)) / 2)`` with ``p = (step - warmup) / (total - warmup)``
    clamped to [0, 1] and ``r = min_lr_ratio`` (paper A.2.3.1: cosine decay to 10 % of the peak).
    """

    peak_lr: float
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.1

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        r = self.min_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.peak_lr * self.factor(step)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the rate of every parameter group (groups differ only in weight decay)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
