"""The protein tasks built on iterative decoding: folding, inverse folding and function prediction (paper A.1.10,
A.3.4; spec §10.3 "Folding" / "Inverse folding").

Every task turns each input :class:`~openesm3.protein.Protein` into a prompt, generates one track with
:func:`openesm3.generation.iterative.generate` and decodes the result with the networks of a
:class:`~openesm3.generation.bundle.ModelBundle`:

- :func:`fold`: sequence -> structure tokens -> structure decoder -> backbone, pLDDT, pTM, PAE;
- :func:`inverse_fold`: coordinates -> ``num_samples`` sequences (each with its own random stream);
- :func:`predict_function`: sequence and/or coordinates -> function tokens -> function decoder -> InterPro /
  keyword annotations with residue ranges.

Results come back in input order, one per protein: the decoded protein(s), or the
:class:`~openesm3.errors.OpenESM3Error` saying why that protein failed (the others are unaffected).

Determinism: prompt i's stream is seeded by ``derive_seed(seed, i)`` (``i`` = its index in the input, sample k of
protein i in inverse folding: ``derive_seed(derive_seed(seed, i), k)``), so a protein's output depends on the seed
and its place in the input only, not on the batch size. ``streams`` replaces the indices: a caller that drops some
inputs (the CLI, unreadable records) passes the places of the others in the whole input, so their draws do not
shift when a dropped record is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from openesm3 import constants as C
from openesm3.config import FOLD_DECODING, FUNCTION_DECODING, INVERSE_FOLD_DECODING, GenerationTrack, TaskDecoding
from openesm3.errors import InputError, OpenESM3Error
from openesm3.generation.bundle import ModelBundle
from openesm3.generation.iterative import derive_seed, generate
from openesm3.generation.protein_tensor import ProteinTensor
from openesm3.protein import Protein
from openesm3.structure import residue_constants as RC
from openesm3.tokenizers import decode_function_tokens, merge_annotations
from openesm3.utils.checks import check_batch_size, check_seed

__all__ = [
    "NON_CANONICAL_SEQUENCE_IDS",
    "Progress",
    "check_task_arguments",
    "fold",
    "inverse_fold",
    "predict_function",
    "run_track",
    "sequence_recovery",
    "stream_indices",
]

Progress = Callable[[int], Any]
# Sequence ids a task never emits: the sampleable non-canonical letters X B U Z O . - (spec §10.4 lists them as
# valid for the reference's sampler; a designed or inverse-folded sequence should be made of the 20 amino acids).
NON_CANONICAL_SEQUENCE_IDS: tuple[int, ...] = tuple(
    sorted(set(C.SEQUENCE_SAMPLEABLE_IDS) - set(C.CANONICAL_AMINO_ACID_IDS))
)
_T = TypeVar("_T")
_PROMPT_PREFIX = re.compile(r"^prompt \d+: ")


def run_track(
    bundle: ModelBundle,
    prompts: Sequence[ProteinTensor | OpenESM3Error],
    track: GenerationTrack,
    decoding: TaskDecoding,
    *,
    seeds: Sequence[int],
    batch_size: int = 8,
    invalid_ids: tuple[int, ...] = (),
    condition_on_coordinates_only: bool | Sequence[bool] = True,
    progress: Progress | None = None,
    on_batch: Callable[[list[tuple[int, ProteinTensor | OpenESM3Error]]], Any] | None = None,
) -> list[ProteinTensor | OpenESM3Error]:
    """Generate ``track`` of every prompt (errors pass through); prompt i draws from the stream ``seeds[i]``.

    Prompts are sorted by length and decoded ``batch_size`` at a time; ``progress(n)`` is called after each batch
    with the number of prompts it held, and first with the number of prompts that are errors already (so that a
    progress bar over all prompts ends at its total). ``on_batch`` gets each batch's ``(index, result)`` pairs as
    soon as it is decoded (before ``progress``), so a caller can keep results as they come.
    """
    if len(seeds) != len(prompts):
        raise InputError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
    conditioning = (
        [condition_on_coordinates_only] * len(prompts)
        if isinstance(condition_on_coordinates_only, bool)
        else list(condition_on_coordinates_only)
    )
    out: list[ProteinTensor | OpenESM3Error] = list(prompts)
    valid = {i: p for i, p in enumerate(prompts) if isinstance(p, ProteinTensor)}
    todo = sorted(valid, key=lambda i: len(valid[i]))
    if progress is not None and len(valid) < len(prompts):
        progress(len(prompts) - len(valid))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        tensors = [valid[i] for i in chunk]
        configs = [
            decoding.generation_config(
                track,
                t.n_residues,
                seed=seeds[i],
                invalid_ids=invalid_ids,
                condition_on_coordinates_only=conditioning[i],
            )
            for i, t in zip(chunk, tensors)
        ]
        results = generate(bundle.esm3, tensors, configs, batch_size=None, device=bundle.device)
        for i, result in zip(chunk, results):
            if result.error is not None:
                out[i] = InputError(_PROMPT_PREFIX.sub("", str(result.error)))
            else:
                out[i] = result.unwrap()
        if on_batch is not None:
            on_batch([(i, out[i]) for i in chunk])
        if progress is not None:
            progress(len(chunk))
    return out


def gathered(out: list[_T | None], n: int) -> list[_T]:
    """The results of a task's ``n`` proteins (or prompts), once its callbacks have filled every slot of ``out``."""
    done = [result for result in out if result is not None]
    assert len(done) == n, "every protein gets a result"
    return done


