"""Solvent-accessible surface area (SASA) track: 3 specials + 16 bins (spec §3.2).

Token = 3 + the number of boundaries strictly below the value (``torch.bucketize(..., right=False)``), so each
bin is ``(lo, hi]``, closed on the right: 0.8 -> 3, 0.81 -> 4, 151.4 -> 17, 151.41 -> 18. Values and boundaries
are compared in float32, like the official tokenizer (0.80000001 -> 3, 0.8000001 -> 4).

Our input rules (documented deviations from the official tokenizer, which maps NaN to the top bin and
negative values to the bottom bin without a word):

- ``None`` and NaN are a masked position (0), like ``None`` in the official SDK;
- a negative value (below ``-0.0``) or ``-inf`` raises :class:`TokenizationError` naming the residue;
- ``+inf`` is the open top bin (18), as in the official tokenizer.

Decoding gives bin midpoints in Å² (the open top bin uses upper edge 2 x 151.4, midpoint 227.1; spec §3.2);
the three specials decode to NaN. The official decoder returns these midpoints rounded to float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.errors import TokenizationError
from openesm3.tokenizers.tracks import as_int_array, check_token_range, finish

BOUNDARIES = np.asarray(C.SASA_BOUNDARIES, dtype=np.float64)
_BOUNDARIES_F32 = BOUNDARIES.astype(np.float32)
_EDGES = np.concatenate(([0.0], BOUNDARIES, [C.SASA_TOP_BIN_UPPER]))
# float64 [19]: NaN for the three specials, then the 16 bin midpoints.
MIDPOINTS = np.concatenate((np.full(C.SASA_FIRST_BIN, np.nan), (_EDGES[:-1] + _EDGES[1:]) / 2))


class SASATokenizer:
    """Per-residue SASA values (Å²) <-> ids (spec §3.2)."""

    mask_id = C.SASA_PAD
    pad_id = C.SASA_PAD
    boundaries: np.ndarray = BOUNDARIES
    midpoints: np.ndarray = MIDPOINTS

    def encode(
        self, sasa: Sequence[float | None] | np.ndarray, *, add_special_tokens: bool = True, as_tensor: bool = False
    ) -> Any:
        """Values ``[L]`` (``None``/NaN = masked) -> int64 ``[L + 2]`` with 0 at both ends."""
        values = _as_float_array(sasa)
        masked = np.isnan(values)
        negative = np.flatnonzero(~masked & (values < 0))
        if negative.size:
            i = int(negative[0])
            raise TokenizationError(f"SASA at residue {i + 1} is negative ({values[i]} Å²); SASA must be >= 0")
        # Compared in float32, as the official tokenizer does (torch.tensor of floats): float32(0.8) as a
        # float64 is 0.80000001 > 0.8, yet falls in the bin closed at 0.8, like the reference's 3.
        queries = np.where(masked, 0.0, values).astype(np.float32)
        ids = C.SASA_FIRST_BIN + np.searchsorted(_BOUNDARIES_F32, queries, side="left").astype(np.int64)
        ids[masked] = C.SASA_PAD
        if add_special_tokens:
            ids = np.concatenate(([C.SASA_PAD], ids, [C.SASA_PAD]))
        return finish(ids, as_tensor)

    def decode(self, tokens: Any, *, has_special_tokens: bool = True) -> np.ndarray:
        """Ids -> float64 ``[L]`` bin midpoints in Å²; specials (mask, motif, unk) -> NaN."""
        ids = as_int_array(tokens, track="SASA", ndim=1)
        check_token_range(ids, C.SASA_VOCAB_SIZE, track="SASA")
        if has_special_tokens:
            if ids.size < 2:
                raise TokenizationError("SASA tokens must include the BOS and EOS positions")
            ids = ids[1:-1]
        return MIDPOINTS[ids]

    def decode_list(self, tokens: Any, *, has_special_tokens: bool = True) -> list[float | None]:
        """Like :meth:`decode` with ``None`` for the specials (the SDK's ``ESMProtein.sasa`` convention)."""
        return [None if math.isnan(v) else float(v) for v in self.decode(tokens, has_special_tokens=has_special_tokens)]


def _as_float_array(sasa: Any) -> np.ndarray:
    if hasattr(sasa, "detach"):
        sasa = sasa.detach().cpu().numpy()
    if isinstance(sasa, np.ndarray):
        if sasa.ndim != 1:
            raise TokenizationError(f"SASA must be one value per residue, got shape {tuple(sasa.shape)}")
        if not (np.issubdtype(sasa.dtype, np.floating) or np.issubdtype(sasa.dtype, np.integer)):
            raise TokenizationError(f"SASA must be numbers, got dtype {sasa.dtype}")
        return sasa.astype(np.float64)
    if sasa is None or isinstance(sasa, (str, bytes)) or not hasattr(sasa, "__len__"):
        raise TokenizationError(f"SASA must be one value per residue (a list or array), got {type(sasa).__name__}")
    values = np.empty(len(sasa), dtype=np.float64)
    for i, value in enumerate(sasa):
        if value is None:
            values[i] = np.nan
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            values[i] = float(value)
        else:
            raise TokenizationError(f"SASA at residue {i + 1}: expected a number or None, got {value!r}")
    return values
