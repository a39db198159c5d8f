"""Batched iterative decoding with no host synchronisation inside the step loop (spec §10.3; STYLE 9).

Everything that depends only on the prompts and their configs is planned on the host and copied to the device
before the first forward pass: the positions still masked after each step, the temperatures, top-p, the valid ids
and the strategy of every prompt, and the *phases* of the run - the step ranges during which the set of unfinished
prompts is constant. Between phases finished prompts leave the batch (their tokens no longer change) and the batch
is trimmed to its longest remaining prompt; both are exact because padding is masked in attention.

Inside a step all choices are tensor ops: candidates are the masked positions, the per-row number to commit is
``still_masked - keep_t``, positions are ranked by score with a stable sort, and tokens are drawn by the exponential
race from noise that each prompt draws from its own generator over its own length. A prompt therefore gets the same
tokens whatever batch it is in and whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from openesm3.generation import sampling as S
from openesm3.generation.decode_job import DecodeBatch, DecodeJob, LogitsModel, Semantics, is_mask, model_call
from openesm3.generation.protein_tensor import TOKEN_TRACKS, ProteinBatch

STRATEGIES = ("random", "entropy", "max_logit")


@dataclass
class _Group:
    """The rows of a phase that generate the same track, with their per-step values already on the device."""

    track: str
    jobs: list[DecodeJob]
    rows: Tensor | None  # [b] batch rows; None = the whole batch
    keep: Tensor  # [S, b] int64: positions still masked after each step of the phase
    temperature: Tensor  # [S, b] float32
    temps_host: list[list[float]]  # [S][b], to skip drawing noise for greedy rows
    top_p: Tensor | None  # [b, 1] float32, None when no row filters
    valid: Tensor  # [b, 1, V] bool ([b, 1, 1, V] for function)
    strategies: dict[str, Tensor]  # strategy -> [b, 1] bool, for the strategies present
    function_entropy_ties: bool = False  # the reference's collapsed function entropy (Semantics)


@dataclass
class _Phase:
    """Steps ``start .. stop - 1``, during which the batch holds ``jobs`` and the active rows are in ``groups``."""

    start: int
    stop: int
    jobs: list[DecodeJob]
    keep_rows: Tensor | None  # rows of the previous phase's batch that stay; None = same batch
    leaving: list[int]  # rows of the previous phase's batch that leave
    length: int  # padded length during the phase
    groups: list[_Group]


def decode_batched(
    model: LogitsModel,
    jobs: list[DecodeJob],
    semantics: Semantics,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    on_step: Callable[[], Any],
) -> None:
    """Decode ``jobs`` together; fills each job's ``result`` (or ``error``). One host sync, after the last step."""
    for job in jobs:
        job.generator = torch.Generator(device=device).manual_seed(job.seed)
    phases = _plan(jobs, semantics, device)
    state = DecodeBatch.of(jobs, device, semantics.attend_to_padding)
    failed = torch.zeros(len(jobs), dtype=torch.bool, device=device)
    with torch.inference_mode():
        for phase in phases:
            if phase.keep_rows is not None:
                _harvest(state, failed, phase.leaving)
                state, failed = _shrink(state, failed, phase, semantics.attend_to_padding)
            for t in range(phase.start, phase.stop):
                out = model_call(model, state.inputs, device, autocast_dtype)
                for group in phase.groups:
                    failed = _step(state, failed, out, group, t - phase.start, semantics)
                on_step()
        _harvest(state, failed, list(range(len(state.jobs))))
    flags = torch.stack([j.failed for j in jobs if j.failed is not None]).tolist()  # the one host sync
    for job, bad in zip(jobs, flags):
        job.failed = None
        job.generator = None
        if bad:
            job.fail(None)


# ---------------------------------------------------------------------------------------------------------------
# Planning (host, before the loop)
# ---------------------------------------------------------------------------------------------------------------
def _plan(jobs: list[DecodeJob], semantics: Semantics, device: torch.device) -> list[_Phase]:
    phases: list[_Phase] = []
    batch_jobs = list(jobs)
    start = 0
    for stop in sorted({j.num_steps for j in jobs}):
        active = [j for j in jobs if j.num_steps > start]
        keep_rows, leaving = None, []
        if not semantics.attend_to_padding and len(active) < len(batch_jobs):
            ids = {id(j) for j in active}
            kept = [r for r, j in enumerate(batch_jobs) if id(j) in ids]
            leaving = [r for r, j in enumerate(batch_jobs) if id(j) not in ids]
            keep_rows = torch.tensor(kept, device=device)
            batch_jobs = active
        length = max(j.length for j in batch_jobs)
        rows_of = {id(j): r for r, j in enumerate(batch_jobs)}
        groups = []
        for track in dict.fromkeys(j.track for j in active):
            members = [j for j in active if j.track == track]
            rows = [rows_of[id(j)] for j in members]
            groups.append(_group(track, members, rows, len(batch_jobs), start, stop, semantics, device))
        phases.append(_Phase(start, stop, batch_jobs, keep_rows, leaving, length, groups))
        start = stop
    return phases


