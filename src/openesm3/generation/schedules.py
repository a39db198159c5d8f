"""Unmasking schedules and the per-step arithmetic of iterative decoding (paper A.1.10; spec §10.3, §11, §13.12).

A schedule maps the decoding progress s in [0, 1] to the fraction of the positions still masked afterwards. After
step t (0-based) of ``num_steps``, ``keep = int(schedule((t + 1) / num_steps) * total + 0.1)`` positions stay
masked; the step commits ``still_masked - keep`` of them. The arithmetic runs in float32 on 0-dim tensors and
truncates, exactly as the reference does, so the committed counts agree position for position (the spec's
measured tables are unit tests). The temperature anneal is the reference's, squared.

Everything here is host-side and depends only on counts known before the decoding loop starts, so the loop itself
never has to read anything back from the device to know how many positions to commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

from openesm3 import constants as C

ScheduleName = Literal["cosine", "linear"]
GENERATION_SCHEDULES: tuple[str, ...] = ("cosine", "linear")


def cosine_schedule(s: Tensor) -> Tensor:
    """cos(pi s / 2), the MaskGIT schedule (spec §11); op order as the reference: ``cos(s * pi * 0.5)``."""
    return torch.cos(s * math.pi * 0.5)


def linear_schedule(s: Tensor) -> Tensor:
    """1 - s (spec §11)."""
    return 1 - s


def square_root_schedule(s: Tensor) -> Tensor:
    """1 - sqrt(s) (spec §11; not accepted by generation, listed for training)."""
    return 1 - torch.sqrt(s)


def cubic_schedule(s: Tensor) -> Tensor:
    """1 - s^3 (spec §11; not accepted by generation)."""
    return 1 - s**3


def square_schedule(s: Tensor) -> Tensor:
    """1 - s^2 (spec §11; not accepted by generation)."""
    return 1 - s**2


SCHEDULES: dict[str, Callable[[Tensor], Tensor]] = {
    "cosine": cosine_schedule,
    "linear": linear_schedule,
    "square_root": square_root_schedule,
    "cubic": cubic_schedule,
    "square": square_schedule,
}


def masked_after_step(schedule: str, step: int, num_steps: int, total: int) -> int:
    """Positions that stay masked after ``step`` (0-based): ``int(sched((step+1)/num_steps) * total + 0.1)``.

    Computed as the reference does (spec §13.12): the ratio is a Python float turned into a float32 0-dim
    tensor, the schedule and the product with the int64 count run in float32, then ``+ 0.1`` and truncation.
    """
    fn = SCHEDULES[schedule]
    frac = fn(torch.tensor((step + 1) / num_steps))  # float32
    return int((frac * torch.tensor(total) + C.SCHEDULE_ROUNDING_OFFSET).int())


@lru_cache(maxsize=4096)
def masked_after_each_step(schedule: str, num_steps: int, total: int) -> tuple[int, ...]:
    """``masked_after_step`` for every step 0 .. num_steps - 1 (cached: it only depends on its arguments)."""
    return tuple(masked_after_step(schedule, t, num_steps, total) for t in range(num_steps))


def effective_num_steps(num_steps: int, total: int) -> int:
    """The reference decodes in ``total`` steps when 0 < total < num_steps (spec §10.3; it mutates the caller's
    config to do so, we do not)."""
    return total if 0 < total < num_steps else num_steps


def commit_counts(schedule: str, num_steps: int, total: int, still_masked: int | None = None) -> list[int]:
    """Positions committed at each step when every commit unmasks its position (the normal case).

    Args:
        schedule: ``"cosine"`` or ``"linear"`` (any key of :data:`SCHEDULES`).
        num_steps: steps after the cap of :func:`effective_num_steps`.
        total: the reference's ``total_to_sample`` (spec §10.3).
        still_masked: masked positions before step 0; defaults to ``total`` (it differs when the target track
            is absent: all L positions are masked while ``total`` counts non-special sequence tokens).
    """
    still = total if still_masked is None else still_masked
    counts = []
    for keep in masked_after_each_step(schedule, num_steps, total):
        n = max(still - keep, 0)
        counts.append(n)
        still -= n
    return counts


def annealed_temperature(step: int, num_steps: int, initial: float) -> float:
    """T = max(T0 - step / max(1, num_steps - 1), 0.001) ** 2 (spec §10.3; squared, as the reference)."""
    ratio = step / max(1, num_steps - 1)
    return max(initial - ratio, C.ANNEALED_TEMPERATURE_FLOOR) ** 2


def step_temperature(step: int, num_steps: int, initial: float, annealing: bool) -> float:
    """The sampling temperature of ``step``: annealed if requested, else the initial one."""
    return annealed_temperature(step, num_steps, initial) if annealing else initial
