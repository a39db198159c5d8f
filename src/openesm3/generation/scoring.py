"""Scoring sequences with ESM3's masked-token predictions (zero-shot fitness; Meier et al. 2021 for ESM-1v).

Both scores use the sequence head's log-probabilities, ``log_softmax`` over all 64 sequence logits (spec §10.2:
there is no dedicated scoring API; the reference's users take ``log_softmax`` of the logits):

- **pseudo-log-likelihood** (PLL) of a sequence: each residue position i is masked in turn and
  ``log p(x_i | x_{-i})`` read off; the PLL is their sum over the scored positions (residue tokens; masks ``_``
  and chain breaks ``|`` are not scored). The masked copies of one protein are batched, ``batch_size`` per pass.
- **masked marginal** of a variant against the wild type: all positions the variant mutates are masked in one
  copy of the wild type and ``sum over its mutations of log p(mutant) - log p(wild type)`` is read off. Variants
  that mutate the same set of positions share one forward pass.
- **wild-type marginal** (Meier et al. 2021): one forward pass of the unmasked wild type, and
  ``sum over its mutations of log p(mutant) - log p(wild type)`` read off that one pass at the mutated positions:
  a whole scan costs one pass, whatever its size.

Every other track of the protein (e.g. coordinates, structure tokens) stays in place as conditioning. Padding of
batched passes is masked in attention, so scores do not depend on the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.generation.protein_tensor import ProteinBatch, ProteinTensor, model_inputs, stack
from openesm3.generation.variants import AuthorNumbering, ResolvedMutation, Variant, parse_variant, resolve_variant
from openesm3.tokenizers.sequence import SequenceTokenizer
from openesm3.utils.checks import check_batch_size

ProgressCallback = Callable[[int], None]
_SCORABLE = torch.tensor(C.SEQUENCE_SAMPLEABLE_IDS)  # residue tokens (ids 4..30)


@dataclass(frozen=True)
class PseudoLogLikelihood:
    """PLL of one protein.

    Attributes:
        total: sum of ``log p(x_i | x_{-i})`` over the scored positions (natural log).
        per_position: [L] float64, NaN at positions that are not scored (masks, chain breaks).
        n_scored: number of scored positions.
    """

    total: float
    per_position: np.ndarray
    n_scored: int

    @property
    def mean(self) -> float:
        """Average log-likelihood per scored position."""
        return self.total / self.n_scored if self.n_scored else math.nan

    @property
    def perplexity(self) -> float:
        return math.exp(-self.mean) if self.n_scored else math.nan


@dataclass(frozen=True)
class VariantScore:
    """Score of one variant (masked or wild-type marginal), or why it could not be scored (the others are
    unaffected)."""

    variant: Variant
    score: float | None = None
    error: InputError | None = None


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device  # type: ignore[no-any-return]
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _in_fp32(module: torch.nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` computed in fp32 from fp32 copies of its weights (autocast off), whatever their dtype."""
    state = {name: t.float() for name, t in (*module.named_parameters(), *module.named_buffers())}
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.func.functional_call(module, state, (x.float(),))


@torch.inference_mode()
def sequence_log_probs(model: Any, proteins: Sequence[ProteinTensor] | ProteinBatch) -> Tensor:
    """``log_softmax`` of the sequence logits, [B, Lmax, 64] fp32, for right-padded ``proteins`` (or a batch).

    ``model`` is an :class:`openesm3.models.esm3.ESM3`, or anything called with ``ESM3.forward``'s keywords that
    returns ``sequence_logits``. Coordinates condition the pass when any protein has some. With an ESM3 only the
    sequence head is evaluated: ``sequence_head(norm(embed(...)))`` are the very operations of ``forward``
    (tested equal), without the five other heads. A bf16/fp16 model runs its trunk in that dtype and the final
    norm and head in fp32: bf16 logits (3 significant digits) tied about half of a scan's scores.
    """
    batch = proteins if isinstance(proteins, ProteinBatch) else stack(list(proteins), device=_device(model))
    has_coords = bool(torch.isfinite(batch.coordinates).any())
    inputs = model_inputs(batch, condition_on_coordinates=has_coords)
    if all(hasattr(model, name) for name in ("embed", "norm", "sequence_head")):
        hidden = model.embed(layer=-1, **inputs).per_residue
        if hidden.dtype == torch.float32:
            logits = model.sequence_head(model.norm(hidden))
        else:  # a bf16/fp16 trunk: its last state through the (small) head in fp32, so logits are not rounded to bf16
            logits = _in_fp32(model.sequence_head, _in_fp32(model.norm, hidden))
    else:
        logits = model(**inputs).sequence_logits
    return torch.log_softmax(logits.float(), dim=-1)


