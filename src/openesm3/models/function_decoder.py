"""Function token decoder: the 8 LSH tokens of a residue -> InterPro and keyword logits
(paper A.1.8.2.1; spec §8).

Each residue is decoded independently. Its 8 tokens (one per LSH depth) are unpacked into 64 bits, bit-major
(bit b of depth d at index ``b * 8 + d``); bit j with value v embeds row ``2 j + v`` of a 128-row table. A small
transformer (rotary attention without QK-LayerNorm, GELU MLP, biases everywhere, residual scale 1) runs over
the 64 bit positions; a weight-only LayerNorm and a mean over the positions give one vector per residue, read by
three regression heads: keyword logits, keyword TF-IDF and InterPro logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.config import FUNCTION_DECODER_V0, FunctionDecoderConfig
from openesm3.layers.block import BlockConfig, TransformerBlock
from openesm3.layers.heads import RegressionHead

# Hidden width of the three output heads (spec §8: Linear(1024 -> 4096) -> GELU -> LN -> Linear(4096 -> n)).
_HEAD_HIDDEN_MULTIPLE = 4


@dataclass(frozen=True)
class FunctionDecoderOutput:
    """Per-residue outputs: keyword_logits [..., n_keywords], keyword_tfidf [..., n_keywords] (regressed TF-IDF,
    unused by decoding), interpro_logits [..., n_interpro]."""

    keyword_logits: Tensor
    keyword_tfidf: Tensor
    interpro_logits: Tensor


def unpack_lsh_bits(tokens: Tensor, bits_per_token: int = C.FUNCTION_BITS_PER_TOKEN) -> Tensor:
    """Embedding indices [..., depth * bits] of function tokens [..., depth] (spec §8).

    ``bit[b * depth + d] = ((tok_d - 4) >> b) & 1`` (bit-major), index ``2 j + bit_j``. A row containing any
    special token (< 4: pad, motif, unk, none) maps to all zeros. ``bits_per_token`` is 1 to 8 (a token holds 8 bits).
    """
    if not 1 <= bits_per_token <= C.FUNCTION_MAX_BITS_PER_TOKEN:  # 64+ would shift past int64: garbage, silently
        raise ValueError(f"bits_per_token must be 1 to {C.FUNCTION_MAX_BITS_PER_TOKEN}, got {bits_per_token}")
    depth = tokens.shape[-1]
    lsh = (tokens.long() - C.FUNCTION_LSH_OFFSET).clamp_min(0)  # [..., depth]
    shifts = torch.arange(bits_per_token, device=tokens.device)
    bits = (lsh[..., None, :] >> shifts[:, None]) & 1  # [..., bits, depth]: bit-major order
    bits = bits.flatten(-2)  # [..., bits * depth], index b * depth + d
    index = 2 * torch.arange(depth * bits_per_token, device=tokens.device) + bits
    special = (tokens < C.FUNCTION_LSH_OFFSET).any(-1, keepdim=True)
    return index.masked_fill(special, 0)


class FunctionDecoder(nn.Module):
    """Function token decoder (paper A.1.8.2.1).

    Args:
        config: shapes and vocabulary sizes.
    """

    def __init__(self, config: FunctionDecoderConfig = FUNCTION_DECODER_V0) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = nn.Embedding(2 * config.n_bits, d)
        block = BlockConfig(d_model=d, n_heads=config.n_heads, ffn_dim=4 * d, ffn="gelu", bias=True, qk_norm=False)
        self.blocks = nn.ModuleList(TransformerBlock(block) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(d, eps=C.LAYER_NORM_EPS, bias=False)
        hidden = _HEAD_HIDDEN_MULTIPLE * d
        self.keyword_head = RegressionHead(d, config.n_keywords, hidden)
        self.tfidf_head = RegressionHead(d, config.n_keywords, hidden)
        self.interpro_head = RegressionHead(d, config.n_interpro, hidden)

    def forward(self, tokens: Tensor, *, deduplicate: bool = True) -> FunctionDecoderOutput:
        """tokens [..., depth] int function token ids (one row per residue; no BOS/EOS handling here).

        Returns :class:`FunctionDecoderOutput` with leading dimensions ``...``.

        Residues are decoded independently, so identical rows give identical outputs. Real function tracks repeat
        the same 8 tokens over every residue of an annotation (and all rows with a special token unpack to the
        same bits), so with ``deduplicate`` (the default) each distinct unpacked row is decoded once and the
        results are copied to its residues; ``deduplicate=False`` is the plain path (tested equal).
        """
        if tokens.shape[-1] != self.config.depth:
            raise ValueError(f"function tokens must be [..., {self.config.depth}], got {tuple(tokens.shape)}")
        lead = tokens.shape[:-1]
        index = unpack_lsh_bits(tokens.reshape(-1, self.config.depth), self.config.bits_per_token)  # [N, 64]
        inverse = None
        # Training with residual dropout: each residue must draw its own dropout mask, so no sharing of rows.
        dropout = self.training and any(cast(TransformerBlock, block).dropout for block in self.blocks)
        if deduplicate and index.shape[0] > 1 and not dropout:
            distinct, inverse = torch.unique(index, dim=0, return_inverse=True)  # [U, 64], [N]
            if distinct.shape[0] < index.shape[0]:
                index = distinct
            else:
                inverse = None
        x = self.embedding(index)
        for block in self.blocks:
            x = block(x)
        pooled = self.norm(x).mean(dim=1)  # [U or N, D]
        outputs = [head(pooled) for head in (self.keyword_head, self.tfidf_head, self.interpro_head)]
        if inverse is not None:
            outputs = [out[inverse] for out in outputs]
        keyword, tfidf, interpro = (out.view(*lead, out.shape[-1]) for out in outputs)  # explicit: lead may hold a 0
        return FunctionDecoderOutput(keyword_logits=keyword, keyword_tfidf=tfidf, interpro_logits=interpro)