def check_task_arguments(proteins: Any, seed: Any, batch_size: Any) -> None:
    """One-line errors for the arguments every task shares (a lone Protein, a bad seed or batch size)."""
    if isinstance(proteins, Protein):
        raise InputError("proteins must be a list of Protein; for one protein pass [protein]")
    check_batch_size(batch_size)
    check_seed(seed)


def stream_indices(streams: Sequence[int] | None, n: int) -> list[int]:
    """The stream index of each of ``n`` proteins: ``streams`` (checked) or, when None, their positions 0..n-1."""
    if streams is None:
        return list(range(n))
    if isinstance(streams, int):
        raise InputError("streams must be a list of int, one per protein")
    out = list(streams)
    if len(out) != n:
        raise InputError(f"got {n} proteins but {len(out)} streams")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise InputError(f"streams must be non-negative ints, got {s!r}")
    return out


def _prompt(bundle: ModelBundle, make: Callable[[], Protein], name: str) -> ProteinTensor | OpenESM3Error:
    """Build and encode one prompt; an error is returned (not raised) so the batch goes on."""
    try:
        protein = make()
        tensor = bundle.encode(protein, structure_tokens=False)
        bundle.check_length(tensor, name)
        return tensor
    except OpenESM3Error as exc:
        return exc


def _masked_like(protein: Protein) -> str:
    """All-mask sequence with the chain breaks of ``protein`` (``"____|___"``)."""
    breaks = set(protein.chain_break_positions().tolist())
    return "".join(C.SEQUENCE_CHAINBREAK_CHAR if i in breaks else C.SEQUENCE_MASK_CHAR for i in range(len(protein)))


def _label(protein: Protein, index: int) -> str:
    return protein.name or f"protein {index + 1}"


