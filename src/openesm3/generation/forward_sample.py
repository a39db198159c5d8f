"""One forward pass and one sampling pass over any tracks of one prompt (spec §10.4 ``forward_and_sample``).

The single-step counterpart of :func:`~openesm3.generation.iterative.generate`, for scoring and one-shot prediction:
missing tracks get the model's defaults, one forward pass runs, and every track named in ``sampling`` is sampled
at its positions to fill (masked positions by default, never BOS/EOS). For each sampled track it reports, like
the reference, the sampled tokens and, at T = 1 on the masked distribution (invalid ids removed, top-p applied),
the log-probability and probability of the sampled token (0 elsewhere), the per-position entropy, the top
probability and optionally the top-k log-probabilities. SASA can be decoded to floats (expected value over the
bins), and sampling the function track also yields residue annotations (top 16 with sigmoid >= 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from openesm3.errors import InputError
from openesm3.generation import sampling as S
from openesm3.generation.decode_job import LogitsModel, is_mask
from openesm3.generation.iterative import check_prompt_tokens, decoding_device
from openesm3.generation.protein_tensor import ProteinTensor, model_inputs, stack
from openesm3.utils.checks import check_batch_size, check_generator

MAX_TOPK_LOGPROBS = 32  # the reference's limit for topk_logprobs


@dataclass(frozen=True, kw_only=True)
class TrackSampling:
    """How to sample one track (the reference's ``SamplingTrackConfig``).

    Attributes:
        temperature: 0 = argmax.
        top_p: nucleus threshold in (0, 1].
        only_sample_masked_tokens: sample only where the track holds its mask id (else every position but BOS/EOS
            and positions holding an id of ``invalid_ids``).
        invalid_ids: ids never emitted (and, as in the reference, positions already holding one are not sampled).
        topk_logprobs: also return the k largest log-probabilities per position (0..32).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    only_sample_masked_tokens: bool = True
    invalid_ids: tuple[int, ...] = ()
    topk_logprobs: int = 0

    def __post_init__(self) -> None:
        numbers = (self.temperature, self.top_p)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers) or not (
            math.isfinite(self.temperature) and self.temperature >= 0 and 0 < self.top_p <= 1
        ):
            raise InputError(f"TrackSampling: need a finite temperature >= 0 and 0 < top_p <= 1, got {self}")
        if (
            isinstance(self.topk_logprobs, bool)
            or not isinstance(self.topk_logprobs, int)
            or not 0 <= self.topk_logprobs <= MAX_TOPK_LOGPROBS
        ):
            raise InputError(
                f"TrackSampling.topk_logprobs must lie in 0..{MAX_TOPK_LOGPROBS}, got {self.topk_logprobs}"
            )
        object.__setattr__(self, "invalid_ids", tuple(sorted(set(self.invalid_ids))))


@dataclass
class TrackSample:
    """Sampling outcome of one track; per-position tensors have length L + 2.

    ``tokens`` [L+2] ([L+2, 8] for function) hold the prompt's tokens with the sampled positions replaced;
    ``sampled`` [L+2] marks them. ``logprob`` / ``prob`` are those of the token at sampled positions (per depth
    for function) and 0 elsewhere (the reference reports prob = exp(0) = 1 there); ``entropy`` is per position
    (summed over depths for function); ``top_prob`` is the largest probability; ``topk_logprobs`` /
    ``topk_tokens`` [L+2(, 8), k] are given if asked for.
    """

    tokens: Tensor
    sampled: Tensor
    logprob: Tensor
    prob: Tensor
    entropy: Tensor
    top_prob: Tensor
    topk_logprobs: Tensor | None = None
    topk_tokens: Tensor | None = None


@dataclass
class ForwardSample:
    """Outputs of :func:`forward_and_sample`.

    Attributes:
        protein: the prompt (missing tracks filled with defaults) with every sampled track written.
        tracks: per sampled track, its :class:`TrackSample` (SASA only when not decoded to floats).
        sasa_values: [L+2] float32 SASA in square Angstrom at the sampled positions (+inf elsewhere and where the
            open top bin is the most likely), when SASA was requested with ``decode_sasa=True``.
        residue_annotations: [L+2, 16] residue annotation ids, when the function track was sampled.
        embeddings: [L+2, D] the model's pre-final-norm hidden states.
    """

    protein: ProteinTensor
    tracks: dict[str, TrackSample]
    sasa_values: Tensor | None
    residue_annotations: Tensor | None
    embeddings: Tensor | None


