"""Secondary-structure (SS8) track: 11 tokens, the 8 DSSP states ``GHITEBSC`` at ids 3..10 (spec §3.1).

``<pad>`` (0) is the mask, BOS, EOS and chain-break token; ``_`` in a user string is a masked position.
Letters are accepted in either case; anything else raises :class:`TokenizationError` naming the position (the
official tokenizer raises a bare ``KeyError``). :func:`dssp_to_ss8` turns raw DSSP output (blank / ``-`` coil,
DSSP 4's ``P``) into the 8-state alphabet first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.errors import TokenizationError
from openesm3.tokenizers.tracks import as_int_array, check_token_range, finish

_CHAR_TO_ID: dict[str, int] = {state: 3 + i for i, state in enumerate(C.SS8_STATES)}
_CHAR_TO_ID[C.SS8_MASK_CHAR] = C.SS8_PAD
_BYTE_TO_ID = np.full(256, -1, dtype=np.int64)
for _char, _id in _CHAR_TO_ID.items():
    _BYTE_TO_ID[ord(_char)] = _id
    _BYTE_TO_ID[ord(_char.lower())] = _id
_DSSP_TABLE = str.maketrans({alias: "C" for alias in C.DSSP_COIL_ALIASES})


def dssp_to_ss8(dssp: str) -> str:
    """DSSP per-residue codes -> the SS8 alphabet: blank, ``-`` and ``P`` (polyproline, DSSP >= 4) become ``C``.

    Other characters pass through unchanged (``_`` stays a mask, invalid letters are caught by the tokenizer).
    """
    return dssp.translate(_DSSP_TABLE)


class SS8Tokenizer:
    """SS8 string <-> ids (``constants.SS8_VOCAB``; spec §3.1)."""

    vocab: tuple[str, ...] = C.SS8_VOCAB
    mask_id = C.SS8_PAD
    pad_id = C.SS8_PAD

    def encode(self, ss8: str, *, add_special_tokens: bool = True, as_tensor: bool = False) -> Any:
        """``"HHHE_C"`` -> int64 ``[L + 2]`` with 0 at both ends and at every ``_``."""
        if not isinstance(ss8, str):
            raise TokenizationError(f"secondary structure must be a str, got {type(ss8).__name__}")
        try:
            raw = ss8.encode("ascii")
        except UnicodeEncodeError:
            raw = None
        ids = _BYTE_TO_ID[np.frombuffer(raw, dtype=np.uint8)] if raw is not None else None
        if ids is None or (ids.size and ids.min() < 0):
            pos = next(i for i, ch in enumerate(ss8) if not (ch.isascii() and _BYTE_TO_ID[ord(ch)] >= 0))
            raise TokenizationError(
                f"secondary structure position {pos + 1}: invalid SS8 letter {ss8[pos]!r} "
                f"(allowed: {C.SS8_STATES} and '_' for masked; use dssp_to_ss8() for raw DSSP output)"
            )
        if add_special_tokens:
            ids = np.concatenate(([C.SS8_PAD], ids, [C.SS8_PAD]))
        return finish(ids, as_tensor)

    def decode(self, tokens: Any, *, has_special_tokens: bool = True) -> str:
        """Ids -> SS8 string, the inverse of :meth:`encode`: ``<pad>`` becomes ``_``.

        ``<motif>`` (1) and ``<unk>`` (2) have no SS8 letter and raise, naming the index. With
        ``has_special_tokens`` the first and last ids (BOS/EOS positions) are dropped.
        """
        ids = as_int_array(tokens, track="secondary structure", ndim=1)
        check_token_range(ids, C.SS8_VOCAB_SIZE, track="secondary structure")
        offset = 0
        if has_special_tokens:
            if ids.size < 2:
                raise TokenizationError("secondary structure tokens must include the BOS and EOS positions")
            ids, offset = ids[1:-1], 1
        bad = np.flatnonzero((ids == C.SS8_MOTIF) | (ids == C.SS8_UNK))
        if bad.size:
            i = int(bad[0])
            raise TokenizationError(
                f"secondary structure token {C.SS8_VOCAB[ids[i]]} at index {i + offset} has no SS8 letter"
            )
        return "".join(C.SS8_MASK_CHAR if i == C.SS8_PAD else C.SS8_VOCAB[i] for i in ids.tolist())
