"""Values in messages: NumPy numbers written as a user wrote them, nothing lost."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest

from openesm3.utils.display import plain, shown


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float32(1.1), "1.1"),
        (np.float64(1e39), "1e+39"),
        (np.int64(3), "3"),
        (np.str_("A"), "'A'"),
        (np.bool_(True), "True"),
        (1.5, "1.5"),
        ("A", "'A'"),
        (np.array(1.1, dtype=np.float32), "1.1"),  # a 0-d array as its one entry, in float32's own digits
        (np.array("A"), "'A'"),
        (np.array([1.1, 2.5], dtype=np.float32), "[1.1, 2.5]"),
        (np.array([[1, 2], [3, 4]]), "[[1, 2], [3, 4]]"),
        (np.array([np.float32(1.1), None], dtype=object), "[1.1, None]"),
        (np.zeros(0, dtype=np.float32), "[]"),
        ([np.str_("a"), np.float64(1.5), 3], "['a', 1.5, 3]"),
        ((np.str_("a"),), "('a',)"),
        ((), "()"),
        ([[np.float32(1.1)], (np.int64(2), [np.str_("b")])], "[[1.1], (2, ['b'])]"),  # nested element-wise
        ([np.array([1, 2]), [1, 2]], "[array([1, 2]), [1, 2]]"),  # an array in a list stays an array
    ],
)
def test_shown(value: Any, expected: str) -> None:
    assert shown(value) == expected


class _Span(NamedTuple):
    start: int
    end: int


def test_a_subclass_of_list_or_tuple_keeps_its_own_repr() -> None:
    assert shown(_Span(1, 2)) == "_Span(start=1, end=2)"  # field names kept, not shown as the tuple (1, 2)


def test_plain() -> None:
    assert type(plain(np.float32(1.5))) is float and type(plain(np.int64(2))) is int
    assert type(plain(np.str_("A"))) is str and plain(np.bool_(False)) is False
    values = [1, "A"]
    assert plain(values) is values


def test_a_list_inside_itself_is_shown_as_repr_shows_it() -> None:
    """A list that contains itself recursed until RecursionError; it is ``[...]`` there, as ``repr`` writes it."""
    loop: list[Any] = [np.float32(1.1)]
    loop.append(loop)
    plain_loop: list[Any] = [1.1]
    plain_loop.append(plain_loop)
    assert shown(loop) == "[1.1, [...]]" == repr(plain_loop)
    inner: list[Any] = [np.str_("a")]
    pair = (inner, 2)
    inner.append(pair)  # a tuple holding a list that holds the tuple
    assert shown(pair) == "(['a', (...)], 2)" and repr(pair).replace("np.str_('a')", "'a'") == shown(pair)
    twice = [1, 2]
    assert shown([twice, twice]) == "[[1, 2], [1, 2]]"  # the same list twice side by side is no loop