def forward_and_sample(
    model: LogitsModel,
    prompt: ProteinTensor,
    sampling: Mapping[str, TrackSampling],
    *,
    generator: torch.Generator | None = None,
    decode_sasa: bool = True,
    device: torch.device | str | None = None,
) -> ForwardSample:
    """One forward pass of ``prompt`` and one sample of each track in ``sampling`` (spec §10.4).

    Args:
        model: see :class:`~openesm3.generation.decode_job.LogitsModel`.
        prompt: one :class:`ProteinTensor` (BOS/EOS included).
        sampling: track name (sequence, structure, secondary_structure, sasa, function) -> :class:`TrackSampling`.
        generator: random stream for the draws (``torch.multinomial``); None draws from torch's global RNG, as the
            reference does: pass one to leave the global state alone and to make the draws reproducible. It must be
            a generator of the device's type (``torch.Generator(device="cuda")`` for a model on CUDA).
        decode_sasa: report SASA as floats (the reference's default) rather than sampled tokens.
        device: where to run; default the model's device (the CPU for a model without parameters). Another device
            than the model's is an :class:`InputError`.
    """
    if not isinstance(prompt, ProteinTensor):
        raise InputError(f"forward_and_sample takes one ProteinTensor, got {type(prompt).__name__}")
    check_prompt_tokens(prompt)
    unknown = sorted(set(sampling) - set(S.TRACK_SPECS))
    if unknown:
        raise InputError(f"cannot sample track(s) {unknown}; known: {sorted(S.TRACK_SPECS)}")
    for track, cfg in sampling.items():
        if not isinstance(cfg, TrackSampling):
            raise InputError(f"sampling[{track!r}]: expected a TrackSampling, got {type(cfg).__name__}")
        width = S.TRACK_SPECS[track].width
        outside = [i for i in cfg.invalid_ids if not 0 <= i < width]
        if outside:
            raise InputError(f"sampling[{track!r}]: invalid_ids {outside} are not ids of the track (0..{width - 1})")
        if not S.valid_id_mask(track, cfg.invalid_ids).any():
            raise InputError(f"sampling[{track!r}]: invalid_ids {list(cfg.invalid_ids)} leave no token to sample")
    device = decoding_device(model, device)
    check_generator(generator, device)
    filled = prompt.filled(device=device)
    batch = stack([filled], device=device)
    inputs: dict[str, Any] = dict(model_inputs(batch))
    inputs["attend_to_padding"] = False
    inputs["validate"] = True
    with torch.inference_mode():
        out = model(**inputs)
    protein = filled.clone()
    tracks: dict[str, TrackSample] = {}
    sasa_values = residue = None
    for track, cfg in sampling.items():
        spec = S.TRACK_SPECS[track]
        logits = getattr(out, spec.logits_field)[0].float()
        tokens = getattr(filled, track)
        if track == "sasa" and decode_sasa:
            where = _where_to_sample(track, tokens, cfg)
            valid = S.valid_id_mask(track, cfg.invalid_ids).to(logits.device)
            sasa_values = S.sasa_values_from_logits(logits, valid).masked_fill(~where, float("inf"))
            continue
        sample = _sample_track(track, logits, tokens, cfg, generator)
        tracks[track] = sample
        setattr(protein, track, sample.tokens)
        if track == "function":
            residue, _ = S.residue_annotations_from_logits(out.residue_logits[0].float())
    embeddings = getattr(out, "embeddings", None)
    return ForwardSample(protein, tracks, sasa_values, residue, None if embeddings is None else embeddings[0])


def _where_to_sample(track: str, tokens: Tensor, cfg: TrackSampling) -> Tensor:
    """[L+2] bool: never BOS/EOS; not where the token is an invalid id; only masks if asked (spec §10.4)."""
    mask_id = S.TRACK_SPECS[track].mask_id
    where = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    where[0] = where[-1] = False
    holds_invalid = [i for i in cfg.invalid_ids if i != mask_id]
    if holds_invalid and track != "function":
        where &= ~torch.isin(tokens, torch.tensor(holds_invalid, device=tokens.device))
    if cfg.only_sample_masked_tokens:
        where &= is_mask(track, tokens)
    return where


