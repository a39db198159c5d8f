"""Structure VQ-VAE encoder: local backbone neighbourhoods -> one of 4096 codes per residue
(paper A.1.7.1, Algorithm 7; spec §6).

For every residue (the *centre*) the encoder gathers its ``K = 16`` nearest residues by CA distance, embeds each
neighbour's clamped sequence offset to the centre, runs two geometric-attention blocks over the neighbourhood
(no self-attention, no final norm), reads out the centre's slot, projects it to the code width and quantises it
to the nearest codebook vector.

Vectorised evaluation (about half the reference's FLOPs). Only the centre's output is read out, so the last block
projects queries, attends and runs its FFN for the centre slot only (keys and values for all K); the first
block's input is a lookup in the 66-row position table, so its LayerNorm + projection are computed once per table
row and gathered. These shortcuts are exact rewrites of the same arithmetic (fp32 rounding aside; tested against
plain per-block evaluation and against the reference). Neighbourhoods are processed in chunks of
:attr:`StructureEncoder.chunk_size` centres to bound memory; the result does not depend on the chunk size.
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
from openesm3.layers.feed_forward import SwiGLU
from openesm3.layers.geometric_attention import GeometricAttention
from openesm3.models.structure_decoder import check_per_residue


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
    v3 = 3 * geom.v_heads
    n, k, _ = x.shape
    h = geom.norm(x)
    weight, bias = geom.proj.weight, geom.proj.bias
    # Projection layout (spec §5), in blocks of 3V features: q_rot | k_rot | value | q_dist | k_dist.
    kv = (slice(v3, 3 * v3), slice(4 * v3, 5 * v3))  # k_rot + value, k_dist
    q = (slice(0, v3), slice(3 * v3, 4 * v3))  # q_rot, q_dist
    p = x.new_zeros(n, k, 5 * v3)
    centre = h[:, 0].contiguous()  # [N, D]: a 2-D product, not a broadcast batch
    for cols in kv:
        p[..., cols] = F.linear(h, weight[cols], None if bias is None else bias[cols])
    for cols in q:
        p[:, 0, cols] = F.linear(centre, weight[cols], None if bias is None else bias[cols])
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


def _drop_folded_cache(module: nn.Module, *_: object) -> None:
    """load_state_dict pre-hook: forget the cached folded FFN matrix of :meth:`StructureEncoder._first_ffn_folded`."""
    module.__dict__.pop("_folded_cache", None)


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
        # The folded-FFN cache keys on weight versions, which inference tensors lack: any load drops it.
        self.register_load_state_dict_pre_hook(_drop_folded_cache)

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
        check_per_residue("mask", mask, (b, length), "bool")
        check_per_residue("sequence_id", sequence_id, (b, length), "any")
        check_per_residue("residue_index", residue_index, (b, length), "integer")
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
        # Offsets from node 0, as the reference: node 0 is the centre unless another residue has the very same CA.
        offset = positions[rows, hood] - positions[rows, hood[..., :1]]
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
        d = self.config.d_model
        # [B, L, D]; no chunk at all when B or L is 0
        centre = torch.cat(out, dim=0).view(b, length, d) if out else table_proj.new_zeros(b, length, d)
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
            last = i == n_blocks - 1
            if i == 0:
                p = table_proj[rel]  # [N, K, 15V]
            elif last:
                p = _centre_query_projection(geom, x)
            else:
                p = geom.project(x)
            # block._branch: the training-time residual dropout of TransformerBlock.forward (a no-op in eval).
            if last:
                # Only the centre (node 0) is read out: it is the only query and the only FFN input.
                x = x[:, :1] + block._branch(geom.attend(p, frames, key_mask, sequence_id, n_queries=1))
                x = x + block._branch(block.ffn(x))
            elif i == 0 and not torch.is_grad_enabled():
                o = geom.attend(p, frames, key_mask, sequence_id, project_out=False)  # [N, K, 3V]
                x = x + block._branch(geom.out(o.to(geom.out.weight.dtype)))
                if block.dropout and block.training:  # the fold assumes x = E[rel] + W_o o + b_o: plain FFN
                    x = x + block._branch(block.ffn(x))
                else:
                    x = x + self._first_ffn_folded(x, o, rel, block)
            else:
                x = x + block._branch(geom.attend(p, frames, key_mask, sequence_id))
                x = x + block._branch(block.ffn(x))
        return x[:, 0]

    def _first_ffn_folded(self, x: Tensor, o: Tensor, rel: Tensor, block: TransformerBlock) -> Tensor:
        """Block 0's SwiGLU branch ``W_out(SiLU(a) * b)``, ``[a | b] = W_in LN(x) + b_in``, with ``W_in LN(x)``
        computed from the 3V attention outputs ``o`` instead of the D-wide ``x`` (inference only).

        Block 0's stream is ``x = E[rel] + W_o o + b_o``, so with ``LN(x) = g * (x - mu) / s + beta``:
        ``W_in LN(x) + b_in = (T[rel] + M o - mu u) / s + d`` with the cached ``M = W_in diag(g) W_o`` [H, 3V],
        ``T[r] = W_in diag(g) (E[r] + b_o)``, ``u = W_in g`` and ``d = W_in beta + b_in``. The four terms are one
        product of ``[o / s, onehot(rel) / s, -mu / s, 1]`` with the stacked matrix: 3V + 2m + 4 inputs per token
        instead of D (452 vs 1024 for the released encoder). mu and s are the LayerNorm statistics of ``x`` itself.
        """
        ffn = block.ffn
        assert isinstance(ffn, SwiGLU)
        stacked = self._folded_ffn_matrix(block)  # [3V + R + 2, H]
        var, mean = torch.var_mean(x.float(), dim=-1, unbiased=False, keepdim=True)
        inv = torch.rsqrt(var + ffn.norm.eps)  # the LayerNorm's 1 / sqrt(var + eps)
        n_rows = self.relative_position.weight.shape[0]
        inputs = torch.cat(
            [o * inv, F.one_hot(rel, n_rows).to(o.dtype) * inv, -mean * inv, torch.ones_like(mean)], dim=-1
        )
        a, b = (inputs.to(stacked.dtype) @ stacked).chunk(2, dim=-1)
        return ffn.w_out(F.silu(a, inplace=True).mul_(b))

    def _folded_ffn_matrix(self, block: TransformerBlock) -> Tensor:
        """The stacked matrix of :meth:`_first_ffn_folded`, cached until any of its weights changes."""
        ffn, geom = block.ffn, block.geom_attn
        assert isinstance(ffn, SwiGLU) and geom is not None
        sources = (ffn.norm.weight, ffn.norm.bias, ffn.w_in.weight, ffn.w_in.bias, geom.out.weight, geom.out.bias,
                   self.relative_position.weight)  # fmt: skip
        # Inference tensors (weights created under torch.inference_mode) have no version counter: key them on
        # their storage only; they cannot be modified outside inference mode, and load_state_dict drops the cache
        # (pre-hook). Other in-place edits of inference-tensor weights inside inference mode go unnoticed.
        key = tuple(None if t is None else (t.data_ptr(), -1 if t.is_inference() else t._version) for t in sources)
        cached = getattr(self, "_folded_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        # Autocast off: the cache outlives the call, so its products must not carry a caller's bf16 rounding.
        with torch.no_grad(), torch.autocast(device_type=ffn.norm.weight.device.type, enabled=False):
            g = ffn.norm.weight
            beta = ffn.norm.bias if ffn.norm.bias is not None else torch.zeros_like(g)
            w_in = ffn.w_in.weight  # [H, D]
            b_in = ffn.w_in.bias if ffn.w_in.bias is not None else w_in.new_zeros(w_in.shape[0])
            w_o = geom.out.weight  # [D, 3V]
            b_o = geom.out.bias if geom.out.bias is not None else torch.zeros_like(g)
            scaled = w_in * g  # W_in diag(g)
            table = (self.relative_position.weight + b_o) @ scaled.t()  # [R, H]
            stacked = torch.cat([(scaled @ w_o).t(), table, (w_in @ g)[None], (w_in @ beta + b_in)[None]])
        self._folded_cache = (key, stacked)
        return stacked

    def _geometric(self, i: int) -> GeometricAttention:
        geom = cast(TransformerBlock, self.blocks[i]).geom_attn
        assert geom is not None
        return geom
