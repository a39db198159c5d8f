"""The structure VQ-VAE as one trainable module (paper A.1.7.3): encoder + codebook + decoder + training heads.

Stage 1 trains everything. The decoder reads the quantised vectors through a linear map (``code_proj``), so the
straight-through gradient reaches the encoder; the codebook learns by EMA with dead-code restarts, outside the
optimizer. After training, :func:`openesm3.training.tokenizer.export.bake_code_projection` writes
``code_proj(codebook)`` into the decoder's token embedding, so the decoder then decodes token ids exactly as the
official one does.

Stage 2 freezes the encoder and codebook (no gradient, no EMA) and trains a new decoder on token ids, optionally
conditioned on the sequence (dropped for a fraction of proteins so it also decodes without one). Its input is
``code_proj`` of the frozen code vectors too (baked into the token embedding at export, as in stage 1): codes that
are close in the codebook start close in the decoder, where a free embedding row per code would have to learn each
of thousands of codes from its own few occurrences.

The networks are the library's own :class:`StructureEncoder` and :class:`StructureDecoder`, so what is trained
saves in our format and loads where the official weights load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
from openesm3.layers.block import set_block_dropout
from openesm3.layers.codebook import CodebookOutput
from openesm3.layers.heads import RegressionHead
from openesm3.models.structure_decoder import StructureDecoder, StructureDecoderOutput
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.data import ProteinBatch, ProteinRecord, collate_proteins
from openesm3.training.tokenizer.losses import LOCAL_WINDOW


@dataclass(frozen=True)
class TokenizerForward:
    """What one training forward computes, residues aligned with the batch ([B, L]; decoder outputs sliced).

    Attributes:
        tokens: [B, L] code ids (``STRUCTURE_MASK`` where the residue has no backbone frame).
        residue_mask: [B, L] bool, residues with N, CA, C (the ones every loss scores).
        true_backbone: [B, L, 3, 3] true N, CA, C (0 where missing).
        pred_backbone: [B, L, 3, 3] decoded N, CA, C.
        decoder: the full decoder output (BOS/EOS included: residue i is position i + 1).
        sequence_logits: [B, L, 64] inverse-folding logits (stage 1), else None.
        local_structure: [B, L, 45] each residue's local backbone window predicted from its own code (stage 1).
        commitment_loss: scalar (0 in stage 2).
        sequence_given: [B] bool, proteins whose decoder saw the sequence (stage 2).
    """

    tokens: Tensor
    residue_mask: Tensor
    true_backbone: Tensor
    pred_backbone: Tensor
    decoder: StructureDecoderOutput
    sequence_logits: Tensor | None
    local_structure: Tensor | None
    commitment_loss: Tensor
    sequence_given: Tensor

    def residues(self, x: Tensor) -> Tensor:
        """Slice a per-token decoder tensor [B, L + 2, ...] to the residues [B, L, ...]."""
        return x[:, 1 : self.tokens.shape[1] + 1]

    def residue_pairs(self, x: Tensor) -> Tensor:
        """Slice a pair decoder tensor [B, L + 2, L + 2, ...] to the residue pairs [B, L, L, ...]."""
        length = self.tokens.shape[1]
        return x[:, 1 : length + 1, 1 : length + 1]


def decoder_tokens(tokens: Tensor, residue_mask: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Decoder input rows ``BOS, codes, EOS, PAD...`` [B, L + 2] and their mask, from codes [B, L].

    Residues without a frame read ``STRUCTURE_MASK``; padding reads ``STRUCTURE_PAD``.
    """
    b, length = tokens.shape
    lengths = mask.sum(-1)
    body = torch.where(residue_mask, tokens, torch.full_like(tokens, C.STRUCTURE_MASK))
    body = torch.where(mask, body, torch.full_like(tokens, C.STRUCTURE_PAD))
    out = torch.full((b, length + 2), C.STRUCTURE_PAD, dtype=torch.long, device=tokens.device)
    out[:, 0] = C.STRUCTURE_BOS
    out[:, 1 : length + 1] = body
    out[torch.arange(b, device=tokens.device), lengths + 1] = C.STRUCTURE_EOS
    positions = torch.arange(length + 2, device=tokens.device)
    return out, positions[None, :] <= (lengths + 1)[:, None]


