"""Checking, defaulting and broadcasting the tracks of an ESM3 forward pass (spec §4.1, §2).

Every input is optional; L comes from the first given track. Missing tracks get the reference's defaults with
shape (1, L) and are broadcast over the batch. Checks run once, before the network, with a single host sync
for all value checks; errors are :class:`~openesm3.errors.InputError` naming the track and the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.config import ESM3Config
from openesm3.errors import InputError

# Token tracks: name -> (number of ids = embedding rows, trailing dims after [B, L]).
# Structure tokens additionally accept -1 (= mask, spec §2).
_TOKEN_TRACKS: dict[str, tuple[int, int]] = {
    "sequence_tokens": (C.SEQUENCE_EMBED_DIM, 0),
    "structure_tokens": (C.STRUCTURE_VOCAB_SIZE, 0),
    "ss8_tokens": (C.SS8_VOCAB_SIZE, 0),
    "sasa_tokens": (C.SASA_VOCAB_SIZE, 0),
    "function_tokens": (C.FUNCTION_VOCAB_SIZE, 1),
    "residue_annotation_tokens": (C.RESIDUE_VOCAB_SIZE, 1),
}
# The order in which the reference takes L from the first given track (spec §4.1).
_LENGTH_ORDER = (
    "sequence_tokens", "structure_tokens", "ss8_tokens", "sasa_tokens", "structure_coords", "function_tokens",
    "residue_annotation_tokens",
)  # fmt: skip


@dataclass(frozen=True)
class ESM3Inputs:
    """All tracks filled in, broadcast to [B, L, ...], ids as int64, floats as fp32."""

    sequence_tokens: Tensor  # [B, L]
    structure_tokens: Tensor  # [B, L], specials already derived from the sequence
    ss8_tokens: Tensor  # [B, L]
    sasa_tokens: Tensor  # [B, L]
    function_tokens: Tensor  # [B, L, 8]
    residue_annotation_tokens: Tensor  # [B, L, N]
    average_plddt: Tensor  # [B, L] or [B, 1]
    per_res_plddt: Tensor  # [B, L]
    structure_coords: Tensor | None  # [B, L, 3, 3] fp32 (N, CA, C) or None when not given
    chain_id: Tensor  # [B, L]
    sequence_id: Tensor | None  # [B, L] or None
    padding: Tensor | None  # [B, L] bool, True at sequence <pad>; None when no sequence was given
    taxonomy_tokens: Tensor | None  # [B, T] or None

    @property
    def batch_size(self) -> int:
        return int(self.sequence_tokens.shape[0])

    @property
    def length(self) -> int:
        return int(self.sequence_tokens.shape[1])


def _is_integer(t: Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def prepare_inputs(
    config: ESM3Config,
    device: torch.device,
    *,
    sequence_tokens: Tensor | None = None,
    structure_tokens: Tensor | None = None,
    ss8_tokens: Tensor | None = None,
    sasa_tokens: Tensor | None = None,
    function_tokens: Tensor | None = None,
    residue_annotation_tokens: Tensor | None = None,
    average_plddt: Tensor | float | None = None,
    per_res_plddt: Tensor | None = None,
    structure_coords: Tensor | None = None,
    chain_id: Tensor | None = None,
    sequence_id: Tensor | None = None,
    taxonomy_tokens: Tensor | None = None,
    validate: bool = True,
) -> ESM3Inputs:
    """Validate the given tracks and fill the missing ones with the reference defaults (spec §4.1).

    Args:
        config: the model's config (max length, taxonomy vocabulary).
        device: the model's device; every input must already be there.
        validate: run the value checks (ids in range, finite pLDDT). Shape, dtype and device checks always
            run (they cost no host sync); turn this off only for compiled or benchmark loops.
    """
    given = {
        "sequence_tokens": sequence_tokens, "structure_tokens": structure_tokens, "ss8_tokens": ss8_tokens,
        "sasa_tokens": sasa_tokens, "function_tokens": function_tokens,
        "residue_annotation_tokens": residue_annotation_tokens, "per_res_plddt": per_res_plddt,
        "structure_coords": structure_coords, "chain_id": chain_id, "sequence_id": sequence_id,
    }  # fmt: skip
    if isinstance(average_plddt, (int, float)):
        average_plddt = torch.tensor(float(average_plddt), device=device)
    for name, value in [*given.items(), ("average_plddt", average_plddt), ("taxonomy_tokens", taxonomy_tokens)]:
        if value is not None and not isinstance(value, Tensor):
            raise InputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
        if value is not None and value.device != device:
            raise InputError(f"{name}: is on {value.device}, the model is on {device}; move the inputs first")

    length_from = next((n for n in _LENGTH_ORDER if given[n] is not None), None)
    if length_from is None:
        raise InputError(
            "no track given: pass at least one of sequence_tokens, structure_tokens, ss8_tokens, sasa_tokens, "
            "structure_coords, function_tokens, residue_annotation_tokens"
        )
    ref = given[length_from]
    assert ref is not None
    if ref.dim() < 2:
        raise InputError(f"{length_from}: expected a batch [B, L, ...], got shape {tuple(ref.shape)}")
    length = int(ref.shape[1])
    if length < 1:
        raise InputError(f"{length_from}: length is 0; a protein needs at least one token")
    if length > config.max_length:
        raise InputError(
            f"{length_from}: length {length} exceeds the model's maximum of {config.max_length} tokens "
            "(including BOS/EOS)"
        )

    # ---- shapes and dtypes --------------------------------------------------------------------------------
    batch = 1
    for name, value in given.items():
        if value is None:
            continue
        trailing = _expected_trailing(name)
        if (
            value.dim() != 2 + len(trailing)
            or int(value.shape[1]) != length
            or not all(ok(int(got)) for got, ok in zip(value.shape[2:], trailing))
        ):
            raise InputError(
                f"{name}: expected shape {_describe(name)} with L={length} (from {length_from}), "
                f"got {tuple(value.shape)}"
            )
        batch = _merge_batch(batch, int(value.shape[0]), name)
        if name == "structure_coords" or name == "per_res_plddt":
            if not value.dtype.is_floating_point:
                raise InputError(f"{name}: expected a floating-point tensor, got {value.dtype}")
        elif name == "sequence_id":
            if not (_is_integer(value) or value.dtype == torch.bool):
                raise InputError(f"{name}: expected an integer or bool tensor, got {value.dtype}")
        elif not _is_integer(value):
            raise InputError(f"{name}: expected an integer tensor of token ids, got {value.dtype}")
    if average_plddt is not None:
        if not average_plddt.dtype.is_floating_point:
            raise InputError(f"average_plddt: expected a floating-point tensor, got {average_plddt.dtype}")
        if average_plddt.dim() == 1:  # one value per protein
            batch = _merge_batch(batch, int(average_plddt.shape[0]), "average_plddt")
            average_plddt = average_plddt[:, None]
        elif average_plddt.dim() == 2 and int(average_plddt.shape[1]) in (1, length):
            batch = _merge_batch(batch, int(average_plddt.shape[0]), "average_plddt")
        elif average_plddt.dim() != 0:
            raise InputError(
                f"average_plddt: expected a scalar, [B] or [B, L] with L={length}, got {tuple(average_plddt.shape)}"
            )
    if taxonomy_tokens is not None:
        if config.n_taxonomy_terms == 0:
            raise InputError("taxonomy_tokens: this model has no taxonomy track (config.n_taxonomy_terms = 0)")
        if taxonomy_tokens.dim() != 2 or not _is_integer(taxonomy_tokens):
            raise InputError(
                f"taxonomy_tokens: expected integer term ids [B, T], got {tuple(taxonomy_tokens.shape)} "
                f"{taxonomy_tokens.dtype}"
            )
        batch = _merge_batch(batch, int(taxonomy_tokens.shape[0]), "taxonomy_tokens")

    # ---- values: one host sync for every check --------------------------------------------------------------
    if validate:
        _check_values(given, average_plddt, taxonomy_tokens, config)

    # ---- defaults (spec §4.1) and broadcasting -------------------------------------------------------------
    def tokens(value: Tensor | None, fill: int, trailing: tuple[int, ...] = ()) -> Tensor:
        if value is None:
            return torch.full((1, length, *trailing), fill, dtype=torch.long, device=device).expand(
                batch, length, *trailing
            )
        return value.long().expand(batch, *value.shape[1:])

    seq = tokens(sequence_tokens, C.SEQUENCE_MASK)
    structure = tokens(structure_tokens, C.STRUCTURE_MASK)
    # Structure specials (spec §2): -1 means mask, then the sequence's BOS/PAD/EOS/chain-break are copied over.
    structure = torch.where(structure == -1, C.STRUCTURE_MASK, structure)
    for seq_special, structure_special in C.SEQUENCE_TO_STRUCTURE_SPECIALS:
        structure = torch.where(seq == seq_special, structure_special, structure)
    if average_plddt is None:
        avg = torch.ones(1, length, device=device)
    elif average_plddt.dim() == 0:
        avg = average_plddt.float().reshape(1, 1)
    else:
        avg = average_plddt.float()
    coords = None
    if structure_coords is not None:
        coords = structure_coords[:, :, :3, :].float()  # only N, CA, C are read (atom37 input is fine)
        coords = coords.expand(batch, *coords.shape[1:])
    return ESM3Inputs(
        sequence_tokens=seq,
        structure_tokens=structure,
        ss8_tokens=tokens(ss8_tokens, C.SS8_PAD),
        sasa_tokens=tokens(sasa_tokens, C.SASA_PAD),
        function_tokens=tokens(function_tokens, C.FUNCTION_PAD, (C.FUNCTION_DEPTH,)),
        residue_annotation_tokens=tokens(
            residue_annotation_tokens,
            C.RESIDUE_PAD,
            (C.RESIDUE_MAX_PER_POSITION,) if residue_annotation_tokens is None else (),
        ),
        average_plddt=avg.expand(batch, avg.shape[1]),
        per_res_plddt=(
            torch.zeros(1, length, device=device) if per_res_plddt is None else per_res_plddt.float()
        ).expand(batch, length),
        structure_coords=coords,
        chain_id=tokens(chain_id, 0),
        sequence_id=None if sequence_id is None else sequence_id.expand(batch, length),
        padding=None if sequence_tokens is None else seq == C.SEQUENCE_PAD,
        taxonomy_tokens=None if taxonomy_tokens is None else taxonomy_tokens.long().expand(batch, -1),
    )


def _expected_trailing(name: str) -> tuple[Callable[[int], bool], ...]:
    """Predicates on the sizes of the dimensions after [B, L]."""
    if name == "function_tokens":
        return (lambda n: n == C.FUNCTION_DEPTH,)
    if name == "residue_annotation_tokens":
        return (lambda n: 1 <= n <= C.RESIDUE_MAX_PER_POSITION,)
    if name == "structure_coords":
        return (lambda n: n >= 3, lambda n: n == 3)
    return ()


def _describe(name: str) -> str:
    return {
        "function_tokens": f"[B, L, {C.FUNCTION_DEPTH}]",
        "residue_annotation_tokens": f"[B, L, N] with 1 <= N <= {C.RESIDUE_MAX_PER_POSITION}",
        "structure_coords": "[B, L, A, 3] with A >= 3 atoms (N, CA, C first; atom37 is fine)",
    }.get(name, "[B, L]")


def _merge_batch(batch: int, new: int, name: str) -> int:
    if new == batch or new == 1:
        return batch
    if batch == 1:
        return new
    raise InputError(f"{name}: batch size {new} does not match the other inputs' batch size {batch}")


def _check_values(
    given: dict[str, Tensor | None], average_plddt: Tensor | None, taxonomy_tokens: Tensor | None, config: ESM3Config
) -> None:
    checks: list[tuple[str, Tensor, str]] = []  # (name, bad-element mask, what is allowed)
    for name, (n_ids, _) in _TOKEN_TRACKS.items():
        value = given[name]
        if value is None:
            continue
        low = -1 if name == "structure_tokens" else 0
        allowed = f"{low}..{n_ids - 1}" + (" (-1 = mask)" if low < 0 else "")
        checks.append((name, (value < low) | (value >= n_ids), f"ids must lie in {allowed}"))
    if taxonomy_tokens is not None:
        n = config.n_taxonomy_terms
        checks.append(("taxonomy_tokens", (taxonomy_tokens < 0) | (taxonomy_tokens > n), f"ids must lie in 0..{n}"))
    for name, value in (("average_plddt", average_plddt), ("per_res_plddt", given["per_res_plddt"])):
        if value is not None:
            checks.append((name, ~torch.isfinite(value), "values must be finite (pLDDT lies in [0, 1])"))
    if not checks:
        return
    flags = torch.stack([bad.any() for _, bad, _ in checks]).tolist()  # the single host sync
    for (name, bad, rule), flag in zip(checks, flags):
        if flag:
            where = tuple(int(i) for i in bad.nonzero()[0])
            value = given.get(name)
            if value is None:
                value = taxonomy_tokens if name == "taxonomy_tokens" else average_plddt
            assert value is not None
            n_bad = int(bad.sum())
            raise InputError(
                f"{name}: value {value[where].item()} at index {list(where)} is invalid: {rule}"
                + (f" ({n_bad} invalid entries in total)" if n_bad > 1 else "")
            )
