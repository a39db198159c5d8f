"""Token-level view of one protein (all tracks, BOS/EOS included) and batching with per-track padding.

A :class:`ProteinTensor` is what the models see for one protein: every track as token ids of length L + 2
(BOS at 0, EOS at L + 1; chains of a complex joined by the chain-break token), plus coordinates. A track that
is ``None`` is absent; :meth:`ProteinTensor.filled` replaces absent tracks by the model's defaults (all-mask
sequence and structure with BOS/EOS, zeros elsewhere, +inf coordinates); :meth:`ProteinTensor.empty` is the same
without coordinates (spec §10.1 ``empty``).

:func:`stack` right-pads several proteins into one batch with each track's pad id (spec §10.3: sequence 1,
structure 4099, other tracks 0, coordinates +inf) and returns the padding mask; :func:`model_inputs` turns a
batch into the keyword arguments of :class:`openesm3.models.esm3.ESM3`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.errors import InputError

# Track name -> (pad id, trailing shape). Coordinates are handled separately (float, +inf padding).
TRACK_PAD_IDS: dict[str, int] = {
    "sequence": C.SEQUENCE_PAD,
    "structure": C.STRUCTURE_PAD,
    "secondary_structure": C.SS8_PAD,
    "sasa": C.SASA_PAD,
    "function": C.FUNCTION_PAD,
    "residue_annotations": C.RESIDUE_PAD,
}
TRACK_TRAILING_SHAPE: dict[str, tuple[int, ...]] = {
    "sequence": (),
    "structure": (),
    "secondary_structure": (),
    "sasa": (),
    "function": (C.FUNCTION_DEPTH,),
    "residue_annotations": (C.RESIDUE_MAX_PER_POSITION,),
}
TOKEN_TRACKS: tuple[str, ...] = tuple(TRACK_PAD_IDS)


@dataclass
class ProteinTensor:
    """All tracks of one protein as tensors of length L + 2 (BOS/EOS included); ``None`` = track absent.

    Shapes: sequence, structure, secondary_structure, sasa [L+2] int64; function [L+2, 8]; residue_annotations
    [L+2, 16]; coordinates [L+2, 37, 3] float32 (Angstrom, +inf at BOS/EOS, NaN for missing atoms).
    """

    sequence: Tensor | None = None
    structure: Tensor | None = None
    secondary_structure: Tensor | None = None
    sasa: Tensor | None = None
    function: Tensor | None = None
    residue_annotations: Tensor | None = None
    coordinates: Tensor | None = None

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        """Number of tokens, L + 2."""
        for name in (*TOKEN_TRACKS, "coordinates"):
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        raise InputError("ProteinTensor has no track at all; its length is undefined")

    @property
    def n_residues(self) -> int:
        return len(self) - 2

    def validate(self) -> None:
        """Check dtypes, trailing shapes and that all present tracks have the same length (naming them)."""
        lengths: dict[str, int] = {}
        for name in TOKEN_TRACKS:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, Tensor) or value.dtype not in (torch.int64, torch.int32):
                raise InputError(f"track {name!r}: expected an int64 tensor, got {_describe(value)}")
            if tuple(value.shape[1:]) != TRACK_TRAILING_SHAPE[name]:
                expected = ("L+2", *TRACK_TRAILING_SHAPE[name])
                raise InputError(f"track {name!r}: expected shape {expected}, got {tuple(value.shape)}")
            lengths[name] = int(value.shape[0])
        if self.coordinates is not None:
            c = self.coordinates
            if not isinstance(c, Tensor) or not c.is_floating_point() or c.ndim != 3 or tuple(c.shape[1:]) != (37, 3):
                raise InputError(f"coordinates: expected a float tensor [L+2, 37, 3], got {_describe(c)}")
            lengths["coordinates"] = int(c.shape[0])
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise InputError(f"tracks disagree in length (BOS/EOS included): {detail}")
        if lengths and min(lengths.values()) < 2:
            raise InputError("a ProteinTensor needs at least the BOS and EOS positions")

    @staticmethod
    def empty(n_residues: int, device: torch.device | str = "cpu") -> ProteinTensor:
        """Every token track filled with the model's defaults for an L-residue protein, coordinates absent (spec
        §10.1 ``empty``; as in the reference, so that structure tokens set on it are not dropped by
        ``condition_on_coordinates_only``)."""
        out = ProteinTensor().filled(n_residues + 2, device=device)
        out.coordinates = None
        return out

    def filled(self, length: int | None = None, device: torch.device | str | None = None) -> ProteinTensor:
        """A copy where every absent track holds the model's default (mask with BOS/EOS, zeros, +inf)."""
        length = len(self) if length is None else length
        if device is None:
            present = [v for v in self._fields().values() if v is not None]
            device = present[0].device if present else "cpu"
        out = dataclasses.replace(self)
        if out.sequence is None:
            out.sequence = _framed(length, C.SEQUENCE_MASK, C.SEQUENCE_BOS, C.SEQUENCE_EOS, device)
        if out.structure is None:
            out.structure = _framed(length, C.STRUCTURE_MASK, C.STRUCTURE_BOS, C.STRUCTURE_EOS, device)
        for name in ("secondary_structure", "sasa", "function", "residue_annotations"):
            if getattr(out, name) is None:
                shape = (length, *TRACK_TRAILING_SHAPE[name])
                setattr(out, name, torch.full(shape, TRACK_PAD_IDS[name], dtype=torch.long, device=device))
        if out.coordinates is None:
            out.coordinates = torch.full((length, 37, 3), float("inf"), device=device)
        out.validate()
        return out

    def to(self, device: torch.device | str) -> ProteinTensor:
        return ProteinTensor(**{k: (v.to(device) if v is not None else None) for k, v in self._fields().items()})

    def clone(self) -> ProteinTensor:
        return ProteinTensor(**{k: (v.clone() if v is not None else None) for k, v in self._fields().items()})

    def _fields(self) -> dict[str, Tensor | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _framed(length: int, fill: int, bos: int, eos: int, device: torch.device | str) -> Tensor:
    t = torch.full((length,), fill, dtype=torch.long, device=device)
    t[0], t[-1] = bos, eos
    return t


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


@dataclass
class ProteinBatch:
    """Several proteins right-padded to a common length; every track present (defaults filled in).

    ``lengths`` [B] are the token lengths (L_i + 2); ``padding`` [B, Lmax] is True at padded positions.
    """

    sequence: Tensor
    structure: Tensor
    secondary_structure: Tensor
    sasa: Tensor
    function: Tensor
    residue_annotations: Tensor
    coordinates: Tensor
    lengths: Tensor
    padding: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.sequence.shape[0])

    def unstack(self) -> list[ProteinTensor]:
        """Split back into one :class:`ProteinTensor` per protein, padding removed."""
        out = []
        for i, n in enumerate(self.lengths.tolist()):
            out.append(ProteinTensor(**{name: getattr(self, name)[i, :n] for name in (*TOKEN_TRACKS, "coordinates")}))
        return out


