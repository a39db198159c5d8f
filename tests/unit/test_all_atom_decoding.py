"""decode_all_atom: sequence-conditioned decoding into all heavy atoms, and its input errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from openesm3.config import StructureDecoderConfig
from openesm3.errors import InputError
from openesm3.generation.all_atom_decoding import decode_all_atom, sequence_row
from openesm3.generation.structure_tokens import StructureTokens
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.structure import residue_constants as RC

TINY = StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1, pairwise_dim=8, sequence_conditioning=True)


def _tokens(sequence: str | None, n: int = 6, chains: int = 1) -> StructureTokens:
    row = [4098]
    for k in range(chains):
        if k:
            row.append(4100)
        row += list(range(k, k + n))
    row.append(4097)
    item = StructureTokens.from_token_row(row)
    if sequence is None:
        return item
    return StructureTokens(tuple(replace(c, sequence=sequence) for c in item.chains), "t")


def test_decodes_every_heavy_atom_of_the_sequence() -> None:
    torch.manual_seed(0)
    decoder = StructureDecoder(TINY).eval()
    seq = "WGKDAF"
    out = decode_all_atom(_tokens(seq), decoder)[0]
    chain = out.structure.chains[0]
    assert chain.sequence == seq
    for i, one in enumerate(seq):
        expected = {a for a in RC.RESIDUE_HEAVY_ATOMS[RC.RESTYPE_1TO3[one]] if a != "OXT"}
        got = {RC.ATOM37_NAMES[j] for j in np.flatnonzero(chain.atom37_mask[i])}
        assert got == expected, one
    assert out.plddt.shape == (6,) and 0 < out.ptm <= 1
    # two chains: sequences joined by '|' line up with CHAINBREAK
    two = _tokens(seq, chains=2)
    assert sequence_row(two).shape[0] == len(two.tokens)
    decoded = decode_all_atom(two, decoder)[0]
    assert [c.sequence for c in decoded.structure.chains] == [seq, seq]


def test_input_errors() -> None:
    decoder = StructureDecoder(TINY).eval()
    with pytest.raises(InputError, match="no sequence"):
        decode_all_atom(_tokens(None), decoder)
    plain = StructureDecoder(StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1, pairwise_dim=8)).eval()
    with pytest.raises(InputError, match="sequence-conditioned"):
        decode_all_atom(_tokens("AAAAAA"), plain)
