"""Sequence track tokenizer: 33 character-level tokens (spec §1).

Two ways in:

- :meth:`SequenceTokenizer.encode` is the user-facing path. It is case-insensitive (``"mkt"`` -> M K T) and
  validated: a character outside the vocabulary raises :class:`TokenizationError` naming its position. ``_``
  is a masked position and ``|`` a chain break between the chains of a complex.
- :meth:`SequenceTokenizer.encode_reference` reproduces the official SDK byte for byte (``tokenize_sequence``):
  lowercase letters and any unknown character become ``<unk>`` (3), the special strings ``<cls>``, ``<pad>``,
  ``<eos>``, ``<unk>`` and ``<mask>`` are recognised inside the text, and ``_`` becomes ``<mask>``.

Both wrap the result as ``<cls> ... <eos>`` (ids 0 ... 2). Output: int64 ``[L + 2]``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.errors import TokenizationError
from openesm3.tokenizers.tracks import as_int_array, check_token_range, finish

_SPECIAL_STRINGS = tuple(tok for tok in C.SEQUENCE_VOCAB if tok.startswith("<"))  # <cls> <pad> <eos> <unk> <mask>
_TOKEN_ID = {tok: i for i, tok in enumerate(C.SEQUENCE_VOCAB)}
# Characters a user may write: the single-character tokens (letters, ".", "-", "|") plus "_" for a mask.
_CHAR_TO_ID: dict[str, int] = {tok: i for i, tok in enumerate(C.SEQUENCE_VOCAB) if len(tok) == 1}
_CHAR_TO_ID[C.SEQUENCE_MASK_CHAR] = C.SEQUENCE_MASK
_ALLOWED = "".join(sorted(_CHAR_TO_ID))

# Byte -> id lookup for the validated path (uppercased input); -1 marks a byte with no token.
_BYTE_TO_ID = np.full(256, -1, dtype=np.int64)
for _char, _id in _CHAR_TO_ID.items():
    _BYTE_TO_ID[ord(_char)] = _id
# Id -> character for decoding: the single characters, "_" for a mask; "" for ids without a character.
_ID_TO_CHAR: tuple[str, ...] = tuple(
    C.SEQUENCE_MASK_CHAR if i == C.SEQUENCE_MASK else (tok if len(tok) == 1 else "")
    for i, tok in enumerate(C.SEQUENCE_VOCAB)
)
_REFERENCE_SPLIT = re.compile("(" + "|".join(re.escape(tok) for tok in _SPECIAL_STRINGS) + ")")


class SequenceTokenizer:
    """Amino-acid sequence <-> sequence-track ids (``constants.SEQUENCE_VOCAB``; spec §1)."""

    vocab: tuple[str, ...] = C.SEQUENCE_VOCAB
    bos_id = C.SEQUENCE_BOS
    eos_id = C.SEQUENCE_EOS
    pad_id = C.SEQUENCE_PAD
    mask_id = C.SEQUENCE_MASK
    chain_break_id = C.SEQUENCE_CHAINBREAK

    def normalize(self, sequence: str) -> str:
        """The validated, uppercased sequence; raises :class:`TokenizationError` naming the first bad position."""
        if not isinstance(sequence, str):
            raise TokenizationError(f"sequence must be a str, got {type(sequence).__name__}")
        try:
            upper = sequence.encode("ascii").upper().decode("ascii")  # ASCII-only case folding keeps positions
        except UnicodeEncodeError:
            upper = "".join(char.upper() if char.isascii() else "\0" for char in sequence)
        for pos, char in enumerate(upper):
            if char not in _CHAR_TO_ID:
                raise TokenizationError(
                    f"sequence position {pos + 1}: invalid character {sequence[pos]!r} "
                    f"(allowed, case-insensitive: {_ALLOWED}; '_' = masked, '|' = chain break)"
                )
        return upper

    def encode(self, sequence: str, *, add_special_tokens: bool = True, as_tensor: bool = False) -> Any:
        """Validated, case-insensitive encoding: int64 ``[L + 2]`` (``[L]`` without special tokens)."""
        if not isinstance(sequence, str):
            raise TokenizationError(f"sequence must be a str, got {type(sequence).__name__}")
        try:
            raw = sequence.encode("ascii").upper()
        except UnicodeEncodeError:
            raw = b""
            self.normalize(sequence)  # raises, naming the first non-ASCII character
        ids = _BYTE_TO_ID[np.frombuffer(raw, dtype=np.uint8)]
        if ids.size and ids.min() < 0:
            self.normalize(sequence)  # raises, naming the position
        if add_special_tokens:
            ids = np.concatenate(([C.SEQUENCE_BOS], ids, [C.SEQUENCE_EOS]))
        return finish(ids, as_tensor)

    def encode_reference(self, sequence: str, *, add_special_tokens: bool = True, as_tensor: bool = False) -> Any:
        """The official SDK's encoding, reproduced exactly (no validation, no case folding; spec §1).

        ``_`` -> ``<mask>``; special strings inside the text are single tokens; every other character is its
        own token, or ``<unk>`` if it is not in the vocabulary (lowercase letters, spaces, ``<`` ...).
        """
        if not isinstance(sequence, str):
            raise TokenizationError(f"sequence must be a str, got {type(sequence).__name__}")
        ids: list[int] = [C.SEQUENCE_BOS] if add_special_tokens else []
        for piece in _REFERENCE_SPLIT.split(sequence.replace(C.SEQUENCE_MASK_CHAR, "<mask>")):
            if piece in _TOKEN_ID and len(piece) > 1:
                ids.append(_TOKEN_ID[piece])
            else:
                ids.extend(_TOKEN_ID.get(char, C.SEQUENCE_UNK) for char in piece)
        if add_special_tokens:
            ids.append(C.SEQUENCE_EOS)
        return finish(np.asarray(ids, dtype=np.int64), as_tensor)

    def decode(self, tokens: Any, *, has_special_tokens: bool = True) -> str:
        """Ids -> sequence string, the inverse of :meth:`encode` (masks become ``_``).

        With ``has_special_tokens`` the first and last ids must be BOS and EOS and are dropped. Any other
        id without a residue character (BOS, EOS, PAD, UNK inside the sequence) raises, naming its index.
        """
        ids = as_int_array(tokens, track="sequence", ndim=1)
        check_token_range(ids, len(C.SEQUENCE_VOCAB), track="sequence")
        if has_special_tokens:
            if ids.size < 2 or ids[0] != C.SEQUENCE_BOS or ids[-1] != C.SEQUENCE_EOS:
                raise TokenizationError(
                    f"sequence tokens must start with <cls> ({C.SEQUENCE_BOS}) and end with <eos> "
                    f"({C.SEQUENCE_EOS}); got {ids[:1].tolist()} ... {ids[-1:].tolist()}"
                )
            ids = ids[1:-1]
        chars = [_ID_TO_CHAR[i] for i in ids.tolist()]
        for index, char in enumerate(chars):
            if not char:
                tok = C.SEQUENCE_VOCAB[int(ids[index])]
                raise TokenizationError(
                    f"sequence token {tok} (id {int(ids[index])}) at index {index + int(has_special_tokens)} "
                    "has no residue character"
                )
        return "".join(chars)

    def decode_reference(self, tokens: Any) -> str:
        """The official SDK's ``decode_sequence`` string: tokens joined, ``<mask>`` -> ``_``, ``<cls>``/``<eos>``
        removed wherever they are; ``<pad>`` and ``<unk>`` stay as literal text (spec §1)."""
        ids = as_int_array(tokens, track="sequence", ndim=1)
        check_token_range(ids, len(C.SEQUENCE_VOCAB), track="sequence")
        text = "".join(C.SEQUENCE_VOCAB[i] for i in ids.tolist())
        return text.replace("<mask>", C.SEQUENCE_MASK_CHAR).replace("<cls>", "").replace("<eos>", "")
