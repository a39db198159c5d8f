"""Protein design from prompts: unconditional, motif scaffolding, SS8 / keyword conditioning, and chain-of-thought
decoding across tracks (paper A.1.10, A.3.9 "Composing prompts").

A design prompt is a :class:`~openesm3.protein.Protein` whose unknown positions are masked (``_`` in sequence and
SS8, NaN coordinates); :func:`design_prompt` builds one from a length, a motif placed at chosen positions, an SS8
string and function keywords, and any Protein (e.g. read from JSON / FASTA with ``_`` masks) works too.
:func:`design` then generates the tracks of ``track_order`` one after another, each conditioned on the prompt and
on the tracks generated before it (chain of thought), and decodes the structure; prompts go batch by batch, each
batch through every track, so that its designs are final (and can be saved) before the next batch starts.

Motif scaffolding keeps the motif exactly: its sequence is never masked (the decoder only fills masked positions),
its coordinates condition the trunk through geometric attention, and after decoding the design is superposed on
the motif's backbone (N, CA, C) and the motif's own atoms replace the decoded ones at its positions; the backbone
RMSD of that superposition (``motif_rmsd``) says how well the generated structure holds the motif.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.config import DESIGN_DECODING, GenerationTrack, TaskDecoding
from openesm3.errors import InputError, OpenESM3Error
from openesm3.generation.bundle import ModelBundle
from openesm3.generation.decode_job import is_mask
from openesm3.generation.iterative import derive_seed
from openesm3.generation.protein_tensor import ProteinTensor
from openesm3.generation.tasks import (
    NON_CANONICAL_SEQUENCE_IDS,
    Progress,
    check_task_arguments,
    gathered,
    run_track,
    stream_indices,
)
from openesm3.protein import Protein
from openesm3.structure import residue_constants as RC

__all__ = ["DESIGN_TRACKS", "Design", "Motif", "design", "design_prompt", "parse_track_order", "select_motif"]

# Track names accepted in a track order, with the aliases users write.
DESIGN_TRACKS: dict[str, GenerationTrack] = {
    "sequence": "sequence",
    "seq": "sequence",
    "structure": "structure",
    "ss8": "secondary_structure",
    "secondary_structure": "secondary_structure",
    "sasa": "sasa",
    "function": "function",
}
_RANGE = re.compile(r"^([A-Za-z0-9]+?)(-?\d+)(?:-(-?\d+))?$")


@dataclass(frozen=True)
class Motif:
    """Residues cut from a structure, to be kept at ``start`` (0-based) of a design.

    Attributes:
        protein: the motif residues (sequence and atom37 coordinates, one chain).
        start: 0-based design position of the motif's first residue.
        source: where it came from, for messages (``"file.pdb A10-25"``).
    """

    protein: Protein
    start: int
    source: str

    @property
    def positions(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.protein))


@dataclass(frozen=True)
class Design:
    """One designed protein and how it was made."""

    protein: Protein
    motif_rmsd: float | None = (
        None  # backbone RMSD (Angstrom) of the decoded motif positions before the motif is put back
    )


def parse_track_order(text: str | Sequence[str]) -> tuple[GenerationTrack, ...]:
    """``"ss8,structure,sequence"`` -> tracks; sequence and structure are appended if missing (a design always has
    both). Unknown or repeated names are errors naming them."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    order: list[GenerationTrack] = []
    for name in names:
        if name not in DESIGN_TRACKS:
            raise InputError(f"track order: unknown track {name!r}; use {', '.join(sorted(DESIGN_TRACKS))}")
        track = DESIGN_TRACKS[name]
        if track in order:
            raise InputError(f"track order: track {name!r} is listed twice")
        order.append(track)
    for needed in ("sequence", "structure"):
        if needed not in order:
            order.append(needed)  # type: ignore[arg-type]
    return tuple(order)