def masked_batch(protein: ProteinTensor, position_sets: Sequence[Sequence[int]], device: torch.device) -> ProteinBatch:
    """One row per set: ``protein`` with the sequence masked at those token indices. Tracks other than the
    sequence are broadcast views of one copy (no per-row copies of coordinates etc.)."""
    base = stack([protein], device=device)
    n = len(position_sets)
    sequence = base.sequence.repeat(n, 1)
    for row, positions in enumerate(position_sets):
        sequence[row, torch.as_tensor(list(positions), dtype=torch.long, device=device)] = C.SEQUENCE_MASK
    tracks = {
        name: getattr(base, name).expand(n, *getattr(base, name).shape[1:])
        for name in ("structure", "secondary_structure", "sasa", "function", "residue_annotations", "coordinates",
                     "lengths", "padding")
    }  # fmt: skip
    return ProteinBatch(sequence=sequence, **tracks)


def scorable_positions(protein: ProteinTensor) -> Tensor:
    """Token indices (BOS = 0) whose sequence token is a residue: not a mask, chain break or special."""
    if protein.sequence is None:
        raise InputError("scoring needs a sequence track")
    return torch.nonzero(torch.isin(protein.sequence, _SCORABLE.to(protein.sequence.device))).flatten()


def pseudo_log_likelihood(
    model: Any, protein: ProteinTensor, *, batch_size: int = 8, progress: ProgressCallback | None = None
) -> PseudoLogLikelihood:
    """PLL of ``protein`` (see module docstring); ``progress(n)`` is called after every pass with its size."""
    _check_one(protein)
    check_batch_size(batch_size)
    positions = scorable_positions(protein).cpu()
    assert protein.sequence is not None
    truth = protein.sequence.cpu()
    per_position = np.full(protein.n_residues, np.nan)
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        log_p = sequence_log_probs(model, masked_batch(protein, [[int(i)] for i in chunk], _device(model))).cpu()
        rows = torch.arange(len(chunk))
        values = log_p[rows, chunk, truth[chunk]]
        per_position[chunk.numpy() - 1] = values.double().numpy()
        if progress is not None:
            progress(len(chunk))
    n = len(positions)
    return PseudoLogLikelihood(float(np.nansum(per_position)) if n else 0.0, per_position, n)


def _check_one(protein: Any) -> None:
    if not isinstance(protein, ProteinTensor):
        raise InputError(f"scoring takes one ProteinTensor, got {type(protein).__name__}")


def masked_marginal_scores(
    model: Any,
    wild_type: ProteinTensor,
    variants: Sequence[Variant | str],
    *,
    offset: int = 0,
    numbering: AuthorNumbering | None = None,
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
    on_batch: Callable[[list[tuple[int, VariantScore]]], Any] | None = None,
) -> list[VariantScore]:
    """Masked-marginal score of every variant against ``wild_type`` (see module docstring).

    A variant that does not fit the sequence (wild-type letter mismatch, position out of range, ...) gets a
    :class:`VariantScore` with ``error`` set, naming the mutation; the other variants are scored as usual.
    Variants may be given as text (``"A42G:L50P"``, parsed by :func:`~openesm3.generation.variants.parse_variant`;
    text that does not parse gets an error the same way). Positions are 1-based on the sequence, shifted by
    ``offset``; with ``numbering`` (:meth:`AuthorNumbering.from_protein` of the protein ``wild_type`` was encoded
    from) they are the structure's own residue numbers (``H52G``, ``H52AG``, ``L/H52G``) and ``offset`` must be 0.
    ``progress(n)`` reports how many variants are done (all ``len(variants)`` by the end). ``on_batch(pairs)`` gets
    the ``(index, score)`` of the variants final so far: first those that need no pass (errors, the wild type), then
    those of each forward pass as it is done, so a long scan can save its scores as they come.
    """
    check_batch_size(batch_size)
    results, resolved = _resolve(wild_type, variants, offset, numbering)
    groups: dict[tuple[int, ...], list[tuple[int, tuple[ResolvedMutation, ...]]]] = {}
    for n, mutations in resolved.items():
        key = tuple(sorted(m.index + 1 for m in mutations))  # token indices (BOS = 0)
        groups.setdefault(key, []).append((n, mutations))
    _report_passless(results, resolved, progress, on_batch)
    keys = list(groups)
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        log_p = sequence_log_probs(model, masked_batch(wild_type, chunk, _device(model))).cpu().double()
        for row, key in enumerate(chunk):
            for n, mutations in groups[key]:
                results[n] = VariantScore(results[n].variant, score=_marginal(log_p[row], mutations))
        if on_batch is not None:
            on_batch(sorted(((n, results[n]) for key in chunk for n, _ in groups[key]), key=lambda pair: pair[0]))
        if progress is not None:
            progress(sum(len(groups[key]) for key in chunk))
    return results


