"""Output heads of the structure VQ-VAE decoder and its confidence metrics (paper A.1.7.2, Algorithm 8-9,
A.1.7.3.2; spec §7).

- :class:`AffineHead`: per-residue backbone frame from a translation and two direction vectors (the "6D rotation"
  parameterisation), plus 7 unused torsion sin/cos pairs that the all-atom decoder of the paper consumes.
- :class:`PairwiseHead`: pair logits from ``concat(q_j * k_i, q_j - k_i)`` (distogram, binned directions, PAE).
- :func:`plddt_from_logits`, :func:`pae_from_logits`, :func:`ptm_from_logits`: expected values over bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.geometry.rigid import Rigid
from openesm3.layers.heads import RegressionHead

_AFFINE_VECTORS = 9  # translation, x-direction (negated), xy-plane direction


@dataclass(frozen=True)
class AffineHeadOutput:
    """frames [B, L] (rotation + translation in Angstrom); torsions [B, L, N_TORSIONS, 2] raw (unnormalised)."""

    frames: Rigid
    torsions: Tensor


class AffineHead(nn.Module):
    """Backbone frames from features (paper Algorithm 8 steps 2-3, spec §7 "Affine head").

    ``o = RegressionHead(x)`` with 9 + 2*7 outputs: translation t (scaled by 10), vectors a and b (each divided by
    ``|v| + 1e-5``), then 14 torsion values. The frame is ``gram_schmidt(origin=t, x=-a, xy=b)``.
    """

    def __init__(self, d_model: int, n_torsions: int = C.N_TORSIONS) -> None:
        super().__init__()
        self.n_torsions = n_torsions
        self.mlp = RegressionHead(d_model, _AFFINE_VECTORS + 2 * n_torsions)

    def forward(self, x: Tensor) -> AffineHeadOutput:
        """x [B, L, D] -> frames [B, L] (fp32) and torsions [B, L, n_torsions, 2]."""
        out = self.mlp(x).float()
        trans, a, b = out[..., :3], out[..., 3:6], out[..., 6:9]
        torsions = out[..., _AFFINE_VECTORS:].unflatten(-1, (self.n_torsions, 2))
        with torch.autocast(device_type=x.device.type, enabled=False):
            trans = trans * C.AFFINE_TRANSLATION_SCALE
            a = a / (a.norm(dim=-1, keepdim=True) + C.AFFINE_VECTOR_EPS)
            b = b / (b.norm(dim=-1, keepdim=True) + C.AFFINE_VECTOR_EPS)
            # The x-axis is -a (paper Algorithm 8 step 3 writes gram_schmidt(t, -x, y)).
            frames = Rigid.from_gram_schmidt(trans, -a, b)
        return AffineHeadOutput(frames=frames, torsions=torsions)


def backbone_from_frames(frames: Rigid) -> Tensor:
    """N, CA, C positions [..., 3, 3] of ideal local backbone coordinates placed by ``frames`` [...] (spec §7)."""
    local = torch.tensor(C.BACKBONE_LOCAL_COORDS, dtype=frames.trans.dtype, device=frames.trans.device)  # [3, 3]
    return frames.unsqueeze(-1).apply(local)


class PairwiseHead(nn.Module):
    """Pairwise projection head (paper Algorithm 9, spec §7 "Pairwise head"); no biases in its Linear layers.

    ``d = down(x)``, ``q, k = d[:h], d[h:]``; pair feature ``[i, j] = concat(q_j * k_i, q_j - k_i)``; then
    ``linear2(LN(GELU(linear1(pair))))``. Outputs, in order: distogram (64), binned directions (16 x 6), PAE (64).
    """

    def __init__(self, d_model: int, pair_dim: int) -> None:
        super().__init__()
        if pair_dim % 2:
            raise ValueError(f"pair_dim must be even, got {pair_dim}")
        self.pair_dim = pair_dim
        self.n_outputs = C.DISTOGRAM_N_BINS + C.DIRECTION_N_BINS * C.DIRECTION_N_PAIRS + C.PAE_N_BINS
        self.down = nn.Linear(d_model, pair_dim, bias=False)
        self.linear1 = nn.Linear(pair_dim, pair_dim, bias=False)
        self.norm = nn.LayerNorm(pair_dim, eps=C.LAYER_NORM_EPS)
        self.linear2 = nn.Linear(pair_dim, self.n_outputs, bias=False)

    def forward(self, x: Tensor, outputs: slice | None = None, rows: slice | None = None) -> Tensor:
        """x [B, L, D] -> pair logits [B, L, L, n]; ``outputs`` selects a slice of the n outputs (default all),
        ``rows`` a slice of the rows i (default all: [B, R, L, n] for R selected rows)."""
        weight = self.linear2.weight if outputs is None else self.linear2.weight[outputs]
        return F.linear(self.pair_features(x, rows), weight)

    def pair_features(self, x: Tensor, rows: slice | None = None) -> Tensor:
        """The pair features ``linear2`` reads: x [B, L, D] -> [B, L, L, pair_dim] (or [B, R, L, pair_dim])."""
        q, k = self.down(x).chunk(2, dim=-1)  # [B, L, h] each
        if rows is not None:
            k = k[:, rows]
        prod = q[:, None, :, :] * k[:, :, None, :]  # [B, i, j, h] = q_j * k_i
        diff = q[:, None, :, :] - k[:, :, None, :]
        return self.norm(F.gelu(self.linear1(torch.cat([prod, diff], dim=-1))))

    @staticmethod
    def split(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Split full pair logits [..., 224] into distogram [..., 64], directions [..., 6, 16] and PAE [..., 64]."""
        dist, direction, pae = logits.split(
            [C.DISTOGRAM_N_BINS, C.DIRECTION_N_BINS * C.DIRECTION_N_PAIRS, C.PAE_N_BINS], dim=-1
        )
        return dist, direction.unflatten(-1, (C.DIRECTION_N_PAIRS, C.DIRECTION_N_BINS)), pae

    @staticmethod
    def pae_slice() -> slice:
        start = C.DISTOGRAM_N_BINS + C.DIRECTION_N_BINS * C.DIRECTION_N_PAIRS
        return slice(start, start + C.PAE_N_BINS)