def decoder_sequence(sequence_tokens: Tensor, mask: Tensor, keep: Tensor) -> Tensor:
    """Sequence ids aligned with :func:`decoder_tokens` [B, L + 2]: ``<cls>, residues, <eos>, <pad>...``; rows
    with ``keep`` [B] False read ``<mask>`` at every residue (decoding without the sequence)."""
    b, length = sequence_tokens.shape
    lengths = mask.sum(-1)
    body = torch.where(keep[:, None], sequence_tokens, torch.full_like(sequence_tokens, C.SEQUENCE_MASK))
    body = torch.where(mask, body, torch.full_like(body, C.SEQUENCE_PAD))
    out = torch.full((b, length + 2), C.SEQUENCE_PAD, dtype=torch.long, device=sequence_tokens.device)
    out[:, 0] = C.SEQUENCE_BOS
    out[:, 1 : length + 1] = body
    out[torch.arange(b, device=sequence_tokens.device), lengths + 1] = C.SEQUENCE_EOS
    return out


class StructureTokenizerModel(nn.Module):
    """Encoder + codebook + decoder (+ stage-1 training heads) of the structure VQ-VAE.

    Args:
        encoder: encoder/codebook config (the codebook-training fields are used here).
        decoder: decoder config.
        stage: 1 or 2 (see the module docstring).
        sequence_dropout: stage 2 with a sequence-conditioned decoder: probability that a protein is decoded
            without its sequence.
        pair_outputs: run the decoder's pairwise head (distogram, binned directions, PAE); off when no loss reads
            it, which saves most of a small decoder's step time.
        codebook_init_from_data: stage 1: the first training batch's encoder outputs initialise the codes.
        encoder_positions: residue numbers the encoder's relative positions use: ``"sequential"`` (1..L along the
            record, as ``generation.structure_tokens.encode_structure`` and the official SDK number residues) or
            ``"residue_index"`` (the file's residue numbers, gap-aware).
    """

    codebook_initialised: Tensor

    def __init__(
        self,
        encoder: StructureEncoderConfig,
        decoder: StructureDecoderConfig,
        *,
        stage: int = 1,
        sequence_dropout: float = 0.5,
        pair_outputs: bool = True,
        codebook_init_from_data: bool = True,
        encoder_positions: str = "sequential",
        decoder_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if encoder_positions not in ("sequential", "residue_index"):
            raise ValueError(f"encoder_positions must be 'sequential' or 'residue_index', got {encoder_positions!r}")
        self.encoder_positions = encoder_positions
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.stage = stage
        self.sequence_dropout = sequence_dropout
        self.pair_outputs = pair_outputs
        self.codebook_init_from_data = codebook_init_from_data
        self.encoder = StructureEncoder(encoder)
        self.decoder = StructureDecoder(decoder)
        set_block_dropout(self.decoder, decoder_dropout)  # training only: eval mode and the export have none
        self.code_proj = nn.Linear(encoder.d_out, decoder.d_model)
        if stage == 1:
            self.sequence_head = RegressionHead(decoder.d_model, C.SEQUENCE_EMBED_DIM)
            # reads one residue's quantised vector alone: its local backbone window (local-structure loss)
            self.local_head = RegressionHead(encoder.d_out, (2 * LOCAL_WINDOW + 1) * 9)
        else:
            self.encoder.requires_grad_(False)
        self.register_buffer("codebook_initialised", torch.tensor(stage == 2 or not codebook_init_from_data))

    def train(self, mode: bool = True) -> StructureTokenizerModel:
        super().train(mode)
        if self.stage == 2:
            self.encoder.eval()  # frozen
        return self

    def forward(self, batch: ProteinBatch) -> TokenizerForward:
        """Encode the batch's backbones, quantise, decode (see the module docstring)."""
        atom_mask = batch.atom37_mask[..., :3].all(-1) & batch.mask
        true_bb = batch.atom37[..., :3, :].float()
        if self.stage == 2 and batch.structure_tokens is not None:
            # tokens encoded once by the frozen encoder (whole records, see encode_records): no encoder pass here
            codes = batch.structure_tokens
            if codes.dim() == 3 and self.training:  # [B, L, K] renditions: a random one per protein
                rows = torch.arange(codes.shape[0], device=codes.device)
                codes = codes[rows, :, torch.randint(0, codes.shape[-1], rows.shape, device=codes.device)]
            elif codes.dim() == 3:  # evaluation decodes the clean tokens
                codes = codes[..., 0]
            residue_mask = atom_mask & (codes >= 0) & (codes < self.encoder.config.n_codes)
            return self._decode(batch, codes, residue_mask, None, true_bb)
        coords, sequence_id, positions = self._encoder_inputs(batch)
        grad = self.stage == 1 and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            z, residue_mask = self.encoder.encode_features(
                coords, mask=batch.mask, sequence_id=sequence_id, residue_index=positions
            )
            codebook = self.encoder.codebook
            if self.training and self.stage == 1:
                self._update_codebook_before(z.detach(), residue_mask)
            quantised = codebook(z, residue_mask)
            if self.training and self.stage == 1:
                codebook.ema_update(z.detach(), quantised.indices, residue_mask)
                codebook.restart_dead_codes(z.detach(), residue_mask)

        return self._decode(batch, quantised.indices, residue_mask, quantised, true_bb)

    def _decode(
        self,
        batch: ProteinBatch,
        indices: Tensor,
        residue_mask: Tensor,
        quantised: CodebookOutput | None,
        true_bb: Tensor,
    ) -> TokenizerForward:
        """Decoder pass of :meth:`forward` from code ``indices`` [B, L] (stage 1 also reads ``quantised``)."""
        tokens, dec_mask = decoder_tokens(indices, residue_mask, batch.mask)
        embeddings = self.decoder.embed(tokens)
        if quantised is not None and self.stage == 1:
            vectors = quantised.z_q  # straight-through: the decoder's gradient reaches the encoder
        else:
            n_codes = self.encoder.config.n_codes
            vectors = self.encoder.codebook.lookup(indices.clamp(0, n_codes - 1)).detach()
        codes = self.code_proj(vectors)
        body = torch.where(residue_mask[..., None], codes.to(embeddings.dtype), embeddings[:, 1:-1])
        embeddings = torch.cat([embeddings[:, :1], body, embeddings[:, -1:]], dim=1)

        b = tokens.shape[0]
        keep = torch.zeros(b, dtype=torch.bool, device=tokens.device)
        sequence = None
        if self.decoder.config.sequence_conditioning:
            # evaluation drops nothing and draws nothing; training draws for every row, even with a dropout of 0
            if self.training:
                keep = torch.rand(b, device=tokens.device) >= self.sequence_dropout
            else:
                keep = torch.ones(b, dtype=torch.bool, device=tokens.device)
            sequence = decoder_sequence(batch.sequence_tokens, batch.mask, keep)
        positions = None
        if self.decoder.config.position_features and self.training:
            # A random shift per row: the decoder sees every position up to its context during training and can
            # only rely on position differences (decoding uses 0..L-1).
            span = max(1, self.decoder.config.max_length - tokens.shape[1] + 1)
            offset = torch.randint(0, span, (b, 1), device=tokens.device)
            positions = torch.arange(tokens.shape[1], device=tokens.device)[None, :] + offset
        out = self.decoder(
            tokens,
            mask=dec_mask,
            sequence_id=None,
            return_pair_logits=self.pair_outputs,
            sequence_tokens=sequence,
            embeddings=embeddings,
            positions=positions,
            pae=self.pair_outputs,
        )
        length = tokens.shape[1] - 2
        assert out.features is not None
        seq_logits = self.sequence_head(out.features[:, 1 : length + 1]) if self.stage == 1 else None
        local, commitment = None, torch.zeros((), device=tokens.device)
        if quantised is not None and self.stage == 1:
            local, commitment = self.local_head(quantised.z_q), quantised.commitment_loss
        return TokenizerForward(
            tokens=tokens[:, 1 : length + 1],
            residue_mask=residue_mask,
            true_backbone=true_bb,
            pred_backbone=out.backbone[:, 1 : length + 1],
            decoder=out,
            sequence_logits=seq_logits,
            local_structure=local,
            commitment_loss=commitment,
            sequence_given=keep,
        )

    @torch.no_grad()
    def encode_records(self, records: Sequence[ProteinRecord], *, max_residues: int = 8192) -> list[np.ndarray]:
        """Code ids [L] of whole records with this model's encoder, as :meth:`forward` encodes a batch (same
        coordinates, chains and residue numbering); residues without a backbone frame read ``STRUCTURE_MASK``.
        Records are encoded in padded batches of at most ``max_residues`` residues, shortest first; the result
        keeps the input order. Stage 2 encodes its dataset once with the frozen encoder and trains on these ids."""
        was_training = self.encoder.training
        self.encoder.eval()
        device = self.encoder.codebook.embeddings.device
        out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(records)
        order = sorted(range(len(records)), key=lambda i: records[i].length)
        groups: list[list[int]] = []
        for i in order:
            longest = records[i].length  # sorted: the newest record is the longest of its group
            if groups and longest * (len(groups[-1]) + 1) <= max_residues:
                groups[-1].append(i)
            else:
                groups.append([i])
        try:
            for group in groups:
                batch = collate_proteins([records[i] for i in group]).to(device)
                coords, sequence_id, positions = self._encoder_inputs(batch)
                z, residue_mask = self.encoder.encode_features(
                    coords, mask=batch.mask, sequence_id=sequence_id, residue_index=positions
                )
                nearest = self.encoder.codebook.nearest(z)
                ids = torch.where(residue_mask, nearest, torch.full_like(nearest, C.STRUCTURE_MASK)).cpu().numpy()
                for row, i in enumerate(group):
                    out[i] = ids[row, : records[i].length].astype(np.int64)
        finally:
            self.encoder.train(was_training)
        return out

    def _encoder_inputs(self, batch: ProteinBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder inputs of a batch: N, CA, C [B, L, 3, 3] (NaN where missing), sequence ids (chains) and the
        residue numbers of the relative positions (see ``encoder_positions``)."""
        atom_mask = batch.atom37_mask[..., :3].all(-1) & batch.mask
        true_bb = batch.atom37[..., :3, :].float()
        coords = torch.where(atom_mask[..., None, None], true_bb, torch.full_like(true_bb, float("nan")))
        if self.encoder_positions == "sequential":
            positions = torch.arange(1, batch.mask.shape[1] + 1, device=batch.mask.device).expand_as(batch.mask)
        else:
            positions = batch.residue_index
        return coords, batch.chain_index.clamp_min(0), positions

    @torch.no_grad()
    def _update_codebook_before(self, z: Tensor, residue_mask: Tensor) -> None:
        """First stage-1 training batch: every code restarts from a random encoder output (data-dependent
        initialisation, so no code starts far from the data)."""
        if bool(self.codebook_initialised) or not bool(residue_mask.any()):
            return
        codebook = self.encoder.codebook
        codebook.N.zero_()  # every code is "dead": restart all of them
        codebook.restart_dead_codes(z, residue_mask)
        self.codebook_initialised.fill_(True)
