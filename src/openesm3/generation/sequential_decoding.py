"""Sequential iterative decoding: the reference's per-prompt loop and random-draw order (spec §10.3).

After each batched forward pass, prompts are sampled one at a time in input order, each on its full padded row:
every position is sampled (``torch.multinomial`` over the row, nothing drawn at T = 0), then the positions to commit
are chosen (``topk`` of the entropy / score, or a ``randperm`` of the candidates for the random order), all from one
generator shared by the prompts. With the reference's semantics and batch this reproduces ``ESM3.batch_generate``
draw for draw on CPU. It is the plain path the batched loop is tested against, not a fast path: it reads counts back
from the device at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from openesm3.generation import sampling as S
from openesm3.generation.decode_job import DecodeBatch, DecodeJob, LogitsModel, Semantics, is_mask, model_call


def decode_sequential(
    model: LogitsModel,
    jobs: list[DecodeJob],
    semantics: Semantics,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    generator: torch.Generator,
    on_step: Callable[[], Any],
) -> None:
    """Decode ``jobs`` as one batch, prompt by prompt; fills each job's ``result`` (or ``error``)."""
    state = DecodeBatch.of(jobs, device, semantics.attend_to_padding)
    failed: set[int] = set()
    with torch.inference_mode():
        for t in range(max(j.num_steps for j in jobs)):
            out = model_call(model, state.inputs, device, autocast_dtype)
            for b, job in enumerate(jobs):
                if b in failed or t >= job.num_steps:
                    continue
                if not _step_one(state, out, b, job, t, semantics, generator):
                    failed.add(b)
                    job.fail(t)
            on_step()
    for b, job in enumerate(jobs):
        if b not in failed:
            job.result = getattr(state.batch, job.track)[b, : job.length].clone()


def _step_one(
    state: DecodeBatch, out: Any, b: int, job: DecodeJob, t: int, semantics: Semantics, generator: torch.Generator
) -> bool:
    """One step of prompt ``b`` on its padded row; False if the row has no masked position (error 500)."""
    track, cfg = job.track, job.config
    spec = S.TRACK_SPECS[track]
    device = state.inner.device
    tokens_all = getattr(state.batch, track)
    tokens = tokens_all[b : b + 1]
    logits = getattr(out, spec.logits_field)[b : b + 1].float()
    temp = job.temperatures[t]
    temperature = torch.tensor(temp, dtype=torch.float32, device=device)
    top_p = torch.tensor(cfg.top_p, dtype=torch.float32, device=device) if cfg.top_p < 1 else None

    if track == "function":
        valid = S.valid_id_mask(track, cfg.invalid_ids, restrict=semantics.restrict_function).to(device)
        new, log_p = S.decode_function_logits(
            logits, temperature, top_p=top_p, valid=valid if semantics.restrict_function else None
        )
    else:
        valid = S.valid_id_mask(track, cfg.invalid_ids).to(device)
        masked = S.mask_logits(logits, valid, top_p, invalid_first=semantics.invalid_first)
        new = masked.argmax(-1) if temp == 0 else S.sample_logits(masked, temperature, generator=generator)
        log_p = masked.log_softmax(-1)

    # Positions 1 .. len-2 of the prompt itself. (The reference checks its whole padded row, where the padding of
    # SS8 / SASA / function reads as masked: in a batch with longer prompts a prompt with nothing left to fill
    # would then run on instead of failing as it does alone; that quirk is not reproduced, docs/generation.md #7.)
    positions = torch.arange(tokens.shape[1], device=device)
    candidates = is_mask(track, tokens) & (positions >= 1) & (positions < job.length - 1)
    if not bool(candidates.any()):
        return False
    count = max(int(candidates.sum()) - job.keep[t], 0)

    if cfg.strategy == "random":
        where = candidates.nonzero(as_tuple=True)[1]
        pick = where[torch.randperm(len(where), generator=generator, device=device)][:count]
        chosen = torch.zeros_like(candidates)
        chosen[:, pick] = True
    else:
        if cfg.strategy == "entropy":
            score = S.categorical_entropy(log_p)
        else:
            score = -log_p.max(-1).values
        if track == "function":
            score = score.sum(-1)
            if cfg.strategy == "entropy" and semantics.function_entropy_ties:
                # The reference reduces the entropy to one number per prompt, broadcast over the positions: all
                # candidates tie (the value does not matter, only that it is below the fill value).
                score = torch.zeros_like(score)
        score = score.masked_fill(~candidates, S.FLOAT32_MAX)
        pick = score.topk(count, dim=-1, largest=False).indices
        chosen = torch.zeros_like(candidates).scatter(1, pick, True)
    chosen = chosen & candidates
    if track == "function":
        chosen = chosen[..., None]
    tokens_all[b : b + 1] = torch.where(chosen, new, tokens)
    return True
