"""The ESM3 trunk: a bidirectional transformer over all tracks (paper A.1.1-A.1.6, Algorithm 1; spec §4-5).

    x = embed(tracks)                                       # ESM3InputEmbedding, [B, L, D]
    for block in blocks:                                    # pre-LN, QK-LayerNorm, rotary, SwiGLU
        x = block(x)                                        # block 0 also has geometric attention
    embeddings = x                                          # pre-final-norm state (spec §4.5)
    logits_t = head_t(LayerNorm(x))  for the six tracks     # RegressionHead each

Padding (our default differs from the reference, on purpose). Padding positions are the ones whose sequence
token is ``<pad>`` (right-pad a batch with id 1). We mask them as attention keys, in self-attention and in
geometric attention, so a padded batch gives every protein the same result as running it alone. The reference
only separates proteins when ``sequence_id`` is given; without it, every token, pads included, attends to
every other (spec §13.9: its batched generation therefore depends on the batch). ``attend_to_padding=True``
reproduces the reference exactly. With ``sequence_id``, attention is restricted to equal ids as in the
reference (and, by default, padded keys are masked as well: give pads their own id and no coordinates and both
agree; the reference's geometric attention only down-weights other ids, so pads with coordinates stay visible).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.config import ESM3Config
from openesm3.geometry.rigid import Rigid
from openesm3.layers.block import BlockConfig, TransformerBlock
from openesm3.layers.heads import RegressionHead
from openesm3.models.esm3_embedding import ESM3InputEmbedding
from openesm3.models.esm3_inputs import ESM3Inputs, prepare_inputs
from openesm3.models.taxonomy import TaxonomyEmbedding, TaxonomyHead


@dataclass
class ESM3Output:
    """Outputs of :meth:`ESM3.forward` (spec §4.5). Logits are in the model's compute dtype."""

    sequence_logits: Tensor  # [B, L, 64]
    structure_logits: Tensor  # [B, L, 4096]
    secondary_structure_logits: Tensor  # [B, L, 11]
    sasa_logits: Tensor  # [B, L, 19]
    function_logits: Tensor  # [B, L, 8, 260]
    residue_logits: Tensor  # [B, L, 1478]
    embeddings: Tensor  # [B, L, D], the hidden state before the final LayerNorm
    hidden_states: tuple[Tensor, ...] | None = None  # n_layers + 1 states [B, L, D] (input embedding first)
    taxonomy_logits: Tensor | None = None  # [B, n_taxonomy_terms + 1], models with a taxonomy track only


@dataclass
class ESM3Embeddings:
    """Outputs of :meth:`ESM3.embed`."""

    per_residue: Tensor  # [B, L, D]
    mean: Tensor  # [B, D], mean over the non-padding positions (BOS/EOS included, as the reference's SDK)
    layer: int  # which state: 0 = input embedding, i = after block i, n_layers = ESM3Output.embeddings


