"""Turning logits into tokens: the one sampling seam of generation (spec §10.4, §13.11; paper A.1.10).

Every function here is a pure tensor function over any leading batch shape, with per-row options given as tensors
(temperature, top-p, valid ids), so the batched decoder samples all prompts of a batch in one call without host
synchronisation, and the sequential reference-compatible decoder calls the same functions one prompt at a time.

Order of operations for the integer tracks (sequence, structure, SS8, SASA):

1. invalid ids -> -inf and top-p -> float32-min (our order: invalid first, so the nucleus is taken over the
   tokens that may be emitted; ``invalid_first=False`` is the reference's order, whose nucleus also counts the
   probability of ids it can never emit);
2. the entropy used to order positions is that of this masked distribution at T = 1 (the reference computes it
   after masking its logits in place, spec §13.11), with ``torch.distributions.Categorical``'s arithmetic;
3. T == 0 -> argmax; otherwise a sample of softmax(logits / T), drawn either by ``torch.multinomial`` with a
   generator (reference-compatible stream) or by the exponential race argmax(p / E), E ~ Exp(1), with noise the
   caller drew (batched, one stream per prompt).

The function track is decoded by argmax per depth after the "<none>" decision (spec §10.4), not sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from openesm3 import constants as C

FLOAT32_MIN = torch.finfo(torch.float32).min
FLOAT32_MAX = torch.finfo(torch.float32).max
FLOAT32_TINY = torch.finfo(torch.float32).tiny


@dataclass(frozen=True)
class TrackSpec:
    """What the decoder needs to know about one generatable track.

    Attributes:
        name: the :class:`~openesm3.generation.protein_tensor.ProteinTensor` field.
        logits_field: the matching field of the model output (``ESM3Output``).
        mask_id: the id of a position still to generate (ss8/sasa/function use ``<pad>`` = 0 as mask).
        width: logits width (vocabulary size of the head).
        sampleable: ids the reference's sampler may emit (all ids minus specials, spec §10.4).
    """

    name: str
    logits_field: str
    mask_id: int
    width: int
    sampleable: tuple[int, ...]


TRACK_SPECS: dict[str, TrackSpec] = {
    "sequence": TrackSpec("sequence", "sequence_logits", C.SEQUENCE_MASK, C.SEQUENCE_EMBED_DIM,
                          C.SEQUENCE_SAMPLEABLE_IDS),
    "structure": TrackSpec("structure", "structure_logits", C.STRUCTURE_MASK, C.STRUCTURE_N_CODES,
                           C.STRUCTURE_SAMPLEABLE_IDS),
    "secondary_structure": TrackSpec("secondary_structure", "secondary_structure_logits", C.SS8_PAD,
                                     C.SS8_VOCAB_SIZE, C.SS8_SAMPLEABLE_IDS),
    "sasa": TrackSpec("sasa", "sasa_logits", C.SASA_PAD, C.SASA_VOCAB_SIZE, C.SASA_SAMPLEABLE_IDS),
    # The reference decodes function by an unrestricted argmax; we exclude <pad>/<motif>/<unk> by default.
    "function": TrackSpec("function", "function_logits", C.FUNCTION_PAD, C.FUNCTION_VOCAB_SIZE,
                          tuple(i for i in range(C.FUNCTION_VOCAB_SIZE) if i not in C.FUNCTION_SPECIAL_IDS)),
}  # fmt: skip


def valid_id_mask(track: str, invalid_ids: tuple[int, ...] = (), *, restrict: bool = True) -> Tensor:
    """[V] bool, True for ids that may be emitted on ``track``: its sampleable ids minus ``invalid_ids``.

    ``restrict=False`` allows every id (the reference's function decoding, which ignores ``invalid_ids``).
    Returns a fresh CPU tensor (built once per argument set and cached).
    """
    return _valid_id_mask(track, tuple(invalid_ids), restrict).clone()


@lru_cache(maxsize=256)
def _valid_id_mask(track: str, invalid_ids: tuple[int, ...], restrict: bool) -> Tensor:
    spec = TRACK_SPECS[track]
    mask = torch.zeros(spec.width, dtype=torch.bool)
    if not restrict:
        return ~mask
    mask[list(spec.sampleable)] = True
    bad = [i for i in invalid_ids if i < spec.width]
    if bad:
        mask[bad] = False
    return mask


def top_p_filter(logits: Tensor, top_p: Tensor) -> Tensor:
    """Nucleus filtering: logits outside the top-p mass become float32-min (spec §10.4).

    Sort descending, take the cumulative softmax, keep tokens with cum <= top_p and always the first. Rows whose
    ``top_p`` is >= 1 are left untouched (the reference skips filtering there; cum can exceed 1 by rounding).

    Args:
        logits: [..., V] float32 (not modified).
        top_p: broadcastable to ``logits[..., 0]``.
    """
    top_p = top_p.to(logits.dtype).expand(logits.shape[:-1])
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
    keep_sorted = sorted_logits.softmax(-1).cumsum(-1) <= top_p[..., None]
    # Always keep the most likely token (built without a scalar write, which would copy host -> device).
    keep_sorted = torch.cat([torch.ones_like(keep_sorted[..., :1]), keep_sorted[..., 1:]], dim=-1)
    keep = torch.zeros_like(keep_sorted).scatter(-1, sorted_idx, keep_sorted)
    keep = keep | (top_p >= 1)[..., None]
    return logits.masked_fill(~keep, FLOAT32_MIN)


def mask_logits(logits: Tensor, valid: Tensor, top_p: Tensor | None = None, *, invalid_first: bool = True) -> Tensor:
    """Invalid ids -> -inf and (if ``top_p`` is given) top-p -> float32-min, in our order or the reference's.

    Args:
        logits: [..., V] float32.
        valid: [V] or broadcastable to ``logits`` (e.g. [B, 1, V] per prompt) bool.
        top_p: None (no nucleus filtering) or broadcastable to ``logits[..., 0]``.
        invalid_first: True (ours) masks invalid ids before the nucleus is taken; False is the reference's
            order (spec §10.4: top-p over all ids, then invalid ids set to -inf).
    """
    if top_p is not None and not invalid_first:
        logits = top_p_filter(logits, top_p)
    logits = logits.masked_fill(~valid, float("-inf"))
    if top_p is not None and invalid_first:
        # The filter writes float32-min outside the nucleus; invalid ids stay at -inf.
        logits = top_p_filter(logits, top_p).masked_fill(~valid, float("-inf"))
    return logits


def categorical_entropy(log_probs: Tensor) -> Tensor:
    """Entropy [...] of the categorical over the last dim, with ``Categorical(logits=log_probs).entropy()``'s
    exact arithmetic (renormalise, softmax, clamp -inf to float min) and without its validation syncs."""
    logits = log_probs - log_probs.logsumexp(dim=-1, keepdim=True)
    probs = F.softmax(logits, dim=-1)
    return -(logits.clamp(min=torch.finfo(logits.dtype).min) * probs).sum(-1)


def sample_logits(
    logits: Tensor,
    temperature: Tensor,
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Token ids [...] from masked ``logits`` [..., V]: argmax where T == 0, else a sample of softmax(logits / T).

    Args:
        logits: [..., V] float32, already masked (:func:`mask_logits`).
        temperature: float32, broadcastable to ``logits[..., 0]``; 0 means argmax.
        noise: Exp(1) draws shaped like ``logits`` for the exponential race argmax(p / E) (batched path). If None,
            ``torch.multinomial`` draws from ``generator`` (the reference's call, reference-compatible stream).
        generator: random stream for ``torch.multinomial``.
    """
    temperature = temperature.to(logits.dtype).expand(logits.shape[:-1])
    greedy = logits.argmax(-1)
    safe_t = torch.where(temperature == 0, torch.ones_like(temperature), temperature)
    probs = F.softmax(logits / safe_t[..., None], dim=-1)
    if noise is not None:
        # E = 0 would turn a zero probability into 0/0 = NaN, which argmax prefers; clamp the draws away from 0.
        sampled = (probs / noise.clamp_min(FLOAT32_TINY)).argmax(-1)
    else:
        flat = probs.reshape(-1, probs.shape[-1])
        sampled = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    return torch.where(temperature == 0, greedy, sampled)


def decode_function_logits(
    logits: Tensor,
    temperature: Tensor,
    *,
    top_p: Tensor | None = None,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Function tokens by the reference's rule (spec §10.4): per position, if the mean over the 8 depths of
    p(<none>) exceeds 0.05 every depth becomes <none>; otherwise <none> is excluded and each depth takes its argmax.

    Args:
        logits: [..., 8, 260] float32.
        temperature: broadcastable to ``logits[..., 0, 0]`` (per position); used in log_softmax(logits / T).
            T == 0 takes the limit T -> 0: <none> wins where it is the argmax at some depth, and the returned
            log-probabilities are those at T = 1 (the reference divides by zero and decodes NaNs there).
        top_p: nucleus filtering per (position, depth), as the other tracks; None = off.
        valid: ids that may be emitted ([260] or broadcastable); None = every id (the reference).

    Returns:
        ``(ids [..., 8], log_p [..., 8, 260])``: ``log_p`` is the tempered log-softmax with <none> at -inf where it
        was excluded, the distribution whose entropy orders positions.
    """
    if valid is not None:  # ours: the nucleus is taken over the ids that may be emitted
        logits = logits.masked_fill(~valid, float("-inf"))
    if top_p is not None:
        logits = top_p_filter(logits, top_p[..., None])
        if valid is not None:
            logits = logits.masked_fill(~valid, float("-inf"))
    temperature = temperature.to(logits.dtype).expand(logits.shape[:-2])
    zero_t = temperature == 0
    safe_t = torch.where(zero_t, torch.ones_like(temperature), temperature)
    log_p = F.log_softmax(logits / safe_t[..., None, None], dim=-1)
    p_none = log_p[..., C.FUNCTION_NONE].exp().mean(dim=-1)
    where_none = torch.where(
        zero_t, (logits.argmax(-1) == C.FUNCTION_NONE).any(-1), p_none > C.FUNCTION_P_NONE_THRESHOLD
    )
    is_none_id = torch.arange(logits.shape[-1], device=logits.device) == C.FUNCTION_NONE
    log_p = log_p.masked_fill(~where_none[..., None, None] & is_none_id, float("-inf"))
    ids = log_p.argmax(-1)
    ids = torch.where(where_none[..., None], torch.full_like(ids, C.FUNCTION_NONE), ids)
    return ids, log_p


def residue_annotations_from_logits(
    logits: Tensor, threshold: float = C.RESIDUE_ANNOTATION_THRESHOLD
) -> tuple[Tensor, Tensor]:
    """Residue annotation ids [..., 16] from logits [..., 1478] (spec §10.4): the 16 largest logits, an id kept
    where its sigmoid is >= ``threshold`` and 0 elsewhere. Also returns their log-sigmoids [..., 16]."""
    top = logits.argsort(dim=-1, descending=True)[..., : C.RESIDUE_MAX_PER_POSITION]
    log_probs = torch.gather(F.logsigmoid(logits), -1, top)
    ids = top.masked_fill(log_probs.exp() < threshold, C.RESIDUE_PAD)
    return ids, log_probs


def sasa_midpoints(device: torch.device | str | None = None) -> Tensor:
    """[15] float32 midpoints of the bins [0, 0.8, 4.0, ..., 151.4] used to decode sampled SASA (spec §10.4)."""
    edges = torch.tensor((0.0, *C.SASA_BOUNDARIES), dtype=torch.float32, device=device)
    return (edges[:-1] + edges[1:]) / 2


def sasa_values_from_logits(logits: Tensor, valid: Tensor | None = None) -> Tensor:
    """SASA floats [...] from logits [..., 19] (spec §10.4, ``decode_sasa_tokens``): the expected value over tokens
    3..17 with the bin midpoints (token 18 contributes 0), and +inf where the argmax is token 18.

    ``valid`` ([19] bool) defaults to the sampleable SASA ids 3..18; others get probability 0.
    """
    if valid is None:
        valid = valid_id_mask("sasa").to(logits.device)
    probs = logits.masked_fill(~valid, float("-inf")).softmax(-1)
    mids = sasa_midpoints(logits.device)
    values = (probs[..., C.SASA_FIRST_BIN : C.SASA_OPEN_BIN_TOKEN] * mids).sum(-1)
    return values.masked_fill(probs.argmax(-1) == C.SASA_OPEN_BIN_TOKEN, float("inf"))


def select_positions(scores: Tensor, candidates: Tensor, count: Tensor) -> Tensor:
    """[B, L] bool: in each row, the ``count[b]`` candidate positions with the lowest scores (ties: lowest index).

    Per-row k without host synchronisation: stable-sort the scores (non-candidates last), rank every position, keep
    ranks below k. Deterministic and independent of how much padding a row carries.

    Args:
        scores: [B, L] float; lower is committed first.
        candidates: [B, L] bool.
        count: [B] int (clamped to the number of candidates).
    """
    s = scores.float().masked_fill(~candidates, float("inf"))
    order = torch.sort(s, dim=-1, stable=True).indices
    positions = torch.arange(s.shape[-1], device=s.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, positions)
    return (rank < count[:, None]) & candidates
