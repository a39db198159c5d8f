"""Unmasking schedules, committed-per-step counts and temperature annealing (spec §10.3, §11, §13.12)."""

from __future__ import annotations

import math

import pytest
import torch

from openesm3.generation.schedules import (
    SCHEDULES,
    annealed_temperature,
    commit_counts,
    effective_num_steps,
    masked_after_each_step,
    masked_after_step,
    step_temperature,
)

# Spec §10.3, measured on the reference: positions committed per step, cosine schedule, 20 steps.
SPEC_COSINE_20 = {
    50: [1, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 3, 4, 4, 4, 3, 4],
    100: [1, 1, 1, 2, 3, 3, 4, 4, 5, 6, 5, 7, 6, 7, 7, 7, 8, 8, 8, 7],
    128: [1, 1, 2, 3, 3, 4, 5, 6, 6, 7, 7, 8, 9, 8, 9, 10, 10, 9, 10, 10],
}


@pytest.mark.parametrize("length", sorted(SPEC_COSINE_20))
def test_cosine_counts_match_the_measured_reference_tables(length: int) -> None:
    assert commit_counts("cosine", 20, length) == SPEC_COSINE_20[length]


def test_linear_counts_alternate_for_length_50() -> None:
    assert commit_counts("linear", 20, 50) == [3, 2] * 10


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize(("num_steps", "total"), [(1, 1), (3, 3), (8, 7), (20, 128), (32, 130), (5, 400)])
def test_every_position_is_committed_and_the_last_step_empties(schedule: str, num_steps: int, total: int) -> None:
    steps = effective_num_steps(num_steps, total)
    counts = commit_counts(schedule, steps, total)
    assert len(counts) == steps and sum(counts) == total and min(counts) >= 0
    assert masked_after_each_step(schedule, steps, total)[-1] == 0
    # Before the last step something is always left to do (so no step of a capped run finds nothing masked).
    assert all(k >= 1 for k in masked_after_each_step(schedule, steps, total)[:-1])


def test_commit_counts_never_go_negative_when_fewer_positions_are_masked_than_total() -> None:
    # cosine over 4 steps of 10 keeps 9, 7, 3, 0 masked; with only 3 masked at the start, nothing is committed until
    # the schedule drops below 3 (a negative count would "re-mask" positions and break the running total).
    assert commit_counts("cosine", 4, 10) == [1, 2, 4, 3]
    assert commit_counts("cosine", 4, 10, still_masked=3) == [0, 0, 0, 3]


def test_schedule_arithmetic_is_float32_with_offset_and_truncation() -> None:
    # linear, 10 steps, 17 positions, after step 2: 0.7 * 17 + 0.1 is 12.0 in float32 but 11.999999999999998 in
    # float64; the reference works in float32 and keeps 12 masked.
    assert masked_after_step("linear", 2, 10, 17) == 12
    assert int((1 - 3 / 10) * 17 + 0.1) == 11  # what float64 would give
    # The same expression in float32 by hand, over a grid.
    for total in (17, 41, 67, 97):
        for t in range(10):
            s = torch.tensor((t + 1) / 10, dtype=torch.float32)
            expected = int(((1 - s) * torch.tensor(total) + 0.1).int())
            assert masked_after_step("linear", t, 10, total) == expected


def test_schedule_values() -> None:
    s = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(SCHEDULES["cosine"](s), torch.tensor([1.0, math.sqrt(0.5), 0.0]), atol=1e-7)
    assert torch.equal(SCHEDULES["linear"](s), torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(SCHEDULES["square_root"](s), torch.tensor([1.0, 1 - math.sqrt(0.5), 0.0]))
    assert torch.equal(SCHEDULES["cubic"](s), torch.tensor([1.0, 0.875, 0.0]))
    assert torch.equal(SCHEDULES["square"](s), torch.tensor([1.0, 0.75, 0.0]))


def test_num_steps_is_capped_to_the_number_of_positions() -> None:
    assert effective_num_steps(20, 7) == 7
    assert effective_num_steps(20, 20) == 20
    assert effective_num_steps(20, 0) == 20  # nothing to count: no cap (the reference's rule)
    assert effective_num_steps(5, 100) == 5


def test_annealed_temperature_is_squared_and_floored() -> None:
    # Spec §10.3: T0 = 1, 20 steps -> 1.0, 0.8975, 0.8006, ..., 0.0028, 1e-6.
    temps = [annealed_temperature(t, 20, 1.0) for t in range(20)]
    assert temps[0] == 1.0
    assert temps[1] == pytest.approx(0.8975, abs=5e-5)
    assert temps[2] == pytest.approx(0.8006, abs=5e-5)
    assert temps[18] == pytest.approx(0.0028, abs=5e-5)
    assert temps[19] == pytest.approx(1e-6, rel=1e-9)
    assert all(a > b for a, b in zip(temps, temps[1:]))
    assert annealed_temperature(0, 1, 0.7) == pytest.approx(0.49)  # one step: ratio 0
    assert step_temperature(3, 20, 0.7, False) == 0.7
    assert step_temperature(0, 20, 0.0, True) == pytest.approx(1e-6)  # T0 = 0 with annealing is not greedy