class ESM3(nn.Module):
    """ESM3 trunk with its input embedding and six output heads.

    Args:
        config: model shape (:class:`~openesm3.config.ESM3Config`); presets in :mod:`openesm3.config`.
    """

    def __init__(self, config: ESM3Config) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = ESM3InputEmbedding(d)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                BlockConfig(
                    d_model=d,
                    n_heads=config.n_heads,
                    ffn_dim=config.ffn_dim,
                    v_heads=config.v_heads if i == 0 else 0,  # geometric attention in the first block only
                    residual_scale=config.residual_scale,
                    zero_frameless_queries=True,
                )
            )
            for i in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d, eps=C.LAYER_NORM_EPS, bias=False)  # final norm: weight only (spec §4.4)
        self.sequence_head = RegressionHead(d, C.SEQUENCE_EMBED_DIM)
        self.structure_head = RegressionHead(d, C.STRUCTURE_N_CODES)
        self.ss8_head = RegressionHead(d, C.SS8_VOCAB_SIZE)
        self.sasa_head = RegressionHead(d, C.SASA_VOCAB_SIZE)
        self.function_head = RegressionHead(d, C.FUNCTION_DEPTH * C.FUNCTION_VOCAB_SIZE)
        self.residue_head = RegressionHead(d, C.RESIDUE_VOCAB_SIZE)
        self.taxonomy_embedding: TaxonomyEmbedding | None = None
        self.taxonomy_head: TaxonomyHead | None = None
        if config.n_taxonomy_terms:
            self.taxonomy_embedding = TaxonomyEmbedding(config.n_taxonomy_terms, config.taxonomy_embed_dim, d)
            self.taxonomy_head = TaxonomyHead(config.n_taxonomy_terms, d)

    # ---- public API -------------------------------------------------------------------------------------------
    def forward(
        self,
        *,
        sequence_tokens: Tensor | None = None,
        structure_tokens: Tensor | None = None,
        ss8_tokens: Tensor | None = None,
        sasa_tokens: Tensor | None = None,
        function_tokens: Tensor | None = None,
        residue_annotation_tokens: Tensor | None = None,
        average_plddt: Tensor | float | None = None,
        per_res_plddt: Tensor | None = None,
        structure_coords: Tensor | None = None,
        chain_id: Tensor | None = None,
        sequence_id: Tensor | None = None,
        taxonomy_tokens: Tensor | None = None,
        attend_to_padding: bool = False,
        output_hidden_states: bool = False,
        validate: bool = True,
    ) -> ESM3Output:
        """Run the trunk on any subset of tracks (keyword-only; spec §4.1 defaults for the missing ones).

        Args:
            sequence_tokens: [B, L] ids in 0..63 (BOS ... EOS; ``<mask>`` = 32, ``<pad>`` = 1). Default all mask.
            structure_tokens: [B, L] in 0..4100, -1 = mask. Default all mask. Where the sequence holds
                BOS/PAD/EOS/``|``, the structure token is overwritten with its special (spec §2).
            ss8_tokens, sasa_tokens: [B, L]; default 0 (``<pad>``).
            function_tokens: [B, L, 8] in 0..259; residue_annotation_tokens: [B, L, N<=16] in 0..1477 (0 skipped).
            average_plddt: scalar, [B] or [B, L] in [0, 1]; default 1. per_res_plddt: [B, L]; default 0.
            structure_coords: [B, L, A>=3, 3] Angstrom (N, CA, C first; atom37 works); NaN/inf = no frame.
            chain_id: [B, L]; geometric attention is blocked across chains. Default 0.
            sequence_id: [B, L] ids of packed proteins; attention stays within equal ids. Default None.
            taxonomy_tokens: [B, T] lineage term ids (0 = none), models with a taxonomy track only.
            attend_to_padding: reproduce the reference, whose attention includes ``<pad>`` positions.
            output_hidden_states: also return the input embedding and every block's output.
            validate: check token ranges and pLDDT values (one host sync); shapes/dtypes are always checked.

        Returns:
            :class:`ESM3Output`; ids are broadcast from batch 1 where needed.
        """
        inputs = prepare_inputs(
            self.config,
            self._device(),
            sequence_tokens=sequence_tokens,
            structure_tokens=structure_tokens,
            ss8_tokens=ss8_tokens,
            sasa_tokens=sasa_tokens,
            function_tokens=function_tokens,
            residue_annotation_tokens=residue_annotation_tokens,
            average_plddt=average_plddt,
            per_res_plddt=per_res_plddt,
            structure_coords=structure_coords,
            chain_id=chain_id,
            sequence_id=sequence_id,
            taxonomy_tokens=taxonomy_tokens,
            validate=validate,
        )
        states = self._trunk(inputs, attend_to_padding, n_blocks=self.config.n_layers, keep=output_hidden_states)
        x = states[-1]
        h = self.norm(x)
        b, length = inputs.batch_size, inputs.length
        taxonomy_logits = None
        if self.taxonomy_head is not None:
            valid = None if inputs.padding is None or attend_to_padding else ~inputs.padding
            taxonomy_logits = self.taxonomy_head(h, valid)
        return ESM3Output(
            sequence_logits=self.sequence_head(h),
            structure_logits=self.structure_head(h),
            secondary_structure_logits=self.ss8_head(h),
            sasa_logits=self.sasa_head(h),
            function_logits=self.function_head(h).view(b, length, C.FUNCTION_DEPTH, C.FUNCTION_VOCAB_SIZE),
            residue_logits=self.residue_head(h),
            embeddings=x,
            hidden_states=tuple(states) if output_hidden_states else None,
            taxonomy_logits=taxonomy_logits,
        )

    def embed(
        self, *, layer: int = -1, attend_to_padding: bool = False, **tracks: Tensor | float | None
    ) -> ESM3Embeddings:
        """Per-residue and mean-pooled hidden states from any layer; stops after that layer.

        Args:
            layer: 0 = the input embedding, i = the output of block i (1..n_layers); negative values count
                from the end, so -1 (default) is the last block's output, i.e. ``ESM3Output.embeddings``.
            attend_to_padding: as in :meth:`forward`.
            **tracks: the keyword inputs of :meth:`forward` (sequence_tokens, structure_coords, ...).

        Returns:
            :class:`ESM3Embeddings`; the mean is over non-padding positions, BOS/EOS included.
        """
        n = self.config.n_layers
        index = layer + n + 1 if layer < 0 else layer
        if not 0 <= index <= n:
            raise ValueError(f"layer must lie in {-(n + 1)}..{n} for a {n}-layer model, got {layer}")
        unknown = sorted(set(tracks) - _TRACK_NAMES)
        if unknown:
            raise TypeError(f"embed() got unexpected keyword argument(s) {unknown}; tracks are {sorted(_TRACK_NAMES)}")
        validate = bool(tracks.pop("validate", True))
        inputs = prepare_inputs(self.config, self._device(), validate=validate, **tracks)  # type: ignore[arg-type]
        x = self._trunk(inputs, attend_to_padding, n_blocks=index, keep=False)[-1]
        if inputs.padding is None:
            mean = x.mean(dim=1)
        else:
            w = (~inputs.padding).to(x.dtype)[..., None]
            mean = (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return ESM3Embeddings(per_residue=x, mean=mean, layer=index)

    # ---- internals -------------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return self.embedding.sequence.weight.device

    def _trunk(self, inputs: ESM3Inputs, attend_to_padding: bool, *, n_blocks: int, keep: bool) -> list[Tensor]:
        """Embedding and the first ``n_blocks`` blocks; returns every state if ``keep`` else only the last."""
        x = self.embedding(
            inputs.sequence_tokens,
            inputs.structure_tokens,
            inputs.average_plddt,
            inputs.per_res_plddt,
            inputs.ss8_tokens,
            inputs.sasa_tokens,
            inputs.function_tokens,
            inputs.residue_annotation_tokens,
        )
        if self.taxonomy_embedding is not None and inputs.taxonomy_tokens is not None:
            x = x + self.taxonomy_embedding(inputs.taxonomy_tokens)
        padding = None if attend_to_padding else inputs.padding
        mask = attention_mask(inputs.sequence_id, padding)
        frames, frame_mask = None, None
        if inputs.structure_coords is not None:
            coords = inputs.structure_coords
            frames, frame_mask = Rigid.from_backbone(coords[..., 0, :], coords[..., 1, :], coords[..., 2, :])
            if padding is not None:
                frame_mask = frame_mask & ~padding  # padded residues are never geometric keys
        states = [x]
        blocks: list[TransformerBlock] = list(self.blocks[:n_blocks])  # type: ignore[arg-type]
        for i, block in enumerate(blocks):
            if i == 0 and frames is None:
                # No coordinates: every residue is frameless, so the reference's geometric branch adds exactly
                # zero (keys masked, queries zeroed, no bias). Skip it; the result is bit-identical.
                x = _block_without_geometry(block, x, mask)
            else:
                x = block(x, mask, frames, frame_mask, inputs.sequence_id, inputs.chain_id)
            if keep:
                states.append(x)
        return states if keep else [x]


_TRACK_NAMES = frozenset(
    {
        "sequence_tokens", "structure_tokens", "ss8_tokens", "sasa_tokens", "function_tokens",
        "residue_annotation_tokens", "average_plddt", "per_res_plddt", "structure_coords", "chain_id",
        "sequence_id", "taxonomy_tokens", "validate",
    }
)  # fmt: skip


def attention_mask(sequence_id: Tensor | None, padding: Tensor | None) -> Tensor | None:
    """Self-attention mask [B, 1, L, L] (True = may attend) or None for full attention.

    Key j is visible to query i when ``sequence_id`` agrees (if given) and j is not padding unless i is
    padding too (pad queries keep a non-empty row; their outputs are never used).
    """
    mask = None
    if sequence_id is not None:
        mask = sequence_id[:, :, None] == sequence_id[:, None, :]
    if padding is not None:
        visible = ~padding[:, None, :] | padding[:, :, None]
        mask = visible if mask is None else mask & visible
    return None if mask is None else mask[:, None]


def _block_without_geometry(block: TransformerBlock, x: Tensor, mask: Tensor | None) -> Tensor:
    s = block.residual_scale
    if block.attn is not None:
        x = x + block._branch(block.attn(x, mask)) / s
    return x + block._branch(block.ffn(x)) / s