def _group(
    track: str,
    jobs: list[DecodeJob],
    rows: list[int],
    batch_size: int,
    start: int,
    stop: int,
    semantics: Semantics,
    device: torch.device,
) -> _Group:
    steps = range(start, stop)
    temps = [[j.temperatures[t] for j in jobs] for t in steps]
    top_p = [j.config.top_p for j in jobs]
    restrict = semantics.restrict_function if track == "function" else True
    valid = torch.stack([S.valid_id_mask(track, j.config.invalid_ids, restrict=restrict) for j in jobs])[:, None]
    if track == "function":
        valid = valid[:, :, None]
    strategies = {
        name: torch.tensor([j.config.strategy == name for j in jobs], device=device)[:, None]
        for name in STRATEGIES
        if any(j.config.strategy == name for j in jobs)
    }
    return _Group(
        track=track,
        jobs=jobs,
        rows=None if rows == list(range(batch_size)) else torch.tensor(rows, device=device),
        keep=torch.tensor([[j.keep[t] for j in jobs] for t in steps], device=device),
        temperature=torch.tensor(temps, dtype=torch.float32, device=device),
        temps_host=temps,
        top_p=torch.tensor(top_p, dtype=torch.float32, device=device)[:, None] if min(top_p) < 1 else None,
        valid=valid.to(device),
        strategies=strategies,
        function_entropy_ties=semantics.function_entropy_ties,
    )


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------
def _harvest(state: DecodeBatch, failed: Tensor, rows: list[int]) -> None:
    """Store the final target track and failure flag of ``rows`` on their jobs."""
    for b in rows:
        job = state.jobs[b]
        job.result = getattr(state.batch, job.track)[b, : job.length].clone()
        job.failed = failed[b].clone()


def _shrink(state: DecodeBatch, failed: Tensor, phase: _Phase, attend_to_padding: bool) -> tuple[DecodeBatch, Tensor]:
    """The batch restricted to the rows that stay, trimmed to the phase's length (exact: padding is masked)."""
    assert phase.keep_rows is not None
    idx, length = phase.keep_rows, phase.length
    fields = {
        name: getattr(state.batch, name).index_select(0, idx)[:, :length]
        for name in (*TOKEN_TRACKS, "coordinates", "padding")
    }
    batch = ProteinBatch(**fields, lengths=state.batch.lengths.index_select(0, idx))
    return DecodeBatch.build(phase.jobs, batch, attend_to_padding), failed.index_select(0, idx)


def _step(state: DecodeBatch, failed: Tensor, out: Any, g: _Group, s: int, semantics: Semantics) -> Tensor:
    """Step ``s`` of the phase for the rows of group ``g``: sample, choose positions, commit (in place)."""
    spec = S.TRACK_SPECS[g.track]

    def take(x: Tensor) -> Tensor:
        return x if g.rows is None else x.index_select(0, g.rows)

    tokens_all = getattr(state.batch, g.track)
    tokens = take(tokens_all)
    logits = take(getattr(out, spec.logits_field)).float()
    candidates = is_mask(g.track, tokens) & take(state.inner)
    still = candidates.sum(-1)
    count = (still - g.keep[s]).clamp_min(0)
    if g.rows is None:
        failed = failed | (still == 0)
    else:
        failed = failed.index_copy(0, g.rows, failed.index_select(0, g.rows) | (still == 0))

    temperature = g.temperature[s][:, None]  # [b, 1]
    if g.track == "function":
        new, log_p = S.decode_function_logits(logits, temperature, top_p=g.top_p, valid=g.valid)
    else:
        masked = S.mask_logits(logits, g.valid, g.top_p, invalid_first=semantics.invalid_first)
        if max(g.temps_host[s]) == 0:
            new = masked.argmax(-1)
        else:
            new = S.sample_logits(masked, temperature, noise=_noise(g, s, tokens.shape[1], spec.width))
        log_p = masked.log_softmax(-1) if ("entropy" in g.strategies or "max_logit" in g.strategies) else masked
    chosen = S.select_positions(_scores(g, log_p, tokens.shape[1]), candidates, count)
    if g.track == "function":
        chosen = chosen[..., None]
    updated = torch.where(chosen, new, tokens)
    if g.rows is None:
        tokens_all.copy_(updated)
    else:
        tokens_all.index_copy_(0, g.rows, updated)
    return failed


def _noise(g: _Group, s: int, length: int, width: int) -> Tensor:
    """[b, L, V] Exp(1) draws; row b from its prompt's own stream over its own length, greedy rows draw nothing."""
    device = g.keep.device
    noise = torch.ones(len(g.jobs), length, width, device=device)
    for b, (job, temp) in enumerate(zip(g.jobs, g.temps_host[s])):
        if temp > 0:
            noise[b, : job.length] = torch.empty(job.length, width, device=device).exponential_(generator=job.generator)
    return noise


def _scores(g: _Group, log_p: Tensor, length: int) -> Tensor:
    """[b, L] position scores, lowest committed first: the entropy, minus the top log-probability (function:
    summed over the 8 depths), or a uniform draw from the prompt's own stream (random order)."""
    device = g.keep.device
    scores = torch.zeros(len(g.jobs), length, device=device)
    if "entropy" in g.strategies and not (g.track == "function" and g.function_entropy_ties):
        entropy = S.categorical_entropy(log_p)
        entropy = entropy.sum(-1) if g.track == "function" else entropy
        scores = torch.where(g.strategies["entropy"], entropy, scores)
    # (reference function entropy: every candidate ties, left at 0 here; the stable sort then takes the lowest
    # positions first, which is not topk's tie order - the sequential path reproduces that one.)
    if "max_logit" in g.strategies:
        top = log_p.max(-1).values
        top = top.sum(-1) if g.track == "function" else top
        scores = torch.where(g.strategies["max_logit"], -top, scores)
    if "random" in g.strategies:
        draws = torch.zeros(len(g.jobs), length, device=device)
        for b, job in enumerate(g.jobs):
            if job.config.strategy == "random":
                draws[b, : job.length] = torch.rand(job.length, device=device, generator=job.generator)
        scores = torch.where(g.strategies["random"], draws, scores)
    return scores
