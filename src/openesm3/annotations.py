"""Function annotations on residue ranges: the record shared by the tokenizers, decoders and the protein record.

An annotation is a label (an InterPro id such as ``IPR000001`` or ``"Kringle (IPR000001)"``, a function
keyword such as ``"kringle"``, or a residue-annotation label) over residues ``start..end``, **1-indexed and
inclusive at both ends**, exactly as the official ``FunctionAnnotation`` (spec §3.3, §10.1).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from openesm3.errors import InputError
from openesm3.utils.display import shown


@dataclass(frozen=True)
class FunctionAnnotation:
    """``label`` on residues ``start..end`` (1-indexed, both ends inclusive)."""

    label: str
    start: int
    end: int

    def __post_init__(self) -> None:
        # Positions computed with numpy (np.int64 ...) are integers: store them as plain ints. Anything else
        # (floats, bools) is kept as given and refused by check().
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
                object.__setattr__(self, name, int(value))

    def check(self, length: int, *, index: int | None = None) -> None:
        """Raise :class:`InputError` unless ``1 <= start <= end <= length`` (``index`` names the annotation)."""
        where = f"function annotation {index} " if index is not None else "function annotation "
        # Written out rather than repr(self): NumPy 2 would show a position as np.float64(1.5).
        where += f"(label={shown(self.label)}, start={shown(self.start)}, end={shown(self.end)})"
        if not isinstance(self.label, str) or not self.label:
            raise InputError(f"{where}: the label must be a non-empty string")
        for name, value in (("start", self.start), ("end", self.end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{where}: {name} must be an int, got {type(value).__name__}")
        if not 1 <= self.start <= self.end <= length:
            raise InputError(
                f"{where}: range {self.start}..{self.end} is not within 1..{length} "
                "(1-indexed, both ends inclusive, start <= end)"
            )

    @property
    def length(self) -> int:
        return self.end - self.start + 1