def stack(proteins: list[ProteinTensor], device: torch.device | str | None = None) -> ProteinBatch:
    """Right-pad ``proteins`` into a :class:`ProteinBatch` (absent tracks get defaults before padding)."""
    if not proteins:
        raise InputError("cannot batch an empty list of proteins")
    filled = [p.filled(device=device) for p in proteins]
    lengths = [len(p) for p in filled]
    max_len = max(lengths)
    dev = filled[0].sequence.device if device is None else torch.device(device)  # type: ignore[union-attr]
    tracks: dict[str, Tensor] = {}
    for name in TOKEN_TRACKS:
        shape = (len(filled), max_len, *TRACK_TRAILING_SHAPE[name])
        out = torch.full(shape, TRACK_PAD_IDS[name], dtype=torch.long, device=dev)
        for i, p in enumerate(filled):
            out[i, : lengths[i]] = getattr(p, name).to(dev)
        tracks[name] = out
    coords = torch.full((len(filled), max_len, 37, 3), float("inf"), device=dev)
    for i, p in enumerate(filled):
        coords[i, : lengths[i]] = p.coordinates.to(dev)  # type: ignore[union-attr]
    length_t = torch.tensor(lengths, device=dev)
    padding = torch.arange(max_len, device=dev)[None, :] >= length_t[:, None]
    return ProteinBatch(**tracks, coordinates=coords, lengths=length_t, padding=padding)


def per_residue_plddt_from_coordinates(coordinates: Tensor) -> Tensor:
    """1.0 where any atom of the residue has all-finite xyz, else 0.0 (spec §10.2). [..., L, 37, 3] -> [..., L]."""
    return torch.isfinite(coordinates).all(-1).any(-1).float()


def model_inputs(batch: ProteinBatch, *, condition_on_coordinates: bool = True) -> dict[str, Tensor]:
    """Keyword arguments of ``ESM3.forward`` for ``batch``, as the official ``logits()`` builds them (spec
    §10.2): average pLDDT 1, per-residue pLDDT 1 exactly where coordinates exist; padding is visible to the
    model through the sequence's ``<pad>`` tokens."""
    inputs: dict[str, Tensor] = {
        "sequence_tokens": batch.sequence,
        "structure_tokens": batch.structure,
        "ss8_tokens": batch.secondary_structure,
        "sasa_tokens": batch.sasa,
        "function_tokens": batch.function,
        "residue_annotation_tokens": batch.residue_annotations,
    }
    # Always passed when conditioning (no host sync to test for their presence): all-inf coordinates give no
    # frames, so geometric attention contributes exactly 0 and per-residue pLDDT is the default 0.
    if condition_on_coordinates:
        inputs["structure_coords"] = batch.coordinates
        inputs["per_res_plddt"] = per_residue_plddt_from_coordinates(batch.coordinates)
    return inputs