# ---------------------------------------------------------------------------------------------------------------
# fold
# ---------------------------------------------------------------------------------------------------------------
def fold(
    bundle: ModelBundle,
    proteins: Sequence[Protein],
    decoding: TaskDecoding = FOLD_DECODING,
    *,
    seed: int = 0,
    batch_size: int = 8,
    progress: Progress | None = None,
    on_result: Callable[[int, Protein | OpenESM3Error], Any] | None = None,
    streams: Sequence[int] | None = None,
) -> list[Protein | OpenESM3Error]:
    """Predict the structure of every protein from its sequence (paper A.3.4; spec §10.3 "Folding").

    The prompt is the sequence alone (other tracks of the input are ignored); structure tokens are decoded
    iteratively, then the structure decoder gives backbone coordinates (O placed from the backbone), per-residue
    pLDDT, pTM and PAE. Name, chain ids and numbering come from the input.

    ``on_result(i, result)`` is called once per protein as soon as its result is final (after its batch; proteins
    that could not be prompted at the end), so a long run can save each structure as it comes: an interrupted run
    keeps what was done. The results are the same with or without it. ``streams``: protein i draws from stream
    ``derive_seed(seed, streams[i])`` (default ``streams[i] = i``).

    Returns:
        Per protein: a :class:`Protein` with ``sequence``, ``coordinates`` [L, 37, 3], ``plddt`` [L], ``ptm`` and
        ``pae`` [L, L], or the error for that protein.
    """

    def make(protein: Protein) -> Callable[[], Protein]:
        def build() -> Protein:
            if protein.sequence is None:
                raise InputError(f"{protein.error_prefix()}has no sequence to fold")
            return Protein(sequence=protein.sequence, name=protein.name, chain_ids=protein.chain_ids)

        return build

    check_task_arguments(proteins, seed, batch_size)
    indices = stream_indices(streams, len(proteins))
    prompts = [_prompt(bundle, make(p), _label(p, i)) for i, p in enumerate(proteins)]
    seeds = [derive_seed(seed, s) for s in indices]
    out: list[Protein | OpenESM3Error | None] = [None] * len(proteins)

    def finish(batch: list[tuple[int, ProteinTensor | OpenESM3Error]]) -> None:
        for i, result in batch:
            final: Protein | OpenESM3Error
            if isinstance(result, OpenESM3Error):
                final = result
            else:
                try:
                    folded = bundle.decode(result, template=proteins[i])
                    final = folded.replace(
                        residue_index=proteins[i].residue_index, insertion_code=proteins[i].insertion_code
                    )
                except OpenESM3Error as exc:
                    final = exc
            out[i] = final
            if on_result is not None:
                on_result(i, final)

    results = run_track(
        bundle, prompts, "structure", decoding, seeds=seeds, batch_size=batch_size, progress=progress, on_batch=finish
    )
    finish([(i, result) for i, result in enumerate(results) if out[i] is None])  # prompts that were errors
    return gathered(out, len(proteins))


# ---------------------------------------------------------------------------------------------------------------
# inverse fold
# ---------------------------------------------------------------------------------------------------------------
def sequence_recovery(designed: str, native: str) -> float:
    """Fraction of the native's residues (canonical amino acids; masks, chain breaks and X excluded) that the
    designed sequence has at the same position. NaN when the native has no such residue."""
    if len(designed) != len(native):
        raise InputError(f"sequence recovery: the designed sequence has {len(designed)} positions, the native "
                         f"{len(native)}")  # fmt: skip
    counted = [(d, n) for d, n in zip(designed.upper(), native.upper()) if n in C.CANONICAL_AMINO_ACIDS]
    if not counted:
        return float("nan")
    return sum(d == n for d, n in counted) / len(counted)


