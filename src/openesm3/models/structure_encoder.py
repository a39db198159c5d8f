"""Structure VQ-VAE encoder: local backbone neighbourhoods -> one of 4096 codes per residue
(paper A.1.7.1, Algorithm 7; spec §6).

For every residue (the *centre*) the encoder gathers its ``K = 16`` nearest residues by CA distance, embeds each
neighbour's clamped sequence offset to the centre, runs two geometric-attention blocks over the neighbourhood
(no self-attention, no final norm), reads out the centre's slot, projects it to the code width and quantises it
to the nearest codebook vector.

Vectorised evaluation. Only the centre's output is read out, so the last block computes attention for the
centre query only and its FFN on the centre slot only; the first block's input is a lookup in the 66-row
position table, so its LayerNorm + projection are computed once per table row and gathered. Both shortcuts are
exact rewrites of the same arithmetic. Neighbourhoods are processed in chunks of :attr:`StructureEncoder.chunk_size`
centres to bound memory; the result does not depend on the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.config import STRUCTURE_ENCODER_V0, StructureEncoderConfig
from openesm3.geometry.rigid import Rigid
from openesm3.layers.block import BlockConfig, TransformerBlock
from openesm3.layers.codebook import EMACodebook
from openesm3.layers.geometric_attention import GeometricAttention


@dataclass(frozen=True)
class StructureEncoderOutput:
    """Encoder outputs for B rows of L residues.

    Attributes:
        tokens: [B, L] int64 code indices (also computed for residues without coordinates and for padding,
            where they carry no information; see ``residue_mask``).
        z: [B, L, d_out] pre-quantisation encoder outputs.
        z_q: [B, L, d_out] quantised vectors with a straight-through gradient to ``z``.
        residue_mask: [B, L] bool, True where the residue is real (not padding) and has N, CA and C.
        commitment_loss: scalar commitment loss over ``residue_mask`` (training only).
    """

    tokens: Tensor
    z: Tensor
    z_q: Tensor
    residue_mask: Tensor
    commitment_loss: Tensor


@dataclass(frozen=True)
class Neighbourhoods:
    """The K nearest residues of every centre: ``index`` [B, L, K] into the row (centre first)."""

    index: Tensor


def knn_cost(ca: Tensor, frame_mask: Tensor, mask: Tensor, sequence_id: Tensor | None) -> Tensor:
    """Neighbour selection cost [B, L, L] (fp32), spec §6 step 2.

    CA-CA distance when both residues have a frame; otherwise ``1e6 + 100 |i - j|``, so missing coordinates fall
    back to sequence distance; ``+inf`` when either residue is padding or the two belong to different sequences.
    """
    b, length, _ = ca.shape
    ca = torch.where(frame_mask[..., None], ca.float(), torch.zeros((), device=ca.device))
    distance = (ca[:, :, None, :] - ca[:, None, :, :]).norm(dim=-1)
    pos = torch.arange(length, device=ca.device, dtype=torch.float32)
    fallback = C.ENCODER_MISSING_COST + C.ENCODER_MISSING_COST_PER_OFFSET * (pos[:, None] - pos[None, :]).abs()
    both = frame_mask[:, :, None] & frame_mask[:, None, :]
    cost = torch.where(both, distance, fallback.expand(b, length, length))
    blocked = ~(mask[:, :, None] & mask[:, None, :])
    if sequence_id is not None:
        blocked = blocked | (sequence_id[:, :, None] != sequence_id[:, None, :])
    return cost.masked_fill(blocked, float("inf"))


def find_neighbourhoods(cost: Tensor, k: int) -> Neighbourhoods:
    """The k lowest-cost residues of each row of ``cost`` [B, L, L], centre first (its cost is the row's minimum).

    ``torch.sort`` (not stable, not ``topk``) as in the reference, so that ties (possible with missing
    coordinates) select the same neighbours.
    """
    return Neighbourhoods(index=torch.sort(cost, dim=-1).indices[..., :k])


def _centre_query_projection(geom: GeometricAttention, x: Tensor) -> Tensor:
    """``geom.project(x)`` [N, K, 15V] where only node 0 gets its query features (the last block attends from the
    centre only): keys and values for all K nodes, queries for one, 40 % fewer projection FLOPs. Other nodes'
    query features are left at 0 and never read."""
    v = geom.v_heads
    h = geom.norm(x)
    # Projection layout (spec §5): 3-vectors q_rot | k_rot | value | q_dist | k_dist, V each.
    cols = torch.arange(15 * v, device=x.device).view(5, 3 * v)
    q_cols, kv_cols = cols[[0, 3]].flatten(), cols[[1, 2, 4]].flatten()
    weight, bias = geom.proj.weight, geom.proj.bias
    p = x.new_zeros(*x.shape[:-1], 15 * v)
    p[..., kv_cols] = F.linear(h, weight[kv_cols], None if bias is None else bias[kv_cols])
    p[:, :1, q_cols] = F.linear(h[:, :1], weight[q_cols], None if bias is None else bias[q_cols])
    return p


def _padded_neighbourhoods(cost: Tensor, mask: Tensor, k: int) -> Tensor:
    """Neighbourhoods [B, L, K] of padded rows, each row ranked on its own residues only.

    ``torch.sort`` is not stable, so ties (missing coordinates) could order differently in a longer row full of
    +inf padding; sorting each protein's own [n, n] block gives exactly the neighbourhoods of encoding it alone.
    Slots beyond a short protein's n residues point at padding positions, which are masked as keys.
    """
    b, length, _ = cost.shape
    hood = torch.arange(length, device=cost.device).expand(b, length, length)[..., :k].clone()
    for row in range(b):
        real = mask[row].nonzero().squeeze(-1)
        pad = (~mask[row]).nonzero().squeeze(-1)
        n = real.numel()
        if n == 0:
            continue
        order = torch.sort(cost[row][real][:, real], dim=-1).indices[:, :k]  # [n, min(n, k)]
        chosen = real[order]
        if chosen.shape[1] < k:  # fewer residues than neighbours: fill with (masked) padding positions
            chosen = torch.cat([chosen, pad[: k - chosen.shape[1]].expand(n, -1)], dim=1)
        hood[row, real] = chosen
    return hood


class StructureEncoder(nn.Module):
    """Structure tokenizer encoder + codebook (paper Algorithm 7).

    Args:
        config: shapes and codebook training hyper-parameters.
    """

    chunk_size: int = 256  # neighbourhood centres per chunk in forward (memory bound; results do not depend on it)

    def __init__(self, config: StructureEncoderConfig = STRUCTURE_ENCODER_V0) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.relative_position = nn.Embedding(config.n_relative_positions, d)
        block = BlockConfig(
            d_model=d,
            n_heads=0,  # no self-attention in the encoder blocks
            ffn_dim=config.ffn_dim,
            v_heads=config.v_heads,
            ffn="swiglu",
            bias=True,
            geometric_bias=True,
            zero_frameless_queries=False,  # the encoder keeps frameless queries (spec §5); they are zeroed at readout
        )
        self.blocks = nn.ModuleList(TransformerBlock(block) for _ in range(config.n_layers))
        self.pre_vq_proj = nn.Linear(d, config.d_out)
        self.codebook = EMACodebook(
            config.n_codes,
            config.d_out,
            decay=config.codebook_decay,
            epsilon=config.codebook_epsilon,
            commitment_weight=config.commitment_weight,
            dead_code_threshold=config.dead_code_threshold,
        )

    # ---- public API ----------------------------------------------------------------------------------------
    def forward(
        self,
        coords: Tensor,
        *,
        mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        residue_index: Tensor | None = None,
    ) -> StructureEncoderOutput:
        """Encode backbones into codes.

        Args:
            coords: [B, L, A, 3] with A >= 3; atoms 0, 1, 2 are N, CA, C (atom37 works). Missing atoms are NaN or
                inf; a residue needs all three finite and < 1e6 to have a frame.
            mask: [B, L] bool, False at padding. Default: no padding. With a mask, each row's neighbours are
                ranked on its own residues, so a protein's codes do not depend on what it is batched with.
            sequence_id: [B, L] int: residues of different sequences never share a neighbourhood.
            residue_index: [B, L] int residue numbers for the relative positions; default 0..L-1.

        Returns:
            :class:`StructureEncoderOutput`.
        """
        z, residue_mask = self.encode_features(coords, mask=mask, sequence_id=sequence_id, residue_index=residue_index)
        quantised = self.codebook(z, residue_mask)
        return StructureEncoderOutput(
            tokens=quantised.indices,
            z=z,
            z_q=quantised.z_q,
            residue_mask=residue_mask,
            commitment_loss=quantised.commitment_loss,
        )

    def encode_features(
        self,
        coords: Tensor,
        *,
        mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        residue_index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Pre-quantisation outputs z [B, L, d_out] and the residue mask [B, L] (see :meth:`forward`)."""
        if coords.ndim != 4 or coords.shape[-2] < 3 or coords.shape[-1] != 3:
            raise ValueError(f"coords must be [B, L, A>=3, 3], got {tuple(coords.shape)}")
        b, length = coords.shape[:2]
        device = coords.device
        padded = mask is not None
        if mask is None:
            mask = torch.ones(b, length, dtype=torch.bool, device=device)
        frames, frame_mask = Rigid.from_backbone(coords[:, :, 0], coords[:, :, 1], coords[:, :, 2])
        frame_mask = frame_mask & mask
        k = min(self.config.n_neighbors, length)
        cost = knn_cost(coords[:, :, 1], frame_mask, mask, sequence_id)
        if padded:
            hood = _padded_neighbourhoods(cost, mask, k)
        else:
            hood = find_neighbourhoods(cost, k).index  # [B, L, K]

        # Gather per-neighbour inputs; neighbourhoods become a batch of B*L rows of K tokens.
        rows = torch.arange(b, device=device)[:, None, None]
        positions = torch.arange(length, device=device).expand(b, length) if residue_index is None else residue_index
        offset = positions[rows, hood] - positions[:, :, None]
        m = self.config.max_relative_position
        rel = (offset.clamp(-m, m) + m + 1).reshape(b * length, k)  # [B*L, K] in 1..2m+1; row 0 unused
        hood_frames = Rigid(frames.rot[rows, hood], frames.trans[rows, hood])
        hood_rot = hood_frames.rot.reshape(b * length, k, 3, 3)
        hood_trans = hood_frames.trans.reshape(b * length, k, 3)
        hood_mask = frame_mask[rows, hood].reshape(b * length, k)
        hood_seq = None if sequence_id is None else sequence_id[rows, hood].reshape(b * length, k)

        # Block 0's input is a row of the position table: LayerNorm + projection once per table row.
        table_proj = self._geometric(0).project(self.relative_position.weight)  # [2m+2, 15V]
        out = []
        for start in range(0, b * length, self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            out.append(
                self._encode_hoods(
                    rel[sl],
                    table_proj,
                    Rigid(hood_rot[sl], hood_trans[sl]),
                    hood_mask[sl],
                    None if hood_seq is None else hood_seq[sl],
                )
            )
        centre = torch.cat(out, dim=0).view(b, length, -1)  # [B, L, D]
        # Residues without a frame (and padding) read out zeros, as in the reference.
        centre = torch.where(frame_mask[..., None], centre, torch.zeros((), dtype=centre.dtype, device=device))
        return self.pre_vq_proj(centre), frame_mask

    def encode(
        self,
        coords: Tensor,
        *,
        mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        residue_index: Tensor | None = None,
    ) -> Tensor:
        """Token ids [B, L] only (see :meth:`forward`)."""
        return self(coords, mask=mask, sequence_id=sequence_id, residue_index=residue_index).tokens

    # ---- internals ---------------------------------------------------------------------------------------
    def _encode_hoods(
        self, rel: Tensor, table_proj: Tensor, frames: Rigid, key_mask: Tensor, sequence_id: Tensor | None
    ) -> Tensor:
        """Run the blocks over N neighbourhoods of K tokens; returns the centre slot [N, D].

        rel [N, K] position-table rows; frames [N, K]; key_mask [N, K] bool (neighbour has a frame);
        sequence_id [N, K] or None.
        """
        x = self.relative_position(rel)  # [N, K, D]
        n_blocks = len(self.blocks)
        for i in range(n_blocks):
            block = cast(TransformerBlock, self.blocks[i])
            geom = self._geometric(i)
            if i == 0:
                p = table_proj[rel]  # [N, K, 15V]
            elif i == n_blocks - 1:
                p = _centre_query_projection(geom, x)
            else:
                p = geom.project(x)
            if i == n_blocks - 1:
                # Last block: only the centre (node 0) is read out, so it is the only query and the only FFN input.
                x = x[:, :1] + geom.attend(p, frames, key_mask, sequence_id, n_queries=1)
            else:
                x = x + geom.attend(p, frames, key_mask, sequence_id)
            x = x + block.ffn(x)
        return x[:, 0]

    def _geometric(self, i: int) -> GeometricAttention:
        geom = cast(TransformerBlock, self.blocks[i]).geom_attn
        assert geom is not None
        return geom
