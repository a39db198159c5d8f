"""Vector-quantisation codebook of the structure VQ-VAE, learned as an exponential moving average
(paper A.1.7.1.1; spec §6 step 7, §11).

Inference is a nearest-code lookup. Distances use the expansion ``|z|^2 - 2 z.e + |e|^2`` in fp32, exactly as the
reference does, so that near-ties resolve to the same code (spec §13.13); neither ``z`` nor the codes are
normalised. The quantised vector is returned with a straight-through gradient.

Training (the paper names the method, not its hyper-parameters; the defaults below are the common choices of
VQ-VAE-2 / Jukebox and are recorded in :class:`openesm3.config.StructureEncoderConfig`):

- **EMA update** (:meth:`EMACodebook.ema_update`): per code, ``N <- d N + (1 - d) n_batch`` and
  ``z_avg <- d z_avg + (1 - d) sum_batch z``; the code is ``z_avg / N~`` with the Laplace-smoothed count
  ``N~ = (N + eps) / (sum N + C eps) * sum N``.
- **Dead-code restart** (:meth:`EMACodebook.restart_dead_codes`): codes whose EMA count fell below a threshold are
  re-initialised to randomly drawn encoder outputs of the current batch ("unused codes are re-initialised to
  encoder outputs", paper A.1.7.1.1).
- **Commitment loss** ``beta * mean |z - sg(e)|^2`` (beta = 0.25 in the released code, spec §11).

Buffer names ``embeddings``, ``N`` and ``z_avg`` are those of the official checkpoint (spec §9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class CodebookOutput:
    """Result of quantising encoder outputs.

    Attributes:
        z_q: [..., D] code vectors with a straight-through gradient to ``z`` (value = the code, gradient = identity).
        indices: [...] int64 code indices.
        commitment_loss: scalar, ``beta * mean |z - sg(z_q)|^2`` over the valid positions.
    """

    z_q: Tensor
    indices: Tensor
    commitment_loss: Tensor


class EMACodebook(nn.Module):
    """A codebook of ``n_codes`` vectors of width ``dim`` with EMA training statistics.

    Args:
        n_codes: number of codes C.
        dim: code width D.
        decay: EMA decay d of the counts and sums.
        epsilon: Laplace smoothing of the counts.
        commitment_weight: beta of the commitment loss.
        dead_code_threshold: codes whose EMA count ``N`` is below this are restarted by
            :meth:`restart_dead_codes`.
    """

    embeddings: Tensor
    N: Tensor
    z_avg: Tensor

    def __init__(
        self,
        n_codes: int,
        dim: int,
        *,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        commitment_weight: float = 0.25,
        dead_code_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.n_codes = n_codes
        self.dim = dim
        self.decay = decay
        self.epsilon = epsilon
        self.commitment_weight = commitment_weight
        self.dead_code_threshold = dead_code_threshold
        embeddings = torch.randn(n_codes, dim)
        self.register_buffer("embeddings", embeddings)
        # Count 1 and sum = the code: every code starts as if it had been seen once (Jukebox's initialisation); an
        # unused code then keeps its vector (both statistics decay alike) until it is restarted.
        self.register_buffer("N", torch.ones(n_codes))
        self.register_buffer("z_avg", embeddings.clone())

    # ---- inference ---------------------------------------------------------------------------------------
    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest code of each vector: z [..., D] -> [...] int64 (fp32 distances, under autocast too)."""
        flat = z.reshape(-1, self.dim).float()
        codes = self.embeddings.float()
        # |z|^2 - 2 z.e + |e|^2 in this order and in fp32: the reference's formula, so near-ties resolve alike.
        # Autocast off: it would run z.e in bf16/fp16 and move near-ties (the codes must not depend on it).
        with torch.autocast(device_type=flat.device.type, enabled=False):
            distances = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(-1)[None, :]
        return distances.argmin(-1).view(z.shape[:-1])

    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors of ``indices`` [...] -> [..., D]."""
        return F.embedding(indices, self.embeddings)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> CodebookOutput:
        """Quantise z [..., D]; ``mask`` [...] bool selects the positions that count in the commitment loss."""
        indices = self.nearest(z)
        codes = self.lookup(indices).to(z.dtype)
        z_q = z + (codes - z).detach()  # straight-through estimator
        error = (z.float() - codes.detach().float()).pow(2).mean(-1)
        if mask is None:
            loss = error.mean()
        else:
            weight = mask.to(error.dtype)
            loss = (error * weight).sum() / weight.sum().clamp_min(1.0)
        return CodebookOutput(z_q=z_q, indices=indices, commitment_loss=self.commitment_weight * loss)

    # ---- training ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_statistics(self) -> None:
        """Restart the EMA statistics from the current codes (count 1 each). The official checkpoint ships
        ``N = 0``, which would make the first smoothed update divide by ~0; :meth:`ema_update` calls this then."""
        self.N.fill_(1.0)
        self.z_avg.copy_(self.embeddings)

    @torch.no_grad()
    def ema_update(self, z: Tensor, indices: Tensor, mask: Tensor | None = None) -> None:
        """One EMA step from encoder outputs z [..., D] assigned to ``indices`` [...]; ``mask`` [...] bool keeps
        only valid positions. In distributed training, all-reduce ``counts`` and ``sums`` before calling
        :meth:`ema_update_from_statistics` instead."""
        counts, sums = self.batch_statistics(z, indices, mask)
        self.ema_update_from_statistics(counts, sums)

    @torch.no_grad()
    def batch_statistics(self, z: Tensor, indices: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-code assignment counts [C] and sums of assigned vectors [C, D] (fp32)."""
        flat_z = z.reshape(-1, self.dim).float()
        flat_idx = indices.reshape(-1)
        if mask is not None:
            keep = mask.reshape(-1)
            flat_z, flat_idx = flat_z[keep], flat_idx[keep]
        counts = torch.zeros(self.n_codes, device=flat_z.device).index_add_(
            0, flat_idx, torch.ones_like(flat_idx, dtype=torch.float32)
        )
        sums = torch.zeros(self.n_codes, self.dim, device=flat_z.device).index_add_(0, flat_idx, flat_z)
        return counts, sums

    @torch.no_grad()
    def ema_update_from_statistics(self, counts: Tensor, sums: Tensor) -> None:
        """EMA step from (possibly all-reduced) batch statistics: counts [C], sums [C, D]."""
        if float(self.N.sum()) <= 0.0:  # uninitialised statistics (e.g. the official file): start from the codes
            self.reset_statistics()
        d = self.decay
        self.N.mul_(d).add_(counts.to(self.N), alpha=1.0 - d)
        self.z_avg.mul_(d).add_(sums.to(self.z_avg), alpha=1.0 - d)
        total = self.N.sum()
        smoothed = (self.N + self.epsilon) / (total + self.n_codes * self.epsilon) * total
        self.embeddings.copy_(self.z_avg / smoothed[:, None])

    @torch.no_grad()
    def dead_codes(self) -> Tensor:
        """Bool [C]: codes whose EMA count is below the dead-code threshold."""
        return self.N < self.dead_code_threshold

    @torch.no_grad()
    def restart_dead_codes(
        self, z: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> int:
        """Re-initialise dead codes to encoder outputs z [..., D] drawn at random (with replacement when there
        are fewer valid outputs than dead codes); their statistics restart at count 1. Returns how many codes
        were restarted."""
        dead = self.dead_codes().nonzero().squeeze(-1)
        flat_z = z.reshape(-1, self.dim).float()
        if mask is not None:
            flat_z = flat_z[mask.reshape(-1)]
        n_dead = int(dead.numel())
        if n_dead == 0 or flat_z.shape[0] == 0:
            return 0
        device = flat_z.device
        if flat_z.shape[0] >= n_dead:
            pick = torch.randperm(flat_z.shape[0], generator=generator, device="cpu")[:n_dead].to(device)
        else:
            pick = torch.randint(flat_z.shape[0], (n_dead,), generator=generator, device="cpu").to(device)
        new = flat_z[pick].to(self.embeddings)
        self.embeddings[dead] = new
        self.z_avg[dead] = new
        self.N[dead] = 1.0
        return n_dead