def select_motif(structure: Protein, spec: str, source: str = "") -> Protein:
    """The residues ``spec`` (``"A10-25"``: chain, then author residue numbers, inclusive; ``"A10"`` one number;
    several comma-separated ranges of one chain are joined) of ``structure``, as a one-chain protein. A number
    covers its inserted residues too (``"H52"`` is 52, 52A, 52B, ... where the file has insertion codes).

    Raises:
        InputError: naming the range and the problem (malformed, unknown chain, residue not in the file, no
            coordinates).
    """
    where = f"motif {source + ' ' if source else ''}{spec!r}"
    if structure.coordinates is None or structure.sequence is None:
        raise InputError(f"{where}: the motif file has no sequence and coordinates")
    chain_of = np.empty(len(structure), dtype=object)
    for chain_id, start, end in structure.chain_segments():
        chain_of[start:end] = chain_id
    numbers = structure.residue_index if structure.residue_index is not None else np.arange(1, len(structure) + 1)
    codes = structure.insertion_code if structure.insertion_code is not None else np.full(len(structure), "")
    picked: list[int] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        match = _RANGE.match(part)
        if match is None:
            raise InputError(f"{where}: cannot read {part!r}; write a chain id and residue numbers, e.g. A10-25")
        chain, first, last = match.group(1), int(match.group(2)), int(match.group(3) or match.group(2))
        if chain not in set(chain_of.tolist()):
            raise InputError(
                f"{where}: chain {chain!r} is not in the file (chains: {', '.join(structure.chain_ids or ())})"
            )
        if last < first:
            raise InputError(f"{where}: range {part!r} ends before it starts")
        in_chain = chain_of == chain
        for number in range(first, last + 1):
            if not (in_chain & (numbers == number)).any():
                raise InputError(f"{where}: chain {chain} has no residue {number}")
        # Every residue numbered in the range, inserted ones (52A, 52B) included, in chain order: taking one residue
        # per number would drop them and join their neighbours into a motif that is not contiguous in space.
        hits = np.flatnonzero(in_chain & (numbers >= first) & (numbers <= last))
        labels = [f"{numbers[i]}{codes[i]}" for i in hits]
        twice = next((label for k, label in enumerate(labels) if label in labels[:k]), None)
        if twice is not None:
            raise InputError(f"{where}: chain {chain} has two residues numbered {twice}, so the range is ambiguous")
        picked.extend(hits.tolist())
    if not picked:
        raise InputError(f"{where}: no residues selected")
    if len(set(picked)) != len(picked):
        raise InputError(f"{where}: a residue is selected twice")
    idx = np.asarray(picked)
    coords = structure.coordinates[idx]
    if not np.isfinite(coords[:, list(RC.BACKBONE_ATOMS)]).all():
        bad = int(np.flatnonzero(~np.isfinite(coords[:, list(RC.BACKBONE_ATOMS)]).all(axis=(1, 2)))[0])
        raise InputError(f"{where}: residue {int(numbers[idx[bad]])} lacks backbone atoms (N, CA, C)")
    sequence = "".join(structure.sequence[i] for i in picked)
    if any(c not in C.CANONICAL_AMINO_ACIDS for c in sequence):
        bad = next(i for i, c in enumerate(sequence) if c not in C.CANONICAL_AMINO_ACIDS)
        raise InputError(f"{where}: residue {int(numbers[idx[bad]])} is {sequence[bad]!r}, not a standard amino acid")
    return Protein(sequence=sequence, coordinates=coords, name=structure.name)


