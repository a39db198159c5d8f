"""Values written plainly in messages: NumPy 2's ``repr`` shows ``np.float64(1.5)`` where a user wrote ``1.5``."""

from __future__ import annotations

from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python number, bool or str it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def shown(value: Any) -> str:
    """``repr`` for messages with NumPy values written plainly: NumPy 2 shows ``np.float32(inf)``, ``np.str_('A')``.
    A NumPy float is shown in its own precision (``1.1``, not float32's ``1.100000023841858``), an array as a list of
    its entries so shown (a 0-d array as its one entry), a list or tuple element by element (an array in it as an
    array); a list or tuple inside itself is ``[...]`` or ``(...)``, as ``repr`` writes it."""
    return _shown(value, set())


def _shown(value: Any, active: set[int]) -> str:
    """:func:`shown` of ``value`` inside the lists and tuples whose ids are in ``active`` (being shown)."""
    if isinstance(value, np.floating):
        return str(value)
    if isinstance(value, np.ndarray):  # its entries as NumPy scalars: float32 in its own digits, no np.float32(...)
        return _shown(value[()], active) if value.ndim == 0 else f"[{', '.join(_shown(v, active) for v in value)}]"
    if type(value) in (list, tuple):  # e.g. an annotation given as (np.str_('a'), np.float64(1.0), 3)
        if id(value) in active:  # a list that contains itself: repr's [...], not a RecursionError
            return "[...]" if isinstance(value, list) else "(...)"
        active.add(id(value))
        try:
            inner = ", ".join(repr(v) if isinstance(v, np.ndarray) else _shown(v, active) for v in value)  # an array
        finally:  # stays one; a list shown twice side by side (not inside itself) is shown in full both times
            active.discard(id(value))
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(plain(value))
