"""All-atom structures from structure tokens and the sequence (paper A.1.7.2, Algorithm 8 with stage-2A side chains).

A sequence-conditioned decoder (``StructureDecoderConfig.sequence_conditioning``, e.g. the bundled tokenizer)
reads the token row together with the chains' sequences; its backbone frames and torsion outputs are turned into
every heavy atom by :func:`openesm3.geometry.all_atom.all_atom_from_frames`. A decoder without sequence
conditioning (the official one) has no trained torsions: use
:func:`~openesm3.generation.structure_tokens.decode_structure` for its backbones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.generation.structure_tokens import DecodedStructure, StructureTokens, withhold_untrained
from openesm3.geometry.all_atom import all_atom_from_frames, restype_from_sequence_tokens
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.structure.chain import ProteinChain
from openesm3.structure.complex import ProteinComplex
from openesm3.tokenizers.sequence import SequenceTokenizer


def sequence_row(item: StructureTokens) -> torch.Tensor:
    """Sequence ids aligned with ``item.tokens`` [N]: ``<cls>``, residues (``|`` at chain breaks), ``<eos>``.

    Raises :class:`InputError` when a chain's sequence is unknown.
    """
    parts = []
    for chain in item.chains:
        if chain.sequence is None:
            raise InputError(f"structure tokens {item.name!r}: chain {chain.chain_id!r} has no sequence")
        parts.append(chain.sequence)
    tokenizer = SequenceTokenizer()
    ids = tokenizer.encode(C.SEQUENCE_CHAINBREAK_CHAR.join(parts))
    return torch.as_tensor(np.asarray(ids), dtype=torch.long)


@torch.no_grad()
def decode_all_atom(
    items: StructureTokens | Sequence[StructureTokens], decoder: StructureDecoder
) -> list[DecodedStructure]:
    """Decode token rows with their sequences into all-atom structures (pLDDT in the B-factors; confidences of
    heads the decoder's weights record as untrained withheld, as :func:`decode_structure` does)."""
    if not decoder.config.sequence_conditioning:
        raise InputError("all-atom decoding needs a sequence-conditioned decoder (the official decoder has none)")
    batch = [items] if isinstance(items, StructureTokens) else list(items)
    device = decoder.embed.weight.device
    results = []
    for item in batch:
        tokens = torch.from_numpy(item.tokens)[None].to(device)
        sequence = sequence_row(item)[None].to(device)
        if sequence.shape != tokens.shape:
            raise InputError(
                f"structure tokens {item.name!r}: {sequence.shape[1]} sequence ids for {tokens.shape[1]} tokens"
            )
        out = decoder(tokens, sequence_tokens=sequence)
        restype = restype_from_sequence_tokens(sequence[0])
        atoms = all_atom_from_frames(out.frames[0], out.torsions[0].float(), restype)
        atom37, mask37 = atoms.to_atom37(restype)
        row = item.tokens
        residue = (row < C.STRUCTURE_N_CODES)[1:-1]
        inner = slice(1, len(row) - 1)
        xyz = atom37[inner].cpu().numpy()[residue]
        present = mask37[inner].cpu().numpy()[residue]
        plddt = out.plddt[0, inner].cpu().numpy()[residue]
        pae = out.pae[0, inner, inner].cpu().numpy()[np.ix_(residue, residue)]
        untrained = decoder.untrained_heads()
        plddt, ptm, pae, b_factor = withhold_untrained(plddt, float(out.ptm[0]), pae, untrained)
        chains, start = [], 0
        for chain in item.chains:
            n = len(chain.codes)
            coords = np.where(present[start : start + n, :, None], xyz[start : start + n], np.nan)
            chains.append(
                ProteinChain.from_atom37(
                    coords.astype(np.float32),
                    sequence=chain.sequence,
                    residue_index=chain.residue_index,
                    insertion_code=chain.insertion_code,
                    chain_id=chain.chain_id,
                    b_factor=b_factor[start : start + n],
                    name=item.name,
                )
            )
            start += n
        results.append(DecodedStructure(ProteinComplex(tuple(chains), item.name), plddt, ptm, pae, item, untrained))
    return results
