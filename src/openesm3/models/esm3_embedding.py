"""Input embedding of the ESM3 trunk: every track embedded and summed (paper A.1.5.1, Algorithm 3; spec §4.2).

    x = E_seq[seq] + Lin_avg(rbf16(avg_plddt)) + Lin_res(rbf16(res_plddt)) + E_struct[struct] + E_ss8[ss8]
        + E_sasa[sasa] + concat_k E_func_k[func[..., k]] + sum_{n: r_n != 0} E_res[r_n]

Coordinates are not embedded; they enter only through geometric attention in block 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from openesm3 import constants as C


def rbf(values: Tensor, n_bins: int = C.PLDDT_RBF_BINS, v_min: float = 0.0, v_max: float = 1.0) -> Tensor:
    """Gaussian radial basis features [..., n_bins] in fp32 (paper A.1.9.1, spec §4.2).

    ``exp(-((v - c_i) / sigma)^2)`` with ``c = linspace(v_min, v_max, n_bins)`` and
    ``sigma = (v_max - v_min) / n_bins``. Note ``rbf(0)`` is not the zero vector: "no pLDDT" still adds a
    constant to the embedding, as in the reference.
    """
    values = values.float()
    centers = torch.linspace(v_min, v_max, n_bins, device=values.device, dtype=torch.float32)
    z = (values.unsqueeze(-1) - centers) / ((v_max - v_min) / n_bins)
    return torch.exp(-(z**2))


class ESM3InputEmbedding(nn.Module):
    """Embeds the token tracks and the two pLDDT conditionings of ESM3 and sums them.

    Args:
        d_model: model width D (divisible by the function depth 8: each depth fills D/8 channels).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if d_model % C.FUNCTION_DEPTH:
            raise ValueError(f"d_model={d_model} must be divisible by {C.FUNCTION_DEPTH}")
        self.sequence = nn.Embedding(C.SEQUENCE_EMBED_DIM, d_model)
        self.average_plddt = nn.Linear(C.PLDDT_RBF_BINS, d_model)
        self.per_residue_plddt = nn.Linear(C.PLDDT_RBF_BINS, d_model)
        self.structure = nn.Embedding(C.STRUCTURE_VOCAB_SIZE, d_model)
        self.ss8 = nn.Embedding(C.SS8_VOCAB_SIZE, d_model)
        self.sasa = nn.Embedding(C.SASA_VOCAB_SIZE, d_model)
        # One table per LSH depth, each D/8 wide; their lookups are concatenated (paper Algorithm 3).
        # padding_idx only shapes initialisation and gradients; row 0 comes from the checkpoint (spec §4.2).
        self.function = nn.ModuleList(
            nn.Embedding(C.FUNCTION_VOCAB_SIZE, d_model // C.FUNCTION_DEPTH, padding_idx=C.FUNCTION_PAD)
            for _ in range(C.FUNCTION_DEPTH)
        )
        # A bag sum that skips id 0 entirely (spec §13.6): an all-<pad> row embeds to exactly zero.
        self.residue = nn.EmbeddingBag(C.RESIDUE_VOCAB_SIZE, d_model, mode="sum", padding_idx=C.RESIDUE_PAD)

    def forward(
        self,
        sequence_tokens: Tensor,
        structure_tokens: Tensor,
        average_plddt: Tensor,
        per_res_plddt: Tensor,
        ss8_tokens: Tensor,
        sasa_tokens: Tensor,
        function_tokens: Tensor,
        residue_annotation_tokens: Tensor,
    ) -> Tensor:
        """Token tracks [B, L] (function [B, L, 8], residue annotations [B, L, N]); pLDDTs [B, L] (or
        broadcastable to it) in [0, 1]. All tracks share B and L (already broadcast). Returns [B, L, D]."""
        b, length = sequence_tokens.shape
        dtype = self.average_plddt.weight.dtype
        # The RBF features are built in fp32 and meet the projection in the parameters' dtype. A scalar or
        # per-protein pLDDT is expanded to [B, L] first: the projection of 2 rows and of 2 * L rows may round
        # differently (matrix-product kernels block by shape), and every form must equal the [B, L] default.
        plddt = self.average_plddt(rbf(average_plddt.expand(b, length)).to(dtype))
        per_res = self.per_residue_plddt(rbf(per_res_plddt.expand(b, length)).to(dtype))
        function = torch.cat(
            [table(tokens) for table, tokens in zip(self.function, function_tokens.unbind(-1))], dim=-1
        )
        n_annotations = residue_annotation_tokens.shape[-1]  # explicit sizes: -1 cannot be inferred for B = 0
        residue = self.residue(residue_annotation_tokens.reshape(b * length, n_annotations)).view(
            b, length, self.residue.embedding_dim
        )
        # Same summation order as the reference, so fp32 rounding matches as closely as possible.
        return (
            self.sequence(sequence_tokens)
            + plddt
            + per_res
            + self.structure(structure_tokens)
            + self.ss8(ss8_tokens)
            + self.sasa(sasa_tokens)
            + function
            + residue
        )