def design_prompt(
    length: int,
    *,
    motifs: Sequence[Motif] = (),
    ss8: str | None = None,
    keywords: Sequence[str] = (),
    name: str = "design",
) -> Protein:
    """A masked prompt of ``length`` residues with the motifs placed, the SS8 string and keywords (whole length).

    Raises:
        InputError: a motif that does not fit (past the end, overlapping another), an SS8 string of the wrong
            length or with letters outside ``GHITEBSC_``.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InputError(f"design length must be a positive int, got {length!r}")
    sequence = [C.SEQUENCE_MASK_CHAR] * length
    coordinates = np.full((length, RC.N_ATOM37, 3), np.nan, dtype=np.float32)
    taken = np.zeros(length, dtype=bool)
    for motif in motifs:
        n = len(motif.protein)
        if motif.start < 0 or motif.start + n > length:
            raise InputError(
                f"motif {motif.source}: {n} residues at position {motif.start + 1} do not fit a design of length "
                f"{length} (they would end at {motif.start + n})"
            )
        span = slice(motif.start, motif.start + n)
        if taken[span].any():
            raise InputError(
                f"motif {motif.source}: positions {motif.start + 1}-{motif.start + n} overlap another motif"
            )
        taken[span] = True
        assert motif.protein.sequence is not None and motif.protein.coordinates is not None
        sequence[span] = list(motif.protein.sequence)
        coordinates[span] = motif.protein.coordinates
    if ss8 is not None and len(ss8) != length:
        raise InputError(f"--ss8: {len(ss8)} letters for a design of length {length}")
    annotations = tuple(FunctionAnnotation(k, 1, length) for k in keywords) or None
    return Protein(
        sequence="".join(sequence),
        coordinates=coordinates if motifs else None,
        secondary_structure=ss8,
        function_annotations=annotations,
        name=name,
    )


def _has_mask(tensor: ProteinTensor | OpenESM3Error, track: str) -> bool:
    """Whether ``track`` of ``tensor`` has a position to generate (never for an error)."""
    if not isinstance(tensor, ProteinTensor):
        return False
    value = getattr(tensor, track)
    return value is None or bool(is_mask(track, value)[1:-1].any())


def design(
    bundle: ModelBundle,
    prompts: Sequence[Protein],
    track_order: str | Sequence[GenerationTrack] = ("sequence", "structure"),
    decoding: TaskDecoding = DESIGN_DECODING,
    *,
    seed: int = 0,
    batch_size: int = 8,
    progress: Progress | None = None,
    streams: Sequence[int] | None = None,
    on_batch: Callable[[list[tuple[int, Design | OpenESM3Error]]], Any] | None = None,
) -> list[Design | OpenESM3Error]:
    """Generate the tracks of every prompt in ``track_order`` (each conditioned on the earlier ones), then decode.

    ``track_order`` is a list of track names or a comma-separated string (``"ss8,structure,sequence"``), as
    :func:`parse_track_order` reads it.

    A track with no masked position in a prompt is kept as given (e.g. a full SS8 prompt). Sequences use the 20
    canonical amino acids only. Once structure tokens have been generated they condition the later tracks together
    with any motif coordinates. Prompt i's track j draws from ``derive_seed(derive_seed(seed, j), streams[i])``
    (default ``streams[i] = i``; e.g. the CLI gives each design of each prompt its own index, so a design does not
    change with the number asked).

    Prompts are sorted by length and taken ``batch_size`` at a time; a batch goes through every track and is decoded
    before the next one starts, so ``on_batch`` gets its ``(index, result)`` pairs as soon as they are final (the
    prompts that could not be encoded come last), and a long run can save the designs as they come: an interrupted
    run keeps what was done. The results are the same with or without it, and with any batch size.
    ``progress(n)`` counts prompts per track (``len(prompts) * len(track_order)`` in all).

    Returns:
        Per prompt: a :class:`Design` (sequence, backbone coordinates, pLDDT, pTM, PAE; generated SS8 / SASA /
        function annotations when in the order), or the error for that prompt.
    """
    check_task_arguments(prompts, seed, batch_size)
    indices = stream_indices(streams, len(prompts))
    order = parse_track_order(track_order if isinstance(track_order, str) else list(track_order))
    function = "function" in order
    if function:
        bundle.check_function_vocabulary()  # decoding the function track needs both, matching: fail up front
    tensors: list[ProteinTensor | OpenESM3Error] = []
    for i, prompt in enumerate(prompts):
        try:
            tensor = bundle.encode(prompt, structure_tokens=False)
            bundle.check_length(tensor, prompt.name or f"prompt {i + 1}")
            tensors.append(tensor)
        except OpenESM3Error as exc:
            tensors.append(exc)
    out: list[Design | OpenESM3Error | None] = [None] * len(prompts)
    lengths = {i: len(t) for i, t in enumerate(tensors) if isinstance(t, ProteinTensor)}
    valid = list(lengths)
    if progress is not None and len(valid) < len(prompts):
        progress((len(prompts) - len(valid)) * len(order))  # nothing to generate for them: done with, for the bar
    todo = sorted(valid, key=lambda i: lengths[i])  # the batches run_track makes of the whole input
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        for j, track in enumerate(order):
            selected = [i for i in chunk if _has_mask(tensors[i], track)]
            if progress is not None and len(selected) < len(chunk):
                progress(len(chunk) - len(selected))  # nothing to generate (or failed): done with, for the bar
            if not selected:
                continue
            # Generated structure tokens must reach the model: keep them even when motif coordinates are present.
            conditioning = [tensors[i].structure is None for i in selected]  # type: ignore[union-attr]
            results = run_track(
                bundle, [tensors[i] for i in selected], track, decoding,
                seeds=[derive_seed(derive_seed(seed, j), indices[i]) for i in selected], batch_size=batch_size,
                invalid_ids=NON_CANONICAL_SEQUENCE_IDS if track == "sequence" else (),
                condition_on_coordinates_only=conditioning, progress=progress,
            )  # fmt: skip
            for i, result in zip(selected, results):
                tensors[i] = result
        finished = [(i, _finish(bundle, prompts[i], tensors[i], function)) for i in chunk]
        for i, final in finished:
            out[i] = final
        if on_batch is not None:
            on_batch(finished)
    failed: list[tuple[int, Design | OpenESM3Error]] = []
    for i, unfinished in enumerate(tensors):
        if out[i] is None:  # could not be encoded
            assert isinstance(unfinished, OpenESM3Error)
            out[i] = unfinished
            failed.append((i, unfinished))
    if on_batch is not None and failed:
        on_batch(failed)
    return gathered(out, len(prompts))


def _finish(
    bundle: ModelBundle, prompt: Protein, tensor: ProteinTensor | OpenESM3Error, function: bool
) -> Design | OpenESM3Error:
    if isinstance(tensor, OpenESM3Error):
        return tensor
    try:
        decoded_tensor = tensor.clone()
        decoded_tensor.residue_annotations = None
        if not function:
            decoded_tensor.function = None  # keyword prompts are inputs here, not outputs to decode
        decoded_tensor.coordinates = None  # the generated structure gives the coordinates
        protein = bundle.decode(decoded_tensor, template=prompt)
        if not function:
            protein = protein.replace(function_annotations=prompt.function_annotations)
        return _restore_motif(protein, prompt)
    except OpenESM3Error as exc:
        return exc


def _restore_motif(protein: Protein, prompt: Protein) -> Design:
    """Superpose the design on the prompt's fixed backbone and put the prompt's own atoms back there."""
    if prompt.coordinates is None or protein.coordinates is None:
        return Design(protein)
    backbone = list(RC.BACKBONE_ATOMS)
    fixed = np.isfinite(prompt.coordinates[:, backbone]).all(axis=(1, 2))
    if not fixed.any():
        return Design(protein)
    from openesm3.geometry.alignment import kabsch  # noqa: PLC0415

    mobile = torch.from_numpy(protein.coordinates[fixed][:, backbone].reshape(-1, 3).astype(np.float64))
    target = torch.from_numpy(prompt.coordinates[fixed][:, backbone].reshape(-1, 3).astype(np.float64))
    fit = kabsch(mobile, target)
    rotation, translation = fit.rotation.numpy(), fit.translation.numpy()
    coords = (protein.coordinates.astype(np.float64) @ rotation.T + translation).astype(np.float32)
    coords[fixed] = prompt.coordinates[fixed]
    return Design(protein.replace(coordinates=coords), motif_rmsd=float(fit.rmsd))
