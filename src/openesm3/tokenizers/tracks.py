"""What every track tokenizer shares: the output type (numpy int64, or torch on request) and length checks.

Track tokenizers return ``numpy.int64`` arrays; ``as_tensor=True`` returns a ``torch.Tensor`` instead (torch is
imported only then, so tokenizing stays torch-free).
"""

from __future__ import annotations

from collections.abc import Sized
from typing import TYPE_CHECKING, Any

import numpy as np

from openesm3.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

TokenArray = np.ndarray  # int64, [L] or [L, depth]


def finish(tokens: np.ndarray, as_tensor: bool) -> Any:
    """``tokens`` as int64 numpy, or as a torch.int64 tensor when ``as_tensor``."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    if not as_tensor:
        return tokens
    import torch  # noqa: PLC0415 - keep tokenization torch-free unless a tensor is asked for

    return torch.from_numpy(tokens)


def as_int_array(tokens: np.ndarray | torch.Tensor | Any, *, track: str, ndim: int) -> np.ndarray:
    """Token ids from numpy / torch / nested lists as an int64 array of ``ndim`` dims, or a clear error."""
    if hasattr(tokens, "detach"):  # torch.Tensor without importing torch
        tokens = tokens.detach().cpu().numpy()
    try:
        array = np.asarray(tokens)
    except ValueError as exc:  # nested lists of different lengths
        raise InputError(f"{track} tokens: not a regular array of ids ({exc})") from None
    if array.ndim != ndim:
        raise InputError(f"{track} tokens: expected {ndim} dimension(s), got shape {tuple(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{track} tokens: expected integer ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def check_token_range(tokens: np.ndarray, vocab_size: int, *, track: str) -> None:
    """Raise naming the first position whose id is outside ``0..vocab_size-1``."""
    bad = np.flatnonzero((tokens < 0) | (tokens >= vocab_size)) if tokens.size else np.empty(0, np.int64)
    if bad.size:
        pos = np.unravel_index(int(bad[0]), tokens.shape)
        where = ", ".join(str(int(p)) for p in pos)
        raise InputError(f"{track} tokens: id {int(tokens[pos])} at index [{where}] is outside 0..{vocab_size - 1}")


def track_length(value: Any) -> int:
    """Number of residues of a track given as a string, a list, an array/tensor ([L, ...]) or an int."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    shape = getattr(value, "shape", None)
    if shape is not None:
        if len(shape) == 0:
            raise InputError("a track given as an array must have at least one dimension")
        return int(shape[0])
    if isinstance(value, Sized):
        return len(value)
    raise InputError(f"cannot take the length of a track of type {type(value).__name__}")


def check_track_lengths(**tracks: Any) -> int:
    """Check that every given track (``None`` = absent) has the same number of residues; return it.

    Tracks are passed by name (``sequence="MKT", sasa=[...], coordinates=array[L, 37, 3]``) so the error names
    them: ``track lengths disagree: sequence has 3 residues, sasa has 4``. Give residue-level values (no
    BOS/EOS) or token-level values consistently. Raises :class:`InputError` if no track is given.
    """
    lengths = {name: track_length(value) for name, value in tracks.items() if value is not None}
    if not lengths:
        raise InputError("no track given: at least one track is needed to know the protein length")
    if len(set(lengths.values())) > 1:
        parts = ", ".join(f"{name} has {n} residue{'s' if n != 1 else ''}" for name, n in lengths.items())
        raise InputError(f"track lengths disagree: {parts}")
    return next(iter(lengths.values()))
