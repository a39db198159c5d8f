"""Argument checks shared by the Python API: one message for one mistake, and a bool is not a number."""

from __future__ import annotations

import pytest

from openesm3.errors import InputError
from openesm3.utils.checks import check_batch_size, check_seed


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "8", None])
def test_batch_size_must_be_an_int_of_at_least_one(bad: object) -> None:
    with pytest.raises(InputError, match=r"batch_size must be an integer >= 1, got"):
        check_batch_size(bad)


def test_batch_size_accepts_ints_and_none_where_allowed() -> None:
    check_batch_size(1)
    check_batch_size(None, allow_none=True)
    with pytest.raises(InputError, match=r">= 1 or None, got False"):
        check_batch_size(False, allow_none=True)


@pytest.mark.parametrize("bad", [-1, 2**64, False, 1.0])
def test_seed_must_fit_64_bits(bad: object) -> None:
    with pytest.raises(InputError, match=r"my_seed must be an int in \[0, 2\*\*64\)"):
        check_seed(bad, "my_seed")


def test_seed_bounds_are_inclusive_of_zero_and_2_to_the_64_minus_1() -> None:
    check_seed(0)
    check_seed(2**64 - 1)