def wt_marginal_scores(
    model: Any,
    wild_type: ProteinTensor,
    variants: Sequence[Variant | str],
    *,
    offset: int = 0,
    numbering: AuthorNumbering | None = None,
    progress: ProgressCallback | None = None,
    on_batch: Callable[[list[tuple[int, VariantScore]]], Any] | None = None,
) -> list[VariantScore]:
    """Wild-type-marginal score of every variant against ``wild_type`` (Meier et al. 2021; module docstring): one
    forward pass of the unmasked wild type, ``sum log p(mutant) - log p(wild type)`` over the mutated positions.

    Arguments, errors and callbacks as :func:`masked_marginal_scores` (no ``batch_size``: there is one pass, and
    none when no variant needs one). The scores differ from masked marginals: the model sees the wild-type residue
    at each mutated position instead of a mask.
    """
    results, resolved = _resolve(wild_type, variants, offset, numbering)
    _report_passless(results, resolved, progress, on_batch)
    if not resolved:
        return results
    log_p = sequence_log_probs(model, [wild_type])[0].cpu().double()
    for n, mutations in resolved.items():
        results[n] = VariantScore(results[n].variant, score=_marginal(log_p, mutations))
    if on_batch is not None:
        on_batch([(n, results[n]) for n in sorted(resolved)])
    if progress is not None:
        progress(len(resolved))
    return results


def _marginal(log_p: Tensor, mutations: Sequence[ResolvedMutation]) -> float:
    """``sum log p(mutant) - log p(wild type)`` over ``mutations`` from one row of log-probabilities [L+2, V]."""
    return sum(float(log_p[m.index + 1, m.mutant_id] - log_p[m.index + 1, m.wild_type_id]) for m in mutations)


def _resolve(
    wild_type: ProteinTensor, variants: Sequence[Variant | str], offset: int, numbering: AuthorNumbering | None
) -> tuple[list[VariantScore], dict[int, tuple[ResolvedMutation, ...]]]:
    """The arguments checked, every variant parsed and checked against the wild type: a result per variant (final
    for errors and the wild type itself) and the mutations of those that need a pass, by index."""
    _check_one(wild_type)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise InputError(f"offset must be an int, got {offset!r}")
    if numbering is not None and not isinstance(numbering, AuthorNumbering):
        raise InputError(f"numbering must be an AuthorNumbering (AuthorNumbering.from_protein), got {numbering!r}")
    for n, item in enumerate(variants):
        if not isinstance(item, Variant | str):
            raise InputError(f"variants[{n}]: expected a Variant or its text ('A42G:L50P'), got {item!r}")
    if wild_type.sequence is None:
        raise InputError("variant scoring needs the wild-type sequence")
    sequence = SequenceTokenizer().decode(wild_type.sequence)
    if numbering is not None:  # once for the whole scan, not in every variant's error
        numbering.check_against(sequence, offset, "the wild type's", "the wild-type tensor was encoded from")
    results: list[VariantScore] = []
    resolved: dict[int, tuple[ResolvedMutation, ...]] = {}
    for n, item in enumerate(variants):
        try:
            variant = item if isinstance(item, Variant) else parse_variant(item)
        except InputError as exc:
            results.append(VariantScore(Variant(str(item), ()), error=exc))
            continue
        try:
            mutations = resolve_variant(variant, sequence, offset, numbering)
        except InputError as exc:
            results.append(VariantScore(variant, error=exc))
            continue
        if mutations:
            results.append(VariantScore(variant))
            resolved[n] = mutations
        else:
            results.append(VariantScore(variant, score=0.0))  # the wild type against itself
    return results, resolved


def _report_passless(
    results: list[VariantScore],
    resolved: dict[int, Any],
    progress: ProgressCallback | None,
    on_batch: Callable[[list[tuple[int, VariantScore]]], Any] | None,
) -> None:
    """Report the variants that need no pass (errors, the wild type) as done, before any pass."""
    if progress is not None and len(results) > len(resolved):
        progress(len(results) - len(resolved))
    if on_batch is not None and len(results) > len(resolved):
        on_batch([(n, result) for n, result in enumerate(results) if n not in resolved])