def plddt_from_logits(logits: Tensor) -> Tensor:
    """Expected lDDT in (0, 1): sum_b softmax(logits)_b * (b + 0.5) / n_bins. [..., n_bins] -> [...] (fp32)."""
    n_bins = logits.shape[-1]
    centres = (torch.arange(n_bins, device=logits.device, dtype=torch.float32) + 0.5) / n_bins
    return (torch.softmax(logits.float(), dim=-1) * centres).sum(-1)


def pae_bin_centres(device: torch.device | str | None = None) -> Tensor:
    """[64] PAE bin centres 0.25, 0.75, ..., 31.75 Angstrom (bins of width 0.5 up to ``PAE_MAX_BIN``, spec §7)."""
    width = C.PAE_MAX_BIN / (C.PAE_N_BINS - 2)
    return torch.arange(C.PAE_N_BINS, device=device, dtype=torch.float32) * width + width / 2


def mask_pair_logits(logits: Tensor, residue_mask: Tensor) -> Tensor:
    """PAE logits [B, L, L, 64] with every pair that is not residue-residue set to float32-min (spec §7: a uniform
    distribution, so such pairs get the mean bin centre, 16.0). ``residue_mask`` [B, L] bool (tokens < 4096)."""
    pair = residue_mask[:, :, None] & residue_mask[:, None, :]
    return logits.float().masked_fill(~pair[..., None], C.FLOAT32_MIN)


def pae_from_logits(logits: Tensor, residue_mask: Tensor) -> Tensor:
    """Predicted aligned error [B, L, L] (Angstrom) from PAE logits [B, L, L, 64] (spec §7)."""
    return pae_and_ptm(logits, residue_mask)[0]


def ptm_from_logits(logits: Tensor, residue_mask: Tensor) -> Tensor:
    """Predicted TM-score [B] from PAE logits [B, L, L, 64] (spec §7); see :func:`pae_and_ptm`."""
    return pae_and_ptm(logits, residue_mask)[1]


def pae_and_ptm(logits: Tensor, residue_mask: Tensor) -> tuple[Tensor, Tensor]:
    """PAE [B, L, L] and pTM [B] from PAE logits [B, L, L, 64], sharing one softmax (spec §7).

    pTM: ``d0 = 1.24 (max(N, 19) - 15)^(1/3) - 1.8`` with N the number of residues of the row; per pair
    ``sum_b p_b / (1 + (centre_b / d0)^2)``; per row the mean over residue pairs (rows that are not residues score
    0); the maximum over rows.
    """
    pae, per_row = pae_and_ptm_rows(logits, residue_mask, residue_mask)
    return pae, per_row.max(-1).values


def pae_and_ptm_rows(logits: Tensor, row_mask: Tensor, residue_mask: Tensor) -> tuple[Tensor, Tensor]:
    """PAE [B, R, L] and the per-row pTM terms [B, R] of R query rows (a chunk of rows: logits [B, R, L, 64],
    ``row_mask`` [B, R] the rows' residue mask, ``residue_mask`` [B, L] the whole row's). pTM = max over rows."""
    pair_mask = row_mask[:, :, None] & residue_mask[:, None, :]
    probs = torch.softmax(logits.float().masked_fill(~pair_mask[..., None], C.FLOAT32_MIN), dim=-1)
    centres = pae_bin_centres(logits.device)
    pae = (probs * centres).sum(-1)
    n = residue_mask.sum(-1).float()  # [B] residues of the whole row
    d0 = 1.24 * (n.clamp_min(19) - 15) ** (1.0 / 3.0) - 1.8
    f = 1.0 / (1.0 + (centres[None, :] / d0[:, None]) ** 2)  # [B, 64]
    per_pair = (probs * f[:, None, None, :]).sum(-1)  # [B, R, L]
    weight = pair_mask.float()
    per_row = (per_pair * weight).sum(-1) / (1e-10 + weight.sum(-1))
    return pae, per_row
