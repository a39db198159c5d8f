"""Iterative masked decoding of any track conditioned on the others (paper A.1.10, Algorithm 14; spec §10.3).

    for t in 0 .. num_steps - 1:
        logits = model(all tracks of the batch)                   # one forward for every prompt
        candidates = masked positions of the target track
        sample a token at every candidate (temperature, top-p, invalid ids; argmax at T = 0)
        commit  still_masked - keep_t  of them, chosen at random, by lowest entropy or by highest top log-prob,
        where keep_t = int(schedule((t + 1) / num_steps) * total + 0.1)  (float32, spec §10.3)

:func:`generate` runs that loop for many prompts, each with its own :class:`~openesm3.config.GenerationConfig`:

* **Batched** (default): prompts are sorted by length into batches of ``batch_size``; padding is masked in
  attention, so every prompt gets exactly what it gets alone. Everything the loop needs on the host (commit counts,
  temperatures, which prompts are active) is computed before it starts; positions are chosen with tensor ops and
  tokens drawn on the device from one ``torch.Generator`` per prompt, so there is no host synchronisation inside
  the loop and batching does not change a prompt's random draws. Prompts that finish drop out of the batch.
* **Sequential** (``sequential=True``; default with ``reference_compat=True``): the reference's own per-prompt
  loop, drawing from one generator shared by all prompts in the reference's call order. With
  ``reference_compat=True`` and the reference's batch (all prompts, input order) it reproduces
  ``ESM3.batch_generate`` on CPU token for token, sampled tokens included when the same seed is used.

``reference_compat=True`` also switches on the reference's quirks (see ``docs/generation.md``): padding is attended,
top-p is taken before invalid ids are removed, the function track may emit its special ids and its entropy order
collapses to ``topk``'s tie order. The behaviour both
modes share with the reference is listed there too (the num_steps cap, squared annealing, entropy on the masked
distribution, the final reset of non-target tracks, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from openesm3 import constants as C
from openesm3.config import GenerationConfig
from openesm3.errors import InputError
from openesm3.generation import sampling as S
from openesm3.generation.batched_decoding import decode_batched
from openesm3.generation.decode_job import OURS, REFERENCE, DecodeJob, LogitsModel, Semantics, is_mask
from openesm3.generation.protein_tensor import TOKEN_TRACKS, ProteinTensor
from openesm3.generation.schedules import effective_num_steps, masked_after_each_step, step_temperature
from openesm3.generation.sequential_decoding import decode_sequential
from openesm3.utils.checks import check_batch_size, check_generator, check_seed
from openesm3.utils.progress import Progress

__all__ = ["GenerationResult", "LogitsModel", "check_prompt_tokens", "count_to_generate", "derive_seed", "generate"]

# Vocabulary sizes: a prompt token outside [0, size) is no token of its track (named in the error). The sequence
# embedding has 64 rows but only ids 0..32 are tokens.
_TOKEN_LIMITS: dict[str, int] = {
    "sequence": len(C.SEQUENCE_VOCAB),
    "structure": C.STRUCTURE_VOCAB_SIZE,
    "secondary_structure": C.SS8_VOCAB_SIZE,
    "sasa": C.SASA_VOCAB_SIZE,
    "function": C.FUNCTION_VOCAB_SIZE,
    "residue_annotations": C.RESIDUE_VOCAB_SIZE,
}
# Sequence ids that do not count as "to generate" when the target track is absent (spec §10.3): the specials
# except <mask>.
_NOT_TO_SAMPLE = tuple(sorted(C.SEQUENCE_SPECIAL_IDS - {C.SEQUENCE_MASK}))
# Tracks whose first and last positions must hold BOS and EOS, and the frame ids that may not occur inside (the
# trunk reads an inner sequence <pad> as padding and hides it from attention).
_FRAMES: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "sequence": (C.SEQUENCE_BOS, C.SEQUENCE_EOS, (C.SEQUENCE_BOS, C.SEQUENCE_PAD, C.SEQUENCE_EOS)),
    "structure": (C.STRUCTURE_BOS, C.STRUCTURE_EOS, (C.STRUCTURE_BOS, C.STRUCTURE_PAD, C.STRUCTURE_EOS)),
}


@dataclass
class GenerationResult:
    """The outcome for one prompt: ``protein`` (the prompt with its target track generated) or ``error``.

    Attributes:
        index: position of the prompt in the list given to :func:`generate`.
        protein: every track as in the prompt except the generated one; None if the prompt failed.
        error: why the prompt could not be generated (the other prompts are unaffected); None on success.
        num_steps: decoding steps run for this prompt (after the cap to the number of positions to fill).
    """

    index: int
    protein: ProteinTensor | None = None
    error: InputError | None = None
    num_steps: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> ProteinTensor:
        """The generated protein, or raise the prompt's error."""
        if self.error is not None:
            raise self.error
        assert self.protein is not None
        return self.protein