def _sample_track(
    track: str, logits: Tensor, tokens: Tensor, cfg: TrackSampling, generator: torch.Generator | None
) -> TrackSample:
    where = _where_to_sample(track, tokens, cfg)
    temperature = torch.tensor(cfg.temperature, dtype=torch.float32, device=logits.device)
    top_p = torch.tensor(cfg.top_p, device=logits.device) if cfg.top_p < 1 else None
    if track == "function":
        valid = S.valid_id_mask(track, cfg.invalid_ids).to(logits.device)
        new, log_p = S.decode_function_logits(logits, temperature, top_p=top_p, valid=valid)
        # Non-sampled positions: a point mass on their current token (the reference's "null" distribution).
        null = torch.full_like(log_p, float("-inf")).scatter(-1, tokens[..., None], 0.0)
        log_p = torch.where(where[:, None, None], log_p, null)
        entropy = S.categorical_entropy(log_p).sum(-1)
        out_tokens = torch.where(where[:, None], new, tokens)
    else:
        valid = S.valid_id_mask(track, cfg.invalid_ids).to(logits.device)
        masked = S.mask_logits(logits, valid, top_p)
        new = masked.argmax(-1) if cfg.temperature == 0 else S.sample_logits(masked, temperature, generator=generator)
        log_p = masked.log_softmax(-1)
        entropy = S.categorical_entropy(log_p)
        out_tokens = torch.where(where, new, tokens)
    # Specials outside the logits (e.g. structure BOS 4098) only occur at positions that were not sampled.
    chosen = torch.gather(log_p, -1, out_tokens.clamp(max=log_p.shape[-1] - 1)[..., None])[..., 0]
    sampled_where = where[:, None] if track == "function" else where
    logprob = torch.where(sampled_where, chosen, torch.zeros_like(chosen))
    topk_lp = topk_ids = None
    if cfg.topk_logprobs:
        topk_lp, topk_ids = torch.topk(log_p, cfg.topk_logprobs, dim=-1)
    return TrackSample(
        tokens=out_tokens, sampled=where, logprob=logprob, prob=logprob.exp() * sampled_where, entropy=entropy,
        top_prob=log_p.exp().max(-1).values, topk_logprobs=topk_lp, topk_tokens=topk_ids,
    )  # fmt: skip


def log_probs(
    model: LogitsModel,
    prompts: Sequence[ProteinTensor],
    track: str,
    *,
    batch_size: int = 8,
    restrict_to_valid: bool = True,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Per-position log-probabilities of ``track`` for each prompt, T = 1 (for scoring given tokens).

    Prompts are batched by ``batch_size`` with padding masked, so each result equals the prompt's alone.

    Args:
        track: sequence, structure, secondary_structure, sasa or function.
        restrict_to_valid: renormalise over the ids the track may emit (spec §10.4 valid ids) rather than the
            whole head.

    Returns:
        One float32 tensor per prompt, [L+2, V] ([L+2, 8, 260] for function).
    """
    if track not in S.TRACK_SPECS:
        raise InputError(f"cannot score track {track!r}; known: {sorted(S.TRACK_SPECS)}")
    if isinstance(prompts, ProteinTensor):
        raise InputError("prompts must be a list of ProteinTensor; for one prompt pass [prompt]")
    check_batch_size(batch_size)
    device = decoding_device(model, device)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, ProteinTensor):
            raise InputError(f"prompt {i}: expected a ProteinTensor, got {type(prompt).__name__}")
        try:
            check_prompt_tokens(prompt)
        except InputError as exc:
            raise InputError(f"prompt {i}: {exc}") from None
    spec = S.TRACK_SPECS[track]
    out: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        batch = stack(chunk, device=device)
        inputs: dict[str, Any] = dict(model_inputs(batch))
        inputs["attend_to_padding"] = False
        inputs["validate"] = True
        with torch.inference_mode():
            logits = getattr(model(**inputs), spec.logits_field).float()
        if restrict_to_valid:
            logits = logits.masked_fill(~S.valid_id_mask(track).to(logits.device), float("-inf"))
        lp = logits.log_softmax(-1)
        out.extend(lp[i, : len(p)] for i, p in enumerate(chunk))
    return out
