"""Structure VQ-VAE decoder: structure tokens -> backbone frames and coordinates, pLDDT, PAE and pTM
(paper A.1.7.2, Algorithm 8, A.1.7.3.2; spec §7).

A plain bidirectional transformer (rotary self-attention with QK-LayerNorm, SwiGLU, no biases, residual scale 1)
over the token embeddings, a weight-only final LayerNorm, and three heads: the affine head (frames and the N, CA,
C atoms), the pLDDT head (50 bins) and the pairwise head (PAE -> pTM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.config import STRUCTURE_DECODER_V0, StructureDecoderConfig
from openesm3.errors import InputError
from openesm3.geometry.rigid import Rigid
from openesm3.layers.block import BlockConfig, TransformerBlock
from openesm3.layers.heads import RegressionHead
from openesm3.layers.structure_heads import (
    AffineHead,
    PairwiseHead,
    backbone_from_frames,
    pae_and_ptm,
    pae_and_ptm_rows,
    plddt_from_logits,
)


@dataclass(frozen=True)
class StructureDecoderOutput:
    """Decoder outputs for B rows of L tokens (BOS and EOS included, as in the input).

    Attributes:
        frames: [B, L] backbone frames (fp32, Angstrom).
        affine: [B, L, 12] rotation (row-major) then translation: the reference's ``tensor7_affine``.
        backbone: [B, L, 3, 3] N, CA, C coordinates (the reference's ``bb_pred``).
        torsions: [B, L, 7, 2] the affine head's 14 raw torsion outputs (unused by the released decoder; for
            all-atom training).
        plddt: [B, L] predicted lDDT in (0, 1).
        plddt_logits: [B, L, 50].
        pae: [B, L, L] predicted aligned error (Angstrom); pairs involving non-residue tokens read 16.0.
        ptm: [B] predicted TM-score.
        pair_logits: [B, L, L, 224] all pairwise-head outputs (distogram | directions | PAE), only when
            requested (``return_pair_logits=True``); else None.
        features: [B, L, D] the final (normalised) features the heads read (training heads such as inverse
            folding read them too).
    """

    frames: Rigid
    affine: Tensor
    backbone: Tensor
    torsions: Tensor
    plddt: Tensor
    plddt_logits: Tensor
    pae: Tensor
    ptm: Tensor
    pair_logits: Tensor | None = None
    features: Tensor | None = None


def check_structure_tokens(tokens: Tensor, mask: Tensor | None, max_length: int) -> None:
    """Raise :class:`InputError` for token rows the decoder cannot decode.

    Each row must start with BOS (4098), have EOS (4097) as its last real token, contain only ids in
    [0, 4101), and fit the decoder's context of ``max_length`` tokens.
    """
    if tokens.ndim != 2:
        raise InputError(f"structure tokens must be [B, L], got shape {tuple(tokens.shape)}")
    if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise InputError(f"structure tokens must be integers, got {tokens.dtype}")
    b, length = tokens.shape
    check_per_residue("mask", mask, (b, length), "bool")
    if length > max_length:
        raise InputError(
            f"structure tokens: length {length} (with BOS/EOS) exceeds the decoder context of {max_length} tokens"
        )
    if length < 2:
        raise InputError(f"structure tokens: need at least BOS and EOS, got length {length}")
    lengths = torch.full((b,), length, device=tokens.device) if mask is None else mask.sum(-1)
    for row in range(b):
        n = int(lengths[row])
        ids = tokens[row, :n]
        bad = ((ids < 0) | (ids >= C.STRUCTURE_VOCAB_SIZE)).nonzero()
        if bad.numel():
            pos = int(bad[0, 0])
            raise InputError(
                f"structure tokens row {row}: id {int(ids[pos])} at position {pos} is out of range "
                f"[0, {C.STRUCTURE_VOCAB_SIZE})"
            )
        if n < 2:
            raise InputError(f"structure tokens row {row}: need at least BOS and EOS, got {n} token(s)")
        if int(ids[0]) != C.STRUCTURE_BOS:
            raise InputError(f"structure tokens row {row}: must start with BOS ({C.STRUCTURE_BOS}), got {int(ids[0])}")
        if int(ids[n - 1]) != C.STRUCTURE_EOS:
            raise InputError(
                f"structure tokens row {row}: the last token must be EOS ({C.STRUCTURE_EOS}), got {int(ids[n - 1])} "
                f"at position {n - 1}"
            )


def check_per_residue(
    name: str, value: Tensor | None, shape: tuple[int, ...], kind: str, *, batch_of_one: bool = False
) -> None:
    """Raise :class:`InputError` unless ``value`` (if given) has exactly ``shape`` (or a batch of 1 where
    ``batch_of_one``, broadcast by the caller) and the dtype ``kind`` asks: "bool", "integer" or "any". One check per
    side input of the structure VQ-VAE networks (no host sync)."""
    if value is None:
        return
    if not isinstance(value, Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if kind == "bool" and value.dtype != torch.bool:
        raise InputError(f"{name}: expected a bool tensor (True = real residue), got {value.dtype}")
    if kind == "integer" and (value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool):
        raise InputError(f"{name}: expected an integer tensor, got {value.dtype}")
    if tuple(value.shape) != shape and not (batch_of_one and tuple(value.shape) == (1, *shape[1:])):
        dims = "[B, L]" if len(shape) == 2 else "[B, L, D]"
        raise InputError(f"{name}: expected shape {dims} = {list(shape)}, got {list(value.shape)}")


def unknown_sequence(tokens: Tensor) -> Tensor:
    """Sequence ids [B, L] for structure tokens whose sequence is unknown: ``<mask>`` at every residue, and the
    sequence track's BOS, EOS, padding and chain break where the structure row has them.

    This is the row a sequence-conditioned decoder reads in training when the sequence is dropped
    (``training.tokenizer.model.decoder_sequence``); ``<mask>`` at the specials too would be an input it never saw.
    """
    out = torch.full_like(tokens, C.SEQUENCE_MASK)
    for sequence_id, structure_id in C.SEQUENCE_TO_STRUCTURE_SPECIALS:  # BOS, padding, EOS, chain break
        out = torch.where(tokens == structure_id, torch.full_like(tokens, sequence_id), out)
    return out


def position_features(positions: Tensor, n_frequencies: int) -> Tensor:
    """[..., 2 n] = sin, cos of ``positions`` [...] times frequencies ``2048^(-k / n)``, k = 0..n-1 (fp32)."""
    k = torch.arange(n_frequencies, device=positions.device, dtype=torch.float32)
    angles = positions.float()[..., None] * torch.exp(-math.log(2048.0) * k / n_frequencies)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class StructureDecoder(nn.Module):
    """Structure tokenizer decoder with confidence heads (paper Algorithm 8).

    Args:
        config: shapes and context length.
    """

    pair_chunk: int = 1 << 20  # pairs per chunk of the pairwise head (memory bound; results do not depend on it)

    def __init__(self, config: StructureDecoderConfig = STRUCTURE_DECODER_V0) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = nn.Embedding(C.STRUCTURE_VOCAB_SIZE, d)
        if config.sequence_conditioning:
            # Paper A.1.7.3.2: stage-2 decoders add a learned sequence embedding to the structure-token embedding.
            # Not in the released decoder (its files have no such weight); our trained tokenizer has one.
            self.sequence_embed = nn.Embedding(C.SEQUENCE_EMBED_DIM, d)
        if config.position_features:
            # Our extension (docs/tokenizer_training.md): sinusoidal features of the token's position, projected and
            # added to the input, so the pairwise head and the affine head can tell residues of a repeated token
            # run apart. Frequencies 1 / 2048^(k / n), k < n.
            self.position_proj = nn.Linear(2 * config.position_features, d)
        block = BlockConfig(d_model=d, n_heads=config.n_heads, ffn_dim=config.ffn_dim, bias=False, qk_norm=True)
        self.blocks = nn.ModuleList(TransformerBlock(block) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(d, eps=C.LAYER_NORM_EPS, bias=False)
        self.affine_head = AffineHead(d)
        self.pairwise_head = PairwiseHead(d, config.pairwise_dim)
        self.plddt_head = RegressionHead(d, C.PLDDT_N_BINS)
        # What the weights record of their confidence heads (not weights: config.json's "trained_heads" and
        # "calibrated_heads", set by checkpoints.format.load_pretrained and written back by save_pretrained). None:
        # not recorded (the official weights, files written before the record), read as trained, as before.
        self.trained_heads: tuple[str, ...] | None = None
        self.calibrated_heads: tuple[str, ...] | None = None

    def untrained_heads(self) -> tuple[str, ...]:
        """The confidence heads (of :data:`~openesm3.constants.CONFIDENCE_HEADS`) these weights record as never
        trained, e.g. ``("plddt", "pae")`` for a stage-1 export: their outputs are those of random weights, not
        measurements. Empty when every head was trained or nothing is recorded."""
        if self.trained_heads is None:
            return ()
        return tuple(h for h in C.CONFIDENCE_HEADS if h not in self.trained_heads)

    def forward(
        self,
        tokens: Tensor,
        *,
        mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        return_pair_logits: bool = False,
        sequence_tokens: Tensor | None = None,
        embeddings: Tensor | None = None,
        positions: Tensor | None = None,
        pae: bool = True,
    ) -> StructureDecoderOutput:
        """Decode structure tokens.

        Args:
            tokens: [B, L] int ids, each row ``BOS, codes (or CHAINBREAK), EOS`` then padding.
            mask: [B, L] bool, False at padding (padding is never attended to; the reference ignores its
                attention_mask, so only unpadded rows match it). Default: no padding.
            sequence_id: [B, L] int; tokens attend only within their sequence. Default: one sequence per row.
            return_pair_logits: also return all 224 pairwise logits per pair (training).
            sequence_tokens: [B, L] sequence-track ids aligned with ``tokens`` (BOS/EOS included), only for a
                decoder built with ``sequence_conditioning``; None there means "sequence unknown": the row of
                :func:`unknown_sequence`, as training decodes without the sequence. Ignored otherwise.
            embeddings: [B, L, D] input vectors used instead of ``embed(tokens)`` (VQ-VAE training feeds the
                straight-through code vectors here; ``tokens`` still give the masks and are checked).
            positions: [B, L] token positions for a decoder with ``position_features`` (default 0..L-1; training
                shifts them by a random offset per row so that only differences carry meaning). Ignored otherwise.
            pae: compute PAE and pTM (the pairwise head). False skips the pairwise head entirely (training steps
                that use no pair output): ``pae`` and ``ptm`` are then NaN.

        Returns:
            :class:`StructureDecoderOutput`.
        """
        if not torch.compiler.is_compiling():
            check_structure_tokens(tokens, mask, self.config.max_length)
            shape = tuple(tokens.shape)
            check_per_residue("sequence_id", sequence_id, shape, "any", batch_of_one=True)
            check_per_residue("sequence_tokens", sequence_tokens, shape, "integer", batch_of_one=True)
            check_per_residue("positions", positions, shape, "any", batch_of_one=True)
            check_per_residue("embeddings", embeddings, (*shape, self.config.d_model), "any")
        attn_mask = None
        if sequence_id is not None:
            attn_mask = sequence_id[:, :, None] == sequence_id[:, None, :]
        if mask is not None:
            # Real keys; pad queries see every key (their outputs are never used), so that no row is fully masked:
            # fused GPU kernels need not return 0 for such a row, and NaN there would reach real rows next layer.
            keys = mask[:, None, :] | ~mask[:, :, None]
            attn_mask = keys if attn_mask is None else attn_mask & keys
        if attn_mask is not None:
            attn_mask = attn_mask[:, None]  # [B, 1, L, L], broadcast over heads

        x = self.embed(tokens) if embeddings is None else embeddings
        if self.config.sequence_conditioning:
            if sequence_tokens is None:
                sequence_tokens = unknown_sequence(tokens)
            x = x + self.sequence_embed(sequence_tokens)
        if self.config.position_features:
            if positions is None:
                positions = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape)
            x = x + self.position_proj(position_features(positions, self.config.position_features).to(x.dtype))
        for block in self.blocks:
            x = block(x, attn_mask)
        x = self.norm(x)

        affine = self.affine_head(x)
        frames = affine.frames
        if self.config.frame_mode == "chain":
            # Our extension: each token's frame is read as the transform from the previous token's frame, and the
            # global frames are their products along the row (BOS is the first).
            frames = frames.cumulative_compose()
        plddt_logits = self.plddt_head(x)
        # Residue tokens are the codes; specials (BOS, EOS, pad, chain break, mask) are excluded from PAE and pTM.
        residue_mask = tokens < C.STRUCTURE_N_CODES
        if mask is not None:
            residue_mask = residue_mask & mask
        if return_pair_logits:
            pair_logits = self.pairwise_head(x)
            pae_values, ptm = pae_and_ptm(pair_logits[..., PairwiseHead.pae_slice()], residue_mask)
        elif pae:
            pair_logits = None
            pae_values, ptm = self._pae_and_ptm_chunked(x, residue_mask)
        else:
            pair_logits = None
            b, length = tokens.shape
            pae_values = torch.full((b, length, length), float("nan"), device=x.device)
            ptm = torch.full((b,), float("nan"), device=x.device)
        return StructureDecoderOutput(
            frames=frames,
            affine=frames.to_tensor_12(),
            backbone=backbone_from_frames(frames),
            torsions=affine.torsions,
            plddt=plddt_from_logits(plddt_logits),
            plddt_logits=plddt_logits,
            pae=pae_values,
            ptm=ptm,
            pair_logits=pair_logits,
            features=x,
        )

    def _pae_and_ptm_chunked(self, x: Tensor, residue_mask: Tensor) -> tuple[Tensor, Tensor]:
        """PAE [B, L, L] and pTM [B] computing the pair features of at most ``pair_chunk`` pairs (over the whole
        batch) at a time (the [B, L, L, 128] intermediates would need gigabytes at L = 2048), and only the 64 PAE
        outputs."""
        batch, length = x.shape[0], x.shape[1]
        rows = max(1, self.pair_chunk // max(batch * length, 1))
        paes, per_rows = [], []
        for start in range(0, length, rows):
            sl = slice(start, start + rows)
            logits = self.pairwise_head(x, outputs=PairwiseHead.pae_slice(), rows=sl)  # [B, r, L, 64]
            pae, per_row = pae_and_ptm_rows(logits, residue_mask[:, sl], residue_mask)
            paes.append(pae)
            per_rows.append(per_row)
        return torch.cat(paes, dim=1), torch.cat(per_rows, dim=1).max(-1).values
