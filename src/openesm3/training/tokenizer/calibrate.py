"""Calibrate a trained tokenizer's confidence heads on chains its decoder has not seen.

A stage-2 decoder learns its pLDDT and PAE heads from its own errors on its training chains, which it decodes
better than new chains, so on new chains its confidences overstate (docs/tokenizer_training.md, finding 14).
Calibration refits those heads, starting from their own weights, on decodings of **held-out** chains:

- the encoder and the decoder's trunk are frozen and decode each chain once (from its tokens alone, as
  ``openesm3 detokenize``, or with its sequence for a sequence-conditioned decoder);
- the pLDDT head learns the per-residue lDDT-CA of those decodings (stage 2's pLDDT term);
- the pairwise head, whose PAE outputs give PAE and pTM, learns stage 2's distogram, binned-direction and PAE terms
  (PAE targets: the decodings' own aligned errors), or only its PAE outputs are refitted (``pair_fit``): on the PAE
  term, or scaled so that each chain's pTM matches the TM-score of its decoding (``pair_fit="ptm"``).

Nothing else changes: the decoded coordinates are those of the original decoder, bit for bit. Residues without
N, CA and C are left out of every target. How the refitted heads do on *new* chains is estimated by cross-fitting:
the chains are dealt into K folds of whole clusters, and every chain is scored by heads fitted on the other folds.
The heads that are written are then fitted on all the chains.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from openesm3 import constants as C
from openesm3.checkpoints.format import save_pretrained
from openesm3.errors import InputError
from openesm3.generation.structure_tokens import encode_structure
from openesm3.geometry.lddt import lddt
from openesm3.geometry.metrics import tm_score
from openesm3.layers.structure_heads import PairwiseHead, pae_and_ptm, plddt_from_logits
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.config import ConfigError, require_seed
from openesm3.training.data import ProteinRecord, sequence_to_ids
from openesm3.training.schedules import WarmupCosineSchedule
from openesm3.training.splits import greedy_identity_clusters
from openesm3.training.tokenizer import losses as L
from openesm3.training.tokenizer.confidence import aligned_errors, pae_bins, plddt_targets
from openesm3.training.tokenizer.evaluate import record_to_chain
from openesm3.training.tokenizer.export import DECODER_DIR, ENCODER_DIR
from openesm3.training.tokenizer.model import decoder_sequence
from openesm3.training.tokenizer.run import noised
from openesm3.utils.atomic import atomic_write_json
from openesm3.utils.progress import Progress
from openesm3.utils.provenance import note_moved, note_removed

HEADS = ("plddt", "pae")
PAIR_FITS = ("head", "pae", "temperature", "ptm", "ptm-temperature")
# pair_fit values that only scale the PAE outputs the head has (one or two factors): they calibrate, not train, it
SCALE_FITS = ("temperature", "ptm", "ptm-temperature")
REPORT_FILE = "calibration.json"
MIN_RESIDUES = 8  # chains with fewer residues with a backbone are left out


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """Settings of a calibration (defaults: those of finding 14's cross-fit, which took 1 to 4 min per head and fold
    for 76 chains on 2 CPU threads)."""

    heads: tuple[str, ...] = HEADS  # "plddt": the pLDDT head; "pae": the pairwise head (PAE and pTM)
    steps: int = 1000  # optimiser steps per head and fit
    pair_lr: float = 1e-3  # AdamW peak learning rate of the pairwise head (5 % warmup, cosine to 0, clip 1.0)
    # what of the pairwise head is refitted: "head" every weight, on stage 2's distogram, direction and PAE terms;
    # "pae" only its 64 PAE output rows, on the PAE term (the trunk and the distogram/direction outputs are kept);
    # "temperature" one scale of the PAE logits (1 parameter: keeps the head's ranking of pairs); "ptm" a scale of
    # the PAE logits that grows or shrinks across the bins (2 parameters) fitted so that each chain's pTM matches the
    # TM-score of its decoding (L-BFGS on whole chains, up to ``steps`` iterations; it keeps every chain's PAE
    # logits, 128 bytes per residue pair, in memory); "ptm-temperature" the same with one scale (no tilt)
    pair_fit: str = "head"
    plddt_lr: float = 1e-3 / 3  # of the pLDDT head (no warmup, cosine to 0)
    batch: int = 2  # chains (pLDDT) or crops (pairwise head) per step
    crop_length: int = 256  # pairwise head: random crops of this many residues
    cross_fit: int = 2  # K >= 2: estimate the refitted heads on new chains by K-fold cross-fitting; 0: no estimate
    with_sequence: bool = False  # decode with the sequence (sequence-conditioned decoders); else tokens alone
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.heads) - set(HEADS))
        if unknown or not self.heads:
            raise ConfigError(f"heads: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(HEADS)})")
        for name in ("steps", "batch", "crop_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pair_lr", "plddt_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.pair_fit not in PAIR_FITS:
            raise ConfigError(f"pair_fit: unknown {self.pair_fit!r} (known: {', '.join(PAIR_FITS)})")
        if self.cross_fit == 1 or self.cross_fit < 0:
            raise ConfigError(f"cross_fit must be 0 (no estimate) or >= 2 folds, got {self.cross_fit}")
        require_seed(self.seed)


@dataclass
class DecodedChain:
    """One chain decoded by a frozen tokenizer: what the heads read and what their targets come from."""

    name: str
    cluster: str
    features: Tensor  # [n, D] the decoder's final per-residue features (the heads' input)
    pred: Tensor  # [n, 3, 3] decoded N, CA, C
    true: Tensor  # [n, 3, 3] true N, CA, C (zeros where missing)
    mask: Tensor  # [n] bool: the residue has N, CA and C

    @property
    def pair_mask(self) -> Tensor:
        return self.mask[:, None] & self.mask[None, :]


def backbone_mask(record: ProteinRecord) -> np.ndarray:
    return np.asarray(record.atom37_mask[:, :3].all(-1))


@torch.no_grad()
def decode_chain(
    encoder: StructureEncoder,
    decoder: StructureDecoder,
    record: ProteinRecord,
    *,
    cluster: str = "",
    noise: float = 0.0,
    seed: int = 0,
    with_sequence: bool = False,
) -> DecodedChain:
    """Encode a single-chain record (the user-facing path, whole chain) and decode its tokens once. ``noise`` adds
    Gaussian noise of that many Angstrom to the coordinates first (as stage 2's token renditions)."""
    if noise > 0:
        record = noised(record, noise, np.random.default_rng(seed))
    tokens = torch.from_numpy(encode_structure(record_to_chain(record), encoder, max_length=None).tokens)[None]
    n = record.length
    sequence = None
    if with_sequence and decoder.config.sequence_conditioning:
        ids = torch.tensor(sequence_to_ids(record.sequence), dtype=torch.long)[None]
        sequence = decoder_sequence(ids, torch.ones(1, n, dtype=torch.bool), torch.tensor([True]))
    out = decoder(tokens, pae=False, sequence_tokens=sequence)
    mask = torch.from_numpy(backbone_mask(record))
    true = torch.from_numpy(record.atom37[:, :3]).float()
    true = torch.where(mask[:, None, None], true, torch.zeros(()))
    return DecodedChain(
        record.name, cluster, out.features[0, 1 : n + 1].float(), out.backbone[0, 1 : n + 1].float(), true, mask
    )


def pair_losses(logits: Tensor, chain: DecodedChain) -> dict[str, Tensor]:
    """Per-pair cross-entropies [n, n] of pair logits [n, n, 224] against the stage-2 targets of one chain:
    ``distogram``, ``direction`` (mean of the six pairs) and ``pae``. Pairs with a residue without a backbone hold
    meaningless values: select with ``chain.pair_mask``."""
    dist, direction, pae = PairwiseHead.split(logits)
    true = chain.true[None]
    out = {}
    t = L.distogram_targets(true)[0]
    out["distogram"] = F.cross_entropy(dist.flatten(0, 1), t.flatten(), reduction="none").view_as(t)
    t = L.direction_targets(true)[0]
    out["direction"] = F.cross_entropy(direction.flatten(0, 2), t.flatten(), reduction="none").view_as(t).mean(-1)
    t = pae_bins(aligned_errors(chain.pred[None], true))[0]
    out["pae"] = F.cross_entropy(pae.flatten(0, 1), t.flatten(), reduction="none").view_as(t)
    return out


def crop_chain(chain: DecodedChain, size: int, rng: np.random.Generator) -> DecodedChain:
    """A random contiguous crop of ``size`` residues (the chain itself when not longer)."""
    n = chain.features.shape[0]
    if n <= size:
        return chain
    s = int(rng.integers(0, n - size + 1))
    cut = slice(s, s + size)
    return DecodedChain(
        chain.name, chain.cluster, chain.features[cut], chain.pred[cut], chain.true[cut], chain.mask[cut]
    )


def cluster_folds(clusters: Sequence[str], k: int) -> list[int]:
    """Fold 0..k-1 of each chain: whole clusters (sorted by name) dealt out in turn, so no chain is scored by heads
    fitted on its relatives."""
    names = sorted(set(clusters))
    fold_of = {c: i % k for i, c in enumerate(names)}
    return [fold_of[c] for c in clusters]


def optimise(
    head: nn.Module, batch_loss: Callable[[], Tensor], *, steps: int, lr: float, warmup: int, clip: float | None
) -> list[list[float]]:
    """AdamW (weight decay 0.01) on ``head`` for ``steps`` steps of ``batch_loss()``, linear warmup then cosine decay
    to 0; returns the loss every 100 steps and at the last, as [step, loss] pairs."""
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    schedule = WarmupCosineSchedule(peak_lr=lr, warmup_steps=warmup, total_steps=steps, min_lr_ratio=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor)
    curve = []
    for step in range(steps):
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(head.parameters(), clip)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            curve.append([step, float(loss.detach())])
    return curve


def fit_pair_head(
    head: nn.Module,
    chains: Sequence[DecodedChain],
    *,
    steps: int,
    lr: float,
    crop_length: int,
    batch: int,
    seed: int,
    logits: Callable[[DecodedChain], Tensor] | None = None,
) -> list[list[float]]:
    """Fit a pair head to the distogram, direction and PAE terms (each a mean over the crop's pairs with a backbone)
    of random crops of ``chains``. ``logits`` maps a chain to the head's pair logits (default: a
    :class:`PairwiseHead` reading the features)."""
    rng = np.random.default_rng(seed)
    forward = logits or (lambda chain: head(chain.features[None])[0])

    def batch_loss() -> Tensor:
        total = torch.zeros(())
        for _ in range(batch):
            c = crop_chain(chains[int(rng.integers(len(chains)))], crop_length, rng)
            keep = c.pair_mask
            terms = pair_losses(forward(c), c)
            total = total + sum(t[keep].mean() for t in terms.values()) / batch
        return total

    return optimise(head, batch_loss, steps=steps, lr=lr, warmup=max(1, steps // 20), clip=1.0)


def fit_pae_output(
    head: PairwiseHead,
    chains: Sequence[DecodedChain],
    *,
    mode: str,
    steps: int,
    lr: float,
    crop_length: int,
    batch: int,
    seed: int,
) -> list[list[float]]:
    """Fit only the PAE outputs of a :class:`PairwiseHead`, in place, to the PAE term of random crops of ``chains``:
    ``mode="pae"`` its 64 PAE rows of ``linear2``, ``mode="temperature"`` one scale of them. The head's trunk and its
    distogram and direction outputs are left as they are."""
    rng = np.random.default_rng(seed)
    rows = PairwiseHead.pae_slice()
    start = head.linear2.weight.detach()[rows].clone()
    fitted = nn.ParameterDict(
        {"weight": nn.Parameter(start.clone())} if mode == "pae" else {"log_scale": nn.Parameter(torch.zeros(()))}
    )

    def weight() -> Tensor:
        return fitted["weight"] if mode == "pae" else start * fitted["log_scale"].exp()

    def batch_loss() -> Tensor:
        total = torch.zeros(())
        for _ in range(batch):
            c = crop_chain(chains[int(rng.integers(len(chains)))], crop_length, rng)
            with torch.no_grad():  # the head's trunk is frozen
                h = head.pair_features(c.features[None])[0]
            target = pae_bins(aligned_errors(c.pred[None], c.true[None]))[0]
            keep = c.pair_mask
            total = total + F.cross_entropy(F.linear(h[keep], weight()), target[keep]) / batch
        return total

    curve = optimise(fitted, batch_loss, steps=steps, lr=lr, warmup=max(1, steps // 20), clip=1.0)
    with torch.no_grad():
        head.linear2.weight[rows] = weight()
    return curve


PTM_SCALE_PARAMETERS = 2


def ptm_bin_scale(theta: Tensor) -> Tensor:
    """[64] factors of the PAE logits, ``exp(theta[0] + theta[1] * k / 63)`` for bin k (theta [2]): one temperature
    and a tilt from the bins of small errors to those of large ones."""
    position = torch.linspace(0.0, 1.0, C.PAE_N_BINS, dtype=theta.dtype, device=theta.device)
    return torch.exp(theta[0] + theta[1] * position)


def fit_ptm_scale(
    head: PairwiseHead, chains: Sequence[DecodedChain], tm: Sequence[float], *, steps: int, tilt: bool = True
) -> list[list[float]]:
    """Scale the PAE outputs of a :class:`PairwiseHead`, in place, so that the pTM of each of ``chains`` (over all its
    residues, as the decoder reports it) matches ``tm``, the TM-score of its decoding: the mean squared difference
    over the chains is minimised by L-BFGS (up to ``steps`` iterations) over the two parameters of
    :func:`ptm_bin_scale` (``tilt=False``: the first alone, a temperature). Each PAE row is multiplied by its
    factor, so the head keeps its form and the official weight layout, and its trunk and distogram and direction
    outputs are left as they are. Returns the loss at every evaluation, as [evaluation, loss] pairs."""
    if len(chains) != len(tm):
        raise ValueError(f"{len(chains)} chains but {len(tm)} TM-scores")
    rows = PairwiseHead.pae_slice()
    with torch.no_grad():  # the head's trunk and its PAE rows are fixed; only the factors are fitted
        logits = [head(c.features[None], outputs=rows)[0].half() for c in chains]
    target = torch.tensor(list(tm), dtype=torch.float32)
    fitted = nn.Parameter(torch.zeros(PTM_SCALE_PARAMETERS if tilt else 1))
    opt = torch.optim.LBFGS([fitted], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def parameters() -> Tensor:
        return fitted if tilt else torch.cat([fitted, fitted.new_zeros(1)])

    curve: list[list[float]] = []

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        scale = ptm_bin_scale(parameters())
        ptm = torch.stack(
            [pae_and_ptm(z.float()[None] * scale, torch.ones(1, z.shape[0], dtype=torch.bool))[1][0] for z in logits]
        )
        loss = ((ptm - target) ** 2).mean()
        loss.backward()
        curve.append([len(curve), float(loss.detach())])
        return loss

    opt.step(closure)
    with torch.no_grad():
        head.linear2.weight[rows] *= ptm_bin_scale(parameters().detach())[:, None]
    return curve


def fit_plddt_head(
    head: nn.Module, chains: Sequence[DecodedChain], *, steps: int, lr: float, batch: int, seed: int
) -> list[list[float]]:
    """Fit a pLDDT head (features [n, D] -> 50 logits) to the binned per-residue lDDT-CA of the decodings."""
    rng = np.random.default_rng(seed)
    targets = [plddt_targets(c.pred[None], c.true[None], c.mask[None])[1][0] for c in chains]

    def batch_loss() -> Tensor:
        picks = rng.integers(len(chains), size=batch)
        total = torch.zeros(())
        for i in picks:
            m = chains[i].mask
            total = total + F.cross_entropy(head(chains[i].features)[m], targets[i][m]) / batch
        return total

    return optimise(head, batch_loss, steps=steps, lr=lr, warmup=0, clip=None)


@torch.no_grad()
def chain_truth(chain: DecodedChain) -> tuple[float, float]:
    """(lDDT-CA, TM-score) of the decoding over the residues with a backbone."""
    m = chain.mask
    tm = float(tm_score(chain.pred[m][:, 1], chain.true[m][:, 1]).score)
    return float(lddt(chain.pred[:, 1], chain.true[:, 1], m).score), tm


@torch.no_grad()
def score_plddt(head: nn.Module, chains: Sequence[DecodedChain]) -> list[dict]:
    """Per chain: the head's per-residue pLDDT, the true per-residue lDDT-CA, which residues are scored (a backbone
    and a scored pair), and the chain's lDDT-CA."""
    rows = []
    for c in chains:
        truth = lddt(c.pred[:, 1], c.true[:, 1], c.mask)
        rows.append(
            {
                "plddt": plddt_from_logits(head(c.features)).numpy(),
                "true": truth.per_residue.numpy(),
                "scored": (truth.scored & c.mask).numpy(),
                "lddt_ca": float(truth.score),
            }
        )
    return rows


def summarize_plddt(rows: Sequence[dict]) -> dict:
    """pLDDT against the true lDDT-CA: Pearson r per residue (pooled over scored residues) and per protein (mean
    pLDDT against the chain's lDDT-CA), and both means."""
    per_res = np.concatenate([r["plddt"][r["scored"]] for r in rows])
    true_res = np.concatenate([r["true"][r["scored"]] for r in rows])
    mean_plddt = np.array([r["plddt"].mean() for r in rows])
    chain_lddt = np.array([r["lddt_ca"] for r in rows])
    return {
        "r_per_residue": pearson(per_res, true_res),
        "r_per_protein": pearson(mean_plddt, chain_lddt),
        "mean_plddt": float(mean_plddt.mean()),
        "mean_lddt_ca": float(chain_lddt.mean()),
        "mean_plddt_per_chain": mean_plddt.tolist(),
        "lddt_ca_per_chain": chain_lddt.tolist(),
    }


@torch.no_grad()
def score_ptm(head: nn.Module, chains: Sequence[DecodedChain]) -> list[float]:
    """pTM of every chain from a :class:`PairwiseHead`, over all its residues (as the decoder reports it). Only the PAE
    outputs are computed: a third of the memory of all 224."""
    out = []
    for c in chains:
        pae = head(c.features[None], outputs=PairwiseHead.pae_slice())
        _, ptm = pae_and_ptm(pae, torch.ones(1, pae.shape[1], dtype=torch.bool))
        out.append(float(ptm[0]))
    return out


def summarize_ptm(ptm: Sequence[float], tm: Sequence[float]) -> dict:
    p, t = np.asarray(ptm, dtype=float), np.asarray(tm, dtype=float)
    return {
        "ptm_vs_tm_r": pearson(p, t),
        "mean_ptm": float(p.mean()),
        "mean_tm": float(t.mean()),
        "ptm_per_chain": p.tolist(),
    }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN for fewer than 3 pairs or a constant side."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def r_difference(
    a: Sequence[float],
    b: Sequence[float],
    truth: Sequence[float],
    truth_b: Sequence[float] | None = None,
    *,
    n_boot: int = 5000,
) -> dict:
    """r(a, truth) - r(b, truth_b) over the same chains, with a 95 % bootstrap interval (chains resampled).
    ``truth_b`` defaults to ``truth`` (two predictions of one truth); give it when ``b`` predicts another decoding."""
    x, y, t = np.asarray(a, dtype=float), np.asarray(b, dtype=float), np.asarray(truth, dtype=float)
    u = t if truth_b is None else np.asarray(truth_b, dtype=float)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(t), len(t))
        if np.ptp(t[i]) > 0 and np.ptp(u[i]) > 0 and np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            diffs.append(np.corrcoef(x[i], t[i])[0, 1] - np.corrcoef(y[i], u[i])[0, 1])
    difference = pearson(x, t) - pearson(y, u)
    # No interval for an undefined difference (fewer than 3 chains, a constant side): resamples of 2 chains give
    # r = +-1 and an interval of +0.00 .. +0.00 that would look like a measured "no change".
    defined = diffs and math.isfinite(difference)
    lo, hi = np.percentile(diffs, [2.5, 97.5]) if defined else (float("nan"), float("nan"))
    return {"difference": difference, "low": float(lo), "high": float(hi)}


@dataclass
class CalibrationResult:
    decoder: StructureDecoder  # a copy of the input decoder with the refitted heads
    report: dict = field(default_factory=dict)


def _fit_heads(
    decoder: StructureDecoder, chains: Sequence[DecodedChain], tm: Sequence[float], config: CalibrationConfig
) -> dict:
    """Copies of the decoder's heads named in ``config.heads``, fitted on ``chains`` (``tm``: the TM-scores of their
    decodings, which ``pair_fit="ptm"`` fits to)."""
    heads: dict[str, nn.Module] = {}
    if "plddt" in config.heads:
        torch.manual_seed(config.seed)
        plddt_head = copy.deepcopy(decoder.plddt_head)
        fit_plddt_head(plddt_head, chains, steps=config.steps, lr=config.plddt_lr, batch=config.batch, seed=config.seed)
        heads["plddt"] = plddt_head
    if "pae" in config.heads:
        torch.manual_seed(config.seed)
        pair_head = copy.deepcopy(decoder.pairwise_head)
        steps, lr, crop, batch = config.steps, config.pair_lr, config.crop_length, config.batch
        if config.pair_fit == "head":
            fit_pair_head(pair_head, chains, steps=steps, lr=lr, crop_length=crop, batch=batch, seed=config.seed)
        elif config.pair_fit in ("ptm", "ptm-temperature"):
            fit_ptm_scale(pair_head, chains, tm, steps=steps, tilt=config.pair_fit == "ptm")
        else:
            fit_pae_output(
                pair_head,
                chains,
                mode=config.pair_fit,
                steps=steps,
                lr=lr,
                crop_length=crop,
                batch=batch,
                seed=config.seed,
            )
        heads["pae"] = pair_head
    return heads


def _figures(plddt_head: nn.Module, pair_head: nn.Module, chains: Sequence[DecodedChain], tm: Sequence[float]) -> dict:
    return {
        "plddt": summarize_plddt(score_plddt(plddt_head, chains)),
        "ptm": summarize_ptm(score_ptm(pair_head, chains), tm),
    }


def calibrate(
    decoder: StructureDecoder,
    chains: Sequence[DecodedChain],
    config: CalibrationConfig,
    *,
    progress: bool = True,
) -> CalibrationResult:
    """Refit the decoder's confidence heads on decoded held-out ``chains`` (see the module docstring).

    The report holds, over the chains: ``before`` (the decoder's own heads), ``cross_fit`` (each chain scored by
    heads fitted on the other folds: the estimate for new chains; with ``config.cross_fit >= 2``) with the gains in
    correlation and their bootstrap intervals, and ``fitted`` (the written heads on the chains they were fitted on:
    in-sample, not an estimate)."""
    if len(chains) < 2:
        raise InputError(
            f"calibration needs at least 2 chains with a backbone of >= {MIN_RESIDUES} residues, got {len(chains)}"
        )
    clusters = [c.cluster or c.name for c in chains]
    if config.cross_fit and len(set(clusters)) < config.cross_fit:
        raise InputError(
            f"cross-fitting in {config.cross_fit} folds needs as many clusters of chains; these {len(chains)} chains "
            f"form {len(set(clusters))} (give more chains, fewer folds, or cross_fit=0 for no estimate)"
        )
    truth = [chain_truth(c) for c in chains]
    tm = [t[1] for t in truth]
    report: dict = {
        "config": asdict(config),
        "chains": [c.name for c in chains],
        "clusters": clusters,
        "lddt_ca": [t[0] for t in truth],
        "tm_score": tm,
        "before": _figures(decoder.plddt_head, decoder.pairwise_head, chains, tm),
    }
    n_fits = (config.cross_fit + 1) * len(config.heads)
    with Progress(total=n_fits, desc="calibrate", unit="fit", disable=not progress) as bar:
        if config.cross_fit:
            folds = cluster_folds(clusters, config.cross_fit)
            plddt_rows: list[dict] = [{}] * len(chains)
            ptm = [0.0] * len(chains)
            for f in range(config.cross_fit):
                kept = [i for i, g in enumerate(folds) if g != f]
                heads = _fit_heads(decoder, [chains[i] for i in kept], [tm[i] for i in kept], config)
                bar.update(len(heads), postfix=f"fold {f + 1} of {config.cross_fit}")
                held = [i for i, g in enumerate(folds) if g == f]
                rows = score_plddt(heads.get("plddt", decoder.plddt_head), [chains[i] for i in held])
                p = score_ptm(heads.get("pae", decoder.pairwise_head), [chains[i] for i in held])
                for j, i in enumerate(held):
                    plddt_rows[i], ptm[i] = rows[j], p[j]
            before = report["before"]
            cross: dict = {"plddt": summarize_plddt(plddt_rows), "ptm": summarize_ptm(ptm, tm), "folds": folds}
            cross["plddt_r_per_protein_gain"] = r_difference(
                cross["plddt"]["mean_plddt_per_chain"],
                before["plddt"]["mean_plddt_per_chain"],
                before["plddt"]["lddt_ca_per_chain"],
            )
            cross["ptm_r_gain"] = r_difference(ptm, before["ptm"]["ptm_per_chain"], tm)
            report["cross_fit"] = cross
        heads = _fit_heads(decoder, chains, tm, config)
        bar.update(len(heads), postfix="all chains")
    out = copy.deepcopy(decoder)
    if "plddt" in heads:
        out.plddt_head.load_state_dict(heads["plddt"].state_dict())
    if "pae" in heads:
        out.pairwise_head.load_state_dict(heads["pae"].state_dict())
    # the record the written config keeps (checkpoints.format): a refitted head is calibrated, and trained when its
    # outputs were fitted; a scale of the PAE outputs (SCALE_FITS) leaves them those of its weights, random ones
    # (a stage-1 export's) included
    fitted = [h for h in heads if h != "pae" or config.pair_fit not in SCALE_FITS]
    if out.trained_heads is not None:
        out.trained_heads = tuple(h for h in C.CONFIDENCE_HEADS if h in out.trained_heads or h in fitted)
    out.calibrated_heads = tuple(h for h in C.CONFIDENCE_HEADS if h in (out.calibrated_heads or ()) or h in heads)
    report["fitted"] = _figures(out.plddt_head, out.pairwise_head, chains, tm)
    return CalibrationResult(out, report)


def identity_clusters(records: Sequence[ProteinRecord], threshold: float = 0.4) -> list[str]:
    """Cluster labels of records: their own where every record has one, else greedy sequence-identity clusters."""
    if all(r.cluster for r in records):
        return [r.cluster for r in records]
    return [f"identity{c}" for c in greedy_identity_clusters([r.sequence for r in records], threshold)]


def decode_records(
    encoder: StructureEncoder,
    decoder: StructureDecoder,
    records: Sequence[ProteinRecord],
    *,
    with_sequence: bool = False,
    progress: bool = True,
) -> tuple[list[DecodedChain], list[dict[str, str]]]:
    """Decode every usable record once: (decoded chains, [{"name", "problem"}] of the records left out: complexes
    and chains with fewer than :data:`MIN_RESIDUES` residues with N, CA and C)."""
    usable, skipped = [], []
    for r in records:
        if len(r.chain_ids) != 1:
            skipped.append({"name": r.name, "problem": f"a complex of {len(r.chain_ids)} chains (calibrate chains)"})
        elif int(backbone_mask(r).sum()) < MIN_RESIDUES:
            skipped.append({"name": r.name, "problem": f"fewer than {MIN_RESIDUES} residues with N, CA and C"})
        else:
            usable.append(r)
    clusters = identity_clusters(usable) if usable else []
    chains = []
    with Progress(total=len(usable), desc="decode", unit="chain", disable=not progress) as bar:
        for r, cluster in zip(usable, clusters, strict=True):
            chains.append(decode_chain(encoder, decoder, r, cluster=cluster, with_sequence=with_sequence))
            bar.update()
    return chains, skipped


def check_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a path, if a calibrated tokenizer may be written there (it does not exist or is empty)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty directory; choose a new output directory")
    return out


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an undefined r: fewer than 3 chains, a constant side) as None, so the
    report is JSON that every reader takes (Python's writer would put a bare ``NaN`` there)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_calibrated(
    encoder: StructureEncoder, decoder: StructureDecoder, out_dir: str | os.PathLike[str], report: dict
) -> Path:
    """Write a tokenizer directory (``structure_encoder/``, ``structure_decoder/`` and ``calibration.json``) at
    ``out_dir``, which must not exist or be empty. Written beside it first and renamed into place, so a stopped
    run leaves nothing half-written there."""
    out = check_output_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_pretrained(encoder, encoder.config, tmp / ENCODER_DIR, model_type="structure_encoder")
        save_pretrained(decoder, decoder.config, tmp / DECODER_DIR, model_type="structure_decoder")
        atomic_write_json(tmp / REPORT_FILE, _json_safe(report))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        note_moved(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        note_removed(tmp)
    return out


def _gain(gain: dict) -> str:
    if not math.isfinite(gain["difference"]):  # r undefined before or after: nothing was measured
        return "undefined (r needs 3 or more chains whose figures differ)"
    return f"{gain['difference']:+.2f} ({gain['low']:+.2f} .. {gain['high']:+.2f})"


def summary_lines(report: dict) -> list[str]:
    """What a calibration changed, in a few lines for a terminal."""

    def r(value: float) -> str:  # a correlation of fewer than 3 chains (or of equal figures) is undefined, not nan
        return f"{value:.2f}" if math.isfinite(value) else "undefined"

    def line(label: str, fig: dict) -> str:
        p, t = fig["plddt"], fig["ptm"]
        return (
            f"{label:30s} pLDDT r {r(p['r_per_residue'])} per residue, {r(p['r_per_protein'])} per protein; "
            f"mean pLDDT {p['mean_plddt']:.2f} (true lDDT-CA {p['mean_lddt_ca']:.2f}) | pTM r {r(t['ptm_vs_tm_r'])}; "
            f"mean pTM {t['mean_ptm']:.2f} (true TM-score {t['mean_tm']:.2f})"
        )

    lines = [line("before", report["before"])]
    if "cross_fit" in report:
        lines.append(line(f"refitted, {report['config']['cross_fit']}-fold cross-fit", report["cross_fit"]))
        g, h = report["cross_fit"]["plddt_r_per_protein_gain"], report["cross_fit"]["ptm_r_gain"]
        gains = {"plddt": ("pLDDT r per protein", g), "pae": ("pTM r", h)}
        refitted = report["config"]["heads"]  # a head not refitted has no gain to report
        lines.append(
            f"{'':30s} gain in "
            + ", in ".join(f"{gains[x][0]} {_gain(gains[x][1])}" for x in HEADS if x in refitted)
            + " (95 % bootstrap over chains)"
        )
        worse = [x for x in refitted if gains[x][1]["high"] < 0]
        if worse:
            kept = [x for x in refitted if x not in worse]
            advice = f"refit only {','.join(kept)} (--heads {','.join(kept)})" if kept else "keep the original heads"
            lines.append(
                f"{'':30s} note: refitted, the {' and '.join(gains[x][0].split()[0] for x in worse)} "
                f"{'heads rank' if len(worse) > 1 else 'head ranks'} these chains worse than before (95 % interval "
                f"below 0): {advice}"
            )
    lines.append(line("written heads, in-sample", report["fitted"]))
    return lines
