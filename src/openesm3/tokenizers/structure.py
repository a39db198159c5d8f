"""Structure-token track: VQ-VAE codes 0..4095 plus five special ids (spec §2).

Specials: MASK 4096, EOS 4097, BOS 4098, PAD 4099, CHAINBREAK 4100 (EOS comes *before* BOS). The VQ-VAE
encoder itself lives in ``models``; this module only frames and unframes its codes and implements the rule by
which the official ``ESM3.forward`` overwrites structure specials from the sequence's specials.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.errors import TokenizationError
from openesm3.tokenizers.tracks import as_int_array, check_token_range, finish

MASKED_CODE = -1  # how a masked / unknown residue is written in a code array given to or returned by this module


class StructureTokenizer:
    """VQ-VAE codes ``[L]`` <-> structure-track ids ``[L + 2]`` (spec §2)."""

    mask_id = C.STRUCTURE_MASK
    eos_id = C.STRUCTURE_EOS
    bos_id = C.STRUCTURE_BOS
    pad_id = C.STRUCTURE_PAD
    chain_break_id = C.STRUCTURE_CHAINBREAK
    vocab_size = C.STRUCTURE_VOCAB_SIZE

    def encode(self, codes: Any, *, add_special_tokens: bool = True, as_tensor: bool = False) -> Any:
        """Codes in ``0..4095`` (``-1`` = masked) -> ids, framed as ``[BOS, codes..., EOS]``.

        This is the official ``tokenize_structure`` framing: pad both ends with MASK, then set position 0 to
        BOS (4098) and position L+1 to EOS (4097). Special ids (4096..4100) inside ``codes`` are kept as given.
        """
        ids = as_int_array(codes, track="structure", ndim=1).copy()
        bad = np.flatnonzero((ids < MASKED_CODE) | (ids >= C.STRUCTURE_VOCAB_SIZE))
        if bad.size:
            raise TokenizationError(
                f"structure code {int(ids[bad[0]])} at residue {int(bad[0]) + 1} is outside "
                f"0..{C.STRUCTURE_N_CODES - 1} "
                f"(-1 = masked, {C.STRUCTURE_MASK}..{C.STRUCTURE_CHAINBREAK} = special ids)"
            )
        ids[ids == MASKED_CODE] = C.STRUCTURE_MASK
        if add_special_tokens:
            ids = np.concatenate(([C.STRUCTURE_BOS], ids, [C.STRUCTURE_EOS]))
        return finish(ids, as_tensor)

    def decode(self, tokens: Any, *, has_special_tokens: bool = True) -> np.ndarray:
        """Ids ``[L + 2]`` -> codes ``[L]`` int64; MASK and CHAINBREAK positions become ``-1``.

        BOS/EOS must frame the array when ``has_special_tokens``; BOS, EOS or PAD inside raise.
        """
        ids = as_int_array(tokens, track="structure", ndim=1)
        check_token_range(ids, C.STRUCTURE_VOCAB_SIZE, track="structure")
        offset = 0
        if has_special_tokens:
            if ids.size < 2 or ids[0] != C.STRUCTURE_BOS or ids[-1] != C.STRUCTURE_EOS:
                raise TokenizationError(
                    f"structure tokens must start with BOS ({C.STRUCTURE_BOS}) and end with EOS ({C.STRUCTURE_EOS})"
                )
            ids, offset = ids[1:-1], 1
        bad = np.flatnonzero(np.isin(ids, (C.STRUCTURE_BOS, C.STRUCTURE_EOS, C.STRUCTURE_PAD)))
        if bad.size:
            raise TokenizationError(
                f"structure token {int(ids[bad[0]])} (BOS/EOS/PAD) at index {int(bad[0]) + offset} inside the protein"
            )
        codes = ids.copy()
        codes[codes >= C.STRUCTURE_N_CODES] = MASKED_CODE
        return codes


def apply_sequence_specials(structure_tokens: Any, sequence_tokens: Any) -> Any:
    """The official ``ESM3.forward`` rule for structure specials (spec §2), on numpy arrays or torch tensors.

    Every ``-1`` becomes MASK (4096); then wherever the *sequence* id is BOS (0), PAD (1), EOS (2) or chain
    break (31), the structure id is overwritten with 4098, 4099, 4097 or 4100, in that order. Shapes ``[..., L]``
    must match; the result has the type of ``structure_tokens`` (a new array / tensor).
    """
    if tuple(structure_tokens.shape) != tuple(sequence_tokens.shape):
        raise TokenizationError(
            f"structure tokens {tuple(structure_tokens.shape)} and sequence tokens {tuple(sequence_tokens.shape)} "
            "must have the same shape"
        )
    if hasattr(structure_tokens, "masked_fill"):  # torch.Tensor
        out = structure_tokens.masked_fill(structure_tokens == MASKED_CODE, C.STRUCTURE_MASK)
        for seq_id, struct_id in C.SEQUENCE_TO_STRUCTURE_SPECIALS:
            out = out.masked_fill(sequence_tokens == seq_id, struct_id)
        return out
    out_np = np.where(np.asarray(structure_tokens) == MASKED_CODE, C.STRUCTURE_MASK, structure_tokens)
    seq = np.asarray(sequence_tokens)
    for seq_id, struct_id in C.SEQUENCE_TO_STRUCTURE_SPECIALS:
        out_np = np.where(seq == seq_id, struct_id, out_np)
    return out_np.astype(np.int64)
