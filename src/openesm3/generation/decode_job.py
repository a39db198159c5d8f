"""What the decoding loops share: one prepared prompt (:class:`DecodeJob`), the behaviour switches on which we
differ from the reference (:class:`Semantics`), and the device batch they decode (:class:`DecodeBatch`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from openesm3.config import GenerationConfig
from openesm3.errors import InputError
from openesm3.generation.protein_tensor import ProteinBatch, ProteinTensor, model_inputs, stack
from openesm3.generation.sampling import TRACK_SPECS


class LogitsModel(Protocol):
    """What generation calls: ``model(**inputs)`` with the keyword arguments of
    :func:`~openesm3.generation.protein_tensor.model_inputs` plus ``attend_to_padding`` and ``validate``,
    returning an object with the ``ESM3Output`` logits fields (``sequence_logits`` [B, L, 64], ``structure_logits``
    [B, L, 4096], ``secondary_structure_logits`` [B, L, 11], ``sasa_logits`` [B, L, 19], ``function_logits``
    [B, L, 8, 260]). :class:`openesm3.models.esm3.ESM3` is one."""

    def __call__(self, **inputs: Any) -> Any: ...


@dataclass(frozen=True)
class Semantics:
    """The behaviours on which our default and the reference differ (docs/generation.md)."""

    attend_to_padding: bool  # reference: padded positions take part in attention
    invalid_first: bool  # ours: remove invalid ids before taking the top-p nucleus
    restrict_function: bool  # ours: the function track never emits <pad>/<motif>/<unk> and honours invalid_ids
    # reference: the function entropy is summed over the depths and then again over the positions, so every
    # candidate gets the same score and the order of ``topk`` among ties decides (ours: per-position entropy).
    function_entropy_ties: bool


OURS = Semantics(attend_to_padding=False, invalid_first=True, restrict_function=True, function_entropy_ties=False)
REFERENCE = Semantics(attend_to_padding=True, invalid_first=False, restrict_function=False, function_entropy_ties=True)


@dataclass
class DecodeJob:
    """One prompt, prepared on the host: everything the loops need that does not change between steps."""

    index: int
    prompt: Any  # as given (the non-target tracks of the result come from here)
    config: GenerationConfig
    working: ProteinTensor | None = None  # the decoder's start (structure dropped if conditioning on coordinates)
    total: int = 0  # the reference's total_to_sample
    num_steps: int = 0  # after the cap
    keep: tuple[int, ...] = ()  # positions still masked after each step
    temperatures: tuple[float, ...] = ()  # per step
    seed: int = 0
    error: InputError | None = None
    result: Tensor | None = field(default=None, repr=False)  # the generated target track, [L+2(, 8)]
    failed: Tensor | None = field(default=None, repr=False)  # 0-dim bool on the device (batched loop)
    generator: torch.Generator | None = field(default=None, repr=False)  # this prompt's stream (batched loop)

    @property
    def length(self) -> int:
        assert self.working is not None
        return len(self.working)

    @property
    def track(self) -> str:
        return self.config.track

    def fail(self, step: int | None) -> None:
        when = "during decoding" if step is None else f"at step {step}"
        self.error = InputError(
            f"prompt {self.index}: track {self.track!r} has no masked position left {when} although "
            f"{self.num_steps} steps were planned (the reference's error 500; e.g. a sequence made only of special "
            f"tokens)"
        )


def is_mask(track: str, tokens: Tensor) -> Tensor:
    """[..., L] bool: positions whose ``track`` tokens are the mask id (function: all 8 depths)."""
    mask_id = TRACK_SPECS[track].mask_id
    if track == "function":
        return (tokens == mask_id).all(-1)
    return tokens == mask_id


@dataclass
class DecodeBatch:
    """The prompts being decoded, stacked on the device; ``inputs`` holds the model's keyword arguments and
    aliases the batch's track tensors, so committing tokens in place updates the next forward's input."""

    jobs: list[DecodeJob]
    batch: ProteinBatch
    inputs: dict[str, Any]
    inner: Tensor  # [B, L] bool: positions 1 .. len-2 of each prompt

    @staticmethod
    def build(jobs: list[DecodeJob], batch: ProteinBatch, attend_to_padding: bool) -> DecodeBatch:
        inputs: dict[str, Any] = model_inputs(batch)  # built once: coordinates and pLDDT never change
        if all(j.working is not None and j.working.coordinates is None for j in jobs):
            # No prompt has coordinates: all-inf coordinates give no frames, so geometric attention adds exactly
            # zero and per-residue pLDDT is the default 0. Leaving both out lets the trunk skip that branch.
            del inputs["structure_coords"], inputs["per_res_plddt"]
        inputs["attend_to_padding"] = attend_to_padding
        inputs["validate"] = False  # prompts are checked on the host; validating would sync every step
        positions = torch.arange(batch.sequence.shape[1], device=batch.sequence.device)
        inner = (positions >= 1) & (positions < (batch.lengths - 1)[:, None])
        return DecodeBatch(list(jobs), batch, inputs, inner)

    @staticmethod
    def of(jobs: list[DecodeJob], device: torch.device, attend_to_padding: bool) -> DecodeBatch:
        return DecodeBatch.build(jobs, stack([j.working for j in jobs if j.working is not None], device=device),
                                 attend_to_padding)  # fmt: skip


def model_call(model: LogitsModel, inputs: dict[str, Any], device: torch.device, dtype: torch.dtype | None) -> Any:
    """One forward pass, under ``torch.autocast(dtype)`` if a dtype is given."""
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        return model(**inputs)