def inverse_fold(
    bundle: ModelBundle,
    proteins: Sequence[Protein],
    num_samples: int = 1,
    decoding: TaskDecoding = INVERSE_FOLD_DECODING,
    *,
    seed: int = 0,
    batch_size: int = 8,
    progress: Progress | None = None,
    streams: Sequence[int] | None = None,
    on_batch: Callable[[list[tuple[int, list[Protein] | OpenESM3Error]]], Any] | None = None,
) -> list[list[Protein] | OpenESM3Error]:
    """Sample ``num_samples`` sequences for the backbone of every protein (spec §10.3 "Inverse folding").

    The prompt is the coordinates with an all-mask sequence (chain breaks kept); the model reads the backbone
    through geometric attention (structure tokens are not needed). Only the 20 canonical amino acids are sampled.
    Sample k (0-based) of protein i draws from ``derive_seed(derive_seed(seed, streams[i]), k)`` (default
    ``streams[i] = i``), whatever ``num_samples``.

    ``on_batch(pairs)`` gets the ``(index, result)`` of the proteins whose samples are all done after each batch of
    ``batch_size`` samples (proteins that could not be prompted come last), so a long run can save the designs as
    they come: an interrupted run keeps what was done. The results are the same with or without it.

    Returns:
        Per protein: ``num_samples`` proteins (sequence + the input's coordinates, chain ids and numbering; named
        ``<name>_<k>``, k = 1..num_samples), or the error for that protein. Side-chain atoms are kept only where
        the designed residue is the native one; elsewhere the coordinates are the backbone (and CB).
        :func:`sequence_recovery` against the input's sequence measures how native-like they are.
    """
    check_task_arguments(proteins, seed, batch_size)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise InputError(f"num_samples must be a positive int, got {num_samples!r}")
    indices = stream_indices(streams, len(proteins))

    def make(protein: Protein) -> Callable[[], Protein]:
        def build() -> Protein:
            if protein.coordinates is None:
                raise InputError(f"{protein.error_prefix()}has no coordinates to design a sequence for "
                                 "(give a structure file)")  # fmt: skip
            backbone = protein.coordinates[:, list(RC.BACKBONE_ATOMS)]  # [L, 3 (N, CA, C), 3]
            if not np.isfinite(backbone).all(axis=(1, 2)).any():
                # Geometric attention builds frames from N, CA, C only: without them the model would see no
                # structure at all and the "design" would be an unconditional sample (e.g. a CA-only model).
                raise InputError(f"{protein.error_prefix()}no residue has all of N, CA and C, so there is no "
                                 "backbone to design a sequence for")  # fmt: skip
            return Protein(sequence=_masked_like(protein), coordinates=protein.coordinates,
                           chain_ids=protein.chain_ids, name=protein.name)  # fmt: skip

        return build

    base = [_prompt(bundle, make(p), _label(p, i)) for i, p in enumerate(proteins)]
    prompts = [b for b in base for _ in range(num_samples)]
    seeds = [derive_seed(derive_seed(seed, s), k) for s in indices for k in range(num_samples)]
    samples: list[ProteinTensor | OpenESM3Error | None] = [None] * len(prompts)
    out: list[list[Protein] | OpenESM3Error | None] = [None] * len(proteins)

    def finish(batch: list[tuple[int, ProteinTensor | OpenESM3Error]]) -> None:
        for n, sample in batch:
            samples[n] = sample
        complete = sorted({n // num_samples for n, _ in batch})
        complete = [i for i in complete if out[i] is None and all(
            s is not None for s in samples[i * num_samples : (i + 1) * num_samples])]  # fmt: skip
        for i in complete:
            out[i] = _inverse_folded(bundle, proteins[i], i, samples[i * num_samples : (i + 1) * num_samples])
        if on_batch is not None and complete:
            on_batch([(i, out[i]) for i in complete])  # type: ignore[misc]

    results = run_track(
        bundle, prompts, "sequence", decoding, seeds=seeds, batch_size=batch_size,
        invalid_ids=NON_CANONICAL_SEQUENCE_IDS, progress=progress, on_batch=finish,
    )  # fmt: skip
    finish([(n, result) for n, result in enumerate(results) if samples[n] is None])  # prompts that were errors
    return gathered(out, len(proteins))


def _inverse_folded(
    bundle: ModelBundle, protein: Protein, i: int, samples: Sequence[ProteinTensor | OpenESM3Error | None]
) -> list[Protein] | OpenESM3Error:
    """The designs of protein ``i`` from its generated samples, or the first error among them."""
    error = next((s for s in samples if isinstance(s, OpenESM3Error)), None)
    if error is not None:
        return error
    designs = []
    for k, sample in enumerate(samples, start=1):
        assert isinstance(sample, ProteinTensor) and sample.sequence is not None
        sequence = bundle.tokenizers.sequence.decode(sample.sequence.cpu())
        designs.append(protein.replace(
            sequence=sequence, coordinates=_design_coordinates(protein, sequence),
            name=f"{_label(protein, i)}_{k}", secondary_structure=None, sasa=None,
            function_annotations=None, residue_annotations=None, plddt=None, ptm=None, pae=None,
        ))  # fmt: skip
    return designs


def _design_coordinates(native: Protein, sequence: str) -> np.ndarray:
    """The native's coordinates for a designed ``sequence``: every atom where the residue is the native one; elsewhere
    the backbone, with CB when the designed residue has one, since the native side chain belongs to another residue
    (written as is, a designed Gly would carry, say, an Arg side chain)."""
    assert native.coordinates is not None
    letters, allowed = RC.parent_atom_mask()  # [21, 37]: atoms of each residue type; the last row (X) allows all
    backbone = np.zeros(RC.N_ATOM37, dtype=bool)  # N, CA, C, O, CB, OXT: the same place in every residue type
    backbone[[RC.ATOM_N, RC.ATOM_CA, RC.ATOM_C, RC.ATOM_O, RC.ATOM_CB, RC.ATOM37_ORDER["OXT"]]] = True
    rows = np.array([letters.find(aa) if aa in letters else len(letters) - 1 for aa in sequence])
    keep = allowed[rows] & backbone  # [L, 37]
    keep[[i for i, (aa, native_aa) in enumerate(zip(sequence, native.sequence or "")) if aa == native_aa]] = True
    return np.where(keep[..., None], native.coordinates, np.nan).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# predict function
# ---------------------------------------------------------------------------------------------------------------
def predict_function(
    bundle: ModelBundle,
    proteins: Sequence[Protein],
    decoding: TaskDecoding = FUNCTION_DECODING,
    *,
    seed: int = 0,
    batch_size: int = 8,
    progress: Progress | None = None,
    streams: Sequence[int] | None = None,
    on_batch: Callable[[list[tuple[int, Protein | OpenESM3Error]]], Any] | None = None,
) -> list[Protein | OpenESM3Error]:
    """Predict InterPro / keyword annotations from the sequence and/or structure of every protein.

    The prompt keeps the sequence, coordinates, SS8 and SASA of the input (annotations it has are dropped: the
    whole function track is predicted; coordinates condition through geometric attention only, without structure
    tokens, as the SDK's ``generate`` does by default); function tokens are decoded iteratively and turned into
    annotations by the function token decoder (:func:`~openesm3.tokenizers.decode_function_tokens`, ranges merged with
    :func:`~openesm3.tokenizers.merge_annotations`; 1-based inclusive ranges, InterPro labels as
    ``"name (IPRxxxxxx)"``). Protein i draws from stream ``derive_seed(seed, streams[i])`` (default
    ``streams[i] = i``). ``on_batch(pairs)`` gets each batch's ``(index, result)`` pairs as soon as they are final
    (proteins that could not be prompted come last), so a long run can save them as they come; the results are the
    same with or without it.

    Raises:
        WeightsError / VocabularyError: up front, if the function decoder weights or the function vocabulary
            cannot be found, or the vocabulary is not the decoder's (:meth:`ModelBundle.check_function_vocabulary`).

    Returns:
        Per protein: the input with ``function_annotations`` set to the prediction, or the error.
    """
    check_task_arguments(proteins, seed, batch_size)
    indices = stream_indices(streams, len(proteins))
    bundle.check_function_vocabulary()  # missing, or not the decoder's: fail before any work
    vocabulary = bundle.tokenizers.function_vocabulary

    def make(protein: Protein) -> Callable[[], Protein]:
        def build() -> Protein:
            if protein.sequence is None and protein.coordinates is None:
                raise InputError(f"{protein.error_prefix()}has neither a sequence nor coordinates to predict "
                                 "functions from")  # fmt: skip
            return protein.replace(function_annotations=None, residue_annotations=None, plddt=None, ptm=None,
                                   pae=None)  # fmt: skip

        return build

    prompts = [_prompt(bundle, make(p), _label(p, i)) for i, p in enumerate(proteins)]
    seeds = [derive_seed(seed, s) for s in indices]
    out: list[Protein | OpenESM3Error | None] = [None] * len(proteins)

    def finish(batch: list[tuple[int, ProteinTensor | OpenESM3Error]]) -> None:
        finished = [(i, _annotated(bundle, vocabulary, proteins[i], result)) for i, result in batch]
        for i, final in finished:
            out[i] = final
        if on_batch is not None and finished:
            on_batch(finished)

    results = run_track(
        bundle, prompts, "function", decoding, seeds=seeds, batch_size=batch_size, progress=progress, on_batch=finish
    )
    finish([(i, result) for i, result in enumerate(results) if out[i] is None])  # prompts that were errors
    return gathered(out, len(proteins))


def _annotated(
    bundle: ModelBundle, vocabulary: Any, protein: Protein, result: ProteinTensor | OpenESM3Error
) -> Protein | OpenESM3Error:
    """``protein`` with the annotations decoded from the generated function track, or the error."""
    if isinstance(result, OpenESM3Error):
        return result
    assert result.function is not None
    try:
        tokens = np.asarray(result.function.cpu().numpy())
        annotations = merge_annotations(decode_function_tokens(tokens, bundle, vocabulary))
        return protein.replace(function_annotations=tuple(annotations), residue_annotations=None)
    except OpenESM3Error as exc:
        return exc