def generate(
    model: LogitsModel,
    prompts: Sequence[ProteinTensor],
    config: GenerationConfig | Sequence[GenerationConfig],
    *,
    batch_size: int | None = 8,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    reference_compat: bool = False,
    sequential: bool | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> list[GenerationResult]:
    """Generate one track of each prompt by iterative masked decoding (paper Algorithm 14; spec §10.3).

    Args:
        model: see :class:`LogitsModel` (e.g. :class:`openesm3.models.esm3.ESM3` in eval mode).
        prompts: token-level proteins (:class:`ProteinTensor`, BOS/EOS included). Positions to generate hold the
            track's mask id (sequence ``<mask>`` 32, structure 4096, SS8/SASA/function 0); an absent target track
            is generated whole.
        config: one config for every prompt, or one per prompt.
        batch_size: prompts per forward pass (None: all at once). Batched mode sorts prompts by length first;
            sequential mode keeps the input order.
        seed: base seed. Batched: prompt i draws from its own stream, seeded by its ``config.seed`` or derived
            from ``(seed, i)`` (:func:`derive_seed`). Sequential: the one shared stream is seeded with it. None
            takes the base seed from ``generator`` or, failing that, torch's global RNG (neither is touched when
            batched prompts all have a ``config.seed``).
        generator: where the base seed comes from when ``seed`` is None; in sequential mode, the shared stream,
            which must then be a generator of the decoding device's type (``torch.Generator(device="cuda")`` for a
            model on CUDA), else :class:`InputError`.
        reference_compat: reproduce the reference's quirks (docs/generation.md); implies ``sequential``.
        sequential: decode prompt by prompt with one shared random stream, in the reference's order (slow).
        device: where to decode; default the model's device (its first parameter) or the CPU. Another device than
            the model's is an :class:`InputError` (move the model first).
        autocast_dtype: run the model under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``). The
            sampling always runs in float32.
        progress: show a progress bar (steps) on stderr.

    Returns:
        One :class:`GenerationResult` per prompt, in the input order. A bad prompt gets an ``error`` (naming the
        prompt and the problem) and does not stop the others.
    """
    configs = _per_prompt_configs(prompts, config)
    check_batch_size(batch_size, allow_none=True)
    sequential = reference_compat if sequential is None else sequential
    semantics = REFERENCE if reference_compat else OURS
    dev = decoding_device(model, device)
    # Sequential decoding draws on the device from ``generator`` itself; batched only takes a base seed from it.
    check_generator(generator, dev if sequential else None)
    # Sequential decoding draws from one stream (``generator`` itself when given); per-prompt seeds are unused.
    # Batched, the base seed only serves prompts whose config has no seed: none, no draw from the global RNG.
    unused = (sequential and generator is not None) or (not sequential and all(c.seed is not None for c in configs))
    base_seed = 0 if unused and seed is None else _base_seed(seed, generator)
    max_length = _model_max_length(model)

    jobs = [_prepare(i, p, c, base_seed, max_length, dev, semantics) for i, (p, c) in enumerate(zip(prompts, configs))]
    runnable = [j for j in jobs if j.error is None]
    batches = _batches(runnable, batch_size, by_length=not sequential and not semantics.attend_to_padding)
    shared = None
    if sequential:  # one stream for all prompts, as the reference's global RNG
        shared = generator if generator is not None else torch.Generator(device=dev).manual_seed(base_seed)
    total_steps = sum(max(j.num_steps for j in b) for b in batches)
    with Progress(total=total_steps, desc="generate", unit="step", disable=not progress) as bar:
        for batch in batches:
            if shared is not None:
                decode_sequential(model, batch, semantics, dev, autocast_dtype, shared, bar.update)
            else:
                decode_batched(model, batch, semantics, dev, autocast_dtype, bar.update)
    return [_result(j) for j in jobs]


def derive_seed(base_seed: int, index: int) -> int:
    """The seed of prompt ``index``'s stream when its config has none (a NumPy SeedSequence of both)."""
    state = np.random.SeedSequence([base_seed, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def count_to_generate(working: ProteinTensor, track: str) -> tuple[int, int]:
    """``(total, masked)`` for a prompt as the decoder starts it (spec §10.3).

    ``total`` is the reference's ``total_to_sample``: if the target track is absent, the sequence positions whose
    id is not a special other than <mask> (or L when the sequence is absent too); else the masked positions
    (function: all 8 ids 0), BOS/EOS excluded. ``masked`` is the number of masked positions once the track is
    filled (L when absent).
    """
    n = working.n_residues
    value = getattr(working, track)
    if value is None:
        if working.sequence is None:
            return n, n
        keep = torch.ones_like(working.sequence, dtype=torch.bool)
        for special in _NOT_TO_SAMPLE:
            keep &= working.sequence != special
        return int(keep.sum()), n
    count = int(is_mask(track, value)[1:-1].sum())
    return count, count


# ---------------------------------------------------------------------------------------------------------------
# Preparation (host, before any forward pass)
# ---------------------------------------------------------------------------------------------------------------
def _per_prompt_configs(
    prompts: Sequence[ProteinTensor], config: GenerationConfig | Sequence[GenerationConfig]
) -> list[GenerationConfig]:
    if isinstance(prompts, ProteinTensor):
        raise InputError("prompts must be a list of ProteinTensor; for one prompt pass [prompt]")
    if isinstance(config, GenerationConfig):
        return [config] * len(prompts)
    configs = list(config)
    if len(configs) != len(prompts):
        raise InputError(f"got {len(prompts)} prompts but {len(configs)} configs; give one config or one per prompt")
    for i, c in enumerate(configs):
        if not isinstance(c, GenerationConfig):
            raise InputError(f"config {i}: expected a GenerationConfig, got {type(c).__name__}")
    return configs


def _model_device(model: Any) -> torch.device | None:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return None


def decoding_device(model: Any, device: torch.device | str | None) -> torch.device:
    """``device``, or the model's (its first parameter's; the CPU for a model without parameters). A ``device``
    other than the model's is an :class:`InputError`: the inputs would be made there and the first forward pass would
    fail inside torch (tensors on two devices)."""
    held = _model_device(model)
    if device is None:
        return held if held is not None else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {str(device)!r} is not a torch device") from None
    if held is not None and (
        held.type != dev.type or (dev.index is not None and held.index is not None and held.index != dev.index)
    ):
        raise InputError(f"device={str(device)!r} but the model is on {held}: move it first (model.to({str(dev)!r}))")
    return dev


def _model_max_length(model: Any) -> int | None:
    value = getattr(getattr(model, "config", None), "max_length", None)
    return value if isinstance(value, int) else None


def _base_seed(seed: int | None, generator: torch.Generator | None) -> int:
    if seed is not None:
        check_seed(seed)
        return seed
    # Drawn on the generator's own device: torch refuses a CUDA generator for a CPU tensor and vice versa.
    device = None if generator is None else generator.device
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device))


def check_prompt_tokens(prompt: ProteinTensor) -> None:
    """Raise :class:`InputError` (naming the track and position) for a token outside its track's vocabulary, a
    sequence / structure track not framed by BOS and EOS or holding BOS/EOS/<pad> inside, or atoms at the BOS/EOS
    rows of the coordinates."""
    for name in TOKEN_TRACKS:
        value = getattr(prompt, name)
        if value is None or value.numel() == 0:
            continue
        low, high = int(value.min()), int(value.max())
        if low < 0 or high >= _TOKEN_LIMITS[name]:
            bad = low if low < 0 else high
            where = (value == bad).nonzero()[0].tolist()
            raise InputError(f"track {name!r}: token id {bad} at {where} is outside [0, {_TOKEN_LIMITS[name]})")
        if name in _FRAMES:
            _check_frame(name, value)
    coordinates = prompt.coordinates
    if coordinates is not None and len(coordinates) >= 2:
        for position in (0, len(coordinates) - 1):
            if bool(torch.isfinite(coordinates[position]).all(-1).any()):
                raise InputError(
                    f"coordinates: position {position} (BOS/EOS) holds atoms; prompts are L+2 long with +inf "
                    f"coordinates at BOS and EOS"
                )


def _check_frame(name: str, tokens: torch.Tensor) -> None:
    """BOS at position 0, EOS at the last position, neither (nor <pad>) in between."""
    bos, eos, framing = _FRAMES[name]
    last = len(tokens) - 1
    for position, expected, label in ((0, bos, "BOS"), (last, eos, "EOS")):
        if int(tokens[position]) != expected:
            raise InputError(
                f"track {name!r}: position {position} holds {int(tokens[position])}, expected {label} {expected} "
                f"(prompts are L+2 long, BOS/EOS included)"
            )
    inner = torch.isin(tokens[1:-1], torch.tensor(framing, device=tokens.device)).nonzero()
    if len(inner):
        position = int(inner[0]) + 1
        raise InputError(
            f"track {name!r}: position {position} holds the special id {int(tokens[position])} (BOS, EOS or <pad>), "
            f"which may only frame the prompt"
        )


def _check_sampleable(config: GenerationConfig, semantics: Semantics) -> None:
    width = S.TRACK_SPECS[config.track].width
    outside = [i for i in config.invalid_ids if i >= width]
    if outside:
        raise InputError(f"invalid_ids {outside} are not ids of track {config.track!r} (0..{width - 1})")
    if config.track == "function" and not semantics.restrict_function:
        return  # the reference's function argmax ignores invalid_ids
    if not S.valid_id_mask(config.track, config.invalid_ids).any():
        raise InputError(f"invalid_ids {list(config.invalid_ids)} leave no token to sample on track {config.track!r}")


def _prepare(
    index: int,
    prompt: Any,
    config: GenerationConfig,
    base_seed: int,
    max_length: int | None,
    device: torch.device,
    semantics: Semantics,
) -> DecodeJob:
    job = DecodeJob(index=index, prompt=prompt, config=config)
    try:
        if not isinstance(prompt, ProteinTensor):
            raise InputError(f"expected a ProteinTensor, got {type(prompt).__name__}")
        prompt.validate()
        length = len(prompt)
        if max_length is not None and length > max_length:
            raise InputError(f"{length} tokens (BOS/EOS included) exceed the model's maximum of {max_length}")
        check_prompt_tokens(prompt)
        _check_sampleable(config, semantics)
        working = prompt.to(device)
        if config.condition_on_coordinates_only and working.coordinates is not None:
            # Spec §10.3 step 1: the model then reads the backbone through geometric attention and pLDDT only.
            working.structure = None
        total, masked = count_to_generate(working, config.track)
        if masked == 0:
            raise InputError(
                f"track {config.track!r} has no masked position to generate (mask id "
                f"{S.TRACK_SPECS[config.track].mask_id}; BOS/EOS excluded)"
            )
        num_steps = effective_num_steps(config.num_steps, total)
        job.working = working
        job.total = total
        job.num_steps = num_steps
        job.keep = masked_after_each_step(config.schedule, num_steps, total)
        job.temperatures = tuple(
            step_temperature(t, num_steps, config.temperature, config.temperature_annealing) for t in range(num_steps)
        )
        job.seed = config.seed if config.seed is not None else derive_seed(base_seed, index)
    except InputError as exc:
        job.error = InputError(f"prompt {index}: {exc}")
    return job


def _batches(jobs: list[DecodeJob], batch_size: int | None, *, by_length: bool) -> list[list[DecodeJob]]:
    """Length buckets (stable sort) when padding is masked; the input order otherwise (the reference's)."""
    if by_length:
        jobs = sorted(jobs, key=lambda j: j.length)
    size = len(jobs) if batch_size is None else batch_size
    return [jobs[i : i + size] for i in range(0, len(jobs), max(size, 1))]


def _result(job: DecodeJob) -> GenerationResult:
    if job.error is not None:
        return GenerationResult(index=job.index, error=job.error)
    assert job.result is not None
    prompt: ProteinTensor = job.prompt
    out = prompt.clone()  # every other track, coordinates included, as given (spec §10.3 step 5)
    setattr(out, job.track, job.result.to(_prompt_device(prompt)))
    return GenerationResult(index=job.index, protein=out, num_steps=job.num_steps)


def _prompt_device(prompt: ProteinTensor) -> torch.device:
    for name in (*TOKEN_TRACKS, "coordinates"):
        value = getattr(prompt, name)
        if value is not None:
            return value.device
    return torch.device("cpu")
