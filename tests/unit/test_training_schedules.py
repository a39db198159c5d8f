"""Warmup + cosine learning-rate schedule (paper A.2.3: cosine decay to 10 % of the peak)."""

from __future__ import annotations

import math

import pytest
import torch

from openesm3.training.schedules import WarmupCosineSchedule, set_learning_rate


def test_warmup_then_cosine_to_ten_percent() -> None:
    s = WarmupCosineSchedule(peak_lr=1e-3, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    lrs = [s(i) for i in range(111)]
    assert lrs[0] == pytest.approx(1e-4)  # the first step already moves
    assert lrs[9] == pytest.approx(1e-3)  # end of warmup: the peak
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # non-increasing decay
    assert lrs[60] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[110] == pytest.approx(1e-4)  # 10 % of the peak at the end
    assert s(10_000) == pytest.approx(1e-4)  # and stays there
    default = WarmupCosineSchedule(peak_lr=1e-3, warmup_steps=10, total_steps=110)
    assert default(110) == pytest.approx(1e-4)  # the paper's 10 % unless told otherwise


def test_no_warmup_and_set_learning_rate() -> None:
    s = WarmupCosineSchedule(peak_lr=2.0, warmup_steps=0, total_steps=4, min_lr_ratio=0.0)
    assert [round(s(i), 6) for i in range(5)] == [
        2.0,
        round(1 + math.cos(math.pi / 4), 6),
        1.0,
        round(1 - math.cos(math.pi / 4), 6),
        0.0,
    ]
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p]}, {"params": [], "weight_decay": 0.0}], lr=1.0)
    set_learning_rate(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
