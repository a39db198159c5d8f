"""Reading and writing :class:`~openesm3.protein.Protein` records: FASTA and the versioned JSON format.

**FASTA.** Multi-record; a record is a header line ``>ID [description]`` followed by sequence lines (joined,
whitespace removed; one trailing ``*`` stop symbol is dropped). The record id is the first word of the header.
A complex is one record whose chains are joined by ``|``; its chain ids may be given in the header as
``chains=H,L`` (default ``A, B, ...``). Blank lines and ``;`` comment lines are skipped. Letters are
case-insensitive, ``_`` is a masked position. An invalid character raises :class:`InputError` naming the file,
the line, the record and the position in the sequence. :func:`read_fasta` only splits the file into
:class:`FastaRecord` s, so a batch job can convert each record on its own and report a bad one without losing
the others; :func:`load_fasta` converts them all, stopping at the first bad one.

**JSON** (``"format": "openesm3.protein", "version": 1``): one object per protein with the keys below; every
key but ``format`` and ``version`` is optional and ``null`` means "absent". Inside arrays ``null`` is a missing
value (NaN): a masked SASA, an unknown pLDDT, a missing atom. Floats are written with the shortest text that
reads back to the same float32 (coordinates, pLDDT, PAE) or float64 (SASA) value, so a round trip is exact.
JSON has no infinity: an infinite SASA (the open top bin) is refused when writing, not turned into ``null`` (which
would read back as masked). A PAE is finite (:class:`Protein` refuses inf, and so ``Infinity`` in a file), NaN /
``null`` being a pair without one.

=======================  ================================================================================
key                      value
=======================  ================================================================================
``name``                 string
``sequence``             string (``_`` masked, ``|`` chain break)
``chain_ids``            list of strings, one per chain
``secondary_structure``  string over ``GHITEBSC_``
``sasa``                 list of L numbers / null (Å²)
``coordinates``          list of L residues, each a list of 37 atoms (atom37 order), each ``[x, y, z]`` or null
``function_annotations`` list of ``{"label": str, "start": int, "end": int}`` (1-indexed, inclusive)
``residue_annotations``  same
``plddt``                list of L numbers in [0, 1] / null
``ptm``                  number in [0, 1]
``pae``                  L x L list of numbers (Angstrom)
``residue_index``        list of L ints (author numbering)
``insertion_code``       list of L strings (``""`` = none)
=======================  ================================================================================

A file holds one such object, or a list of them (:func:`read_json` always returns a list).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import InputError, OpenESM3Error
from openesm3.protein import Protein, default_chain_ids
from openesm3.structure import residue_constants as RC
from openesm3.tokenizers.sequence import SequenceTokenizer
from openesm3.utils.atomic import write_text_output
from openesm3.utils.text import read_text_file

JSON_FORMAT = "openesm3.protein"
JSON_VERSION = 1
JSON_KEYS: tuple[str, ...] = (
    "format", "version", "name", "sequence", "chain_ids", "secondary_structure", "sasa", "coordinates",
    "function_annotations", "residue_annotations", "plddt", "ptm", "pae", "residue_index", "insertion_code",
)  # fmt: skip
FASTA_SUFFIXES = frozenset({".fasta", ".fa", ".faa", ".fas", ".fna", ".seq"})
JSON_SUFFIXES = frozenset({".json"})
FASTA_LINE_WIDTH = 80
CHAINS_KEY = "chains="  # header token naming the chain ids of a complex record

PathLike = str | os.PathLike[str]
_SEQUENCE = SequenceTokenizer()
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


# ==========================================================================================================
# FASTA
# ==========================================================================================================
@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record as read, before validation.

    Attributes:
        id: first word of the header (may be empty).
        description: the rest of the header.
        sequence: sequence lines joined, whitespace removed, as written (not yet validated).
        source: the file it came from.
        header_line: 1-based line number of the header.
        line_offsets: ``(position in sequence, line number)`` where each sequence line starts.
    """

    id: str
    description: str
    sequence: str
    source: str
    header_line: int
    line_offsets: tuple[tuple[int, int], ...] = ()

    @property
    def where(self) -> str:
        return f"{self.source}:{self.header_line}: record {self.id!r}"

    def line_of(self, position: int) -> int:
        """Line number holding 0-based sequence ``position``."""
        line = self.header_line
        for start, number in self.line_offsets:
            if start > position:
                break
            line = number
        return line

    @property
    def chain_ids(self) -> tuple[str, ...] | None:
        for word in self.description.split():
            if word.startswith(CHAINS_KEY):
                return tuple(word[len(CHAINS_KEY) :].split(","))
        return None

    def to_protein(self) -> Protein:
        """Validate and convert; errors name the file, line, record and position."""
        if not self.sequence:
            raise InputError(f"{self.where}: empty sequence")
        try:
            _SEQUENCE.normalize(self.sequence)
        except OpenESM3Error:
            pos = _first_invalid(self.sequence)
            raise InputError(
                f"{self.source}:{self.line_of(pos)}: record {self.id!r}: sequence position {pos + 1}: invalid "
                f"character {self.sequence[pos]!r} (allowed, case-insensitive: amino-acid letters "
                f"{C.CANONICAL_AMINO_ACIDS} and XBUZO, '.', '-', '_' = masked, '|' = chain break)"
            ) from None
        try:
            return Protein(sequence=self.sequence, name=self.id, chain_ids=self.chain_ids)
        except InputError as exc:
            raise InputError(f"{self.where}: {exc}") from None


def _first_invalid(sequence: str) -> int:
    for pos, char in enumerate(sequence):
        try:
            _SEQUENCE.normalize(char)
        except OpenESM3Error:
            return pos
    return 0


def parse_fasta(text: str, source: str = "<string>") -> list[FastaRecord]:
    """Split FASTA text into records. Raises :class:`InputError` for text that is not FASTA or has no record."""
    records: list[FastaRecord] = []
    header: tuple[str, str, int] | None = None
    chunks: list[str] = []
    offsets: list[tuple[int, int]] = []
    length = 0

    def flush() -> None:
        if header is not None:
            sequence = "".join(chunks)
            if sequence.endswith("*"):
                sequence = sequence[:-1]  # the stop symbol ending a record; one inside it is an invalid character
            records.append(FastaRecord(header[0], header[1], sequence, source, header[2], tuple(offsets)))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            flush()
            words = line[1:].strip().split(maxsplit=1)
            header = (words[0] if words else "", words[1] if len(words) > 1 else "", number)
            chunks, offsets, length = [], [], 0
            continue
        if header is None:
            raise InputError(f"{source}:{number}: not FASTA: expected a '>' header line before sequence data")
        piece = "".join(line.split())
        offsets.append((length, number))
        chunks.append(piece)
        length += len(piece)
    flush()
    if not records:
        raise InputError(f"{source}: no FASTA records (a record starts with a '>' header line)")
    return records


def read_fasta(path: PathLike) -> list[FastaRecord]:
    """The records of a FASTA file (see :func:`parse_fasta`); each converts with :meth:`FastaRecord.to_protein`."""
    return parse_fasta(read_text_file(path), str(path))


def load_fasta(path: PathLike) -> list[Protein]:
    """Every record of a FASTA file as a :class:`Protein`; raises at the first invalid record."""
    return [record.to_protein() for record in read_fasta(path)]


def iter_fasta_proteins(path: PathLike) -> Iterator[tuple[FastaRecord, Protein | InputError]]:
    """Each record with its protein, or with the error that makes it invalid (for batch jobs)."""
    for record in read_fasta(path):
        try:
            yield record, record.to_protein()
        except InputError as exc:
            yield record, exc


def fasta_string(proteins: Iterable[Protein], line_width: int = FASTA_LINE_WIDTH) -> str:
    """FASTA text of ``proteins``; the name is the id (``protein_<n>`` when empty); complexes, and single chains
    whose id is not the default ``A``, carry ``chains=``."""
    lines: list[str] = []
    for n, protein in enumerate(proteins, start=1):
        if protein.sequence is None:
            raise InputError(f"{protein.error_prefix()}has no sequence to write as FASTA")
        header = ">" + ("".join(protein.name.split()) or f"protein_{n}")
        if protein.chain_ids is not None and (protein.n_chains > 1 or protein.chain_ids != default_chain_ids(1)):
            header += f" {CHAINS_KEY}{','.join(protein.chain_ids)}"  # a lone chain's id too, unless the default
        lines.append(header)
        seq = protein.sequence
        lines.extend(seq[i : i + line_width] for i in range(0, len(seq), line_width))
    return "\n".join(lines) + "\n"


def write_fasta(path: PathLike, proteins: Iterable[Protein], line_width: int = FASTA_LINE_WIDTH) -> None:
    """Write FASTA atomically (gzip-compressed for a ``.gz`` name)."""
    write_text_output(path, fasta_string(proteins, line_width))


# ==========================================================================================================
# JSON
# ==========================================================================================================
def _floats(values: np.ndarray) -> list[Any]:
    """[N] or [N, M] floats as (nested) lists of the shortest text that reads back to the same value in the
    array's dtype; NaN / inf -> None."""
    text = values.astype(str).reshape(-1).tolist()
    finite = np.isfinite(values).reshape(-1).tolist()
    flat = [float(t) if ok else None for t, ok in zip(text, finite)]
    if values.ndim == 1:
        return flat
    n = values.shape[-1]
    return [flat[i * n : (i + 1) * n] for i in range(values.shape[0])]  # also for n == 0 ([L, 0])


def _coordinates_json(coords: np.ndarray) -> list[list[Any]]:
    present = np.isfinite(coords).all(-1)
    text = coords.astype(str)
    residues = []
    for i in range(coords.shape[0]):
        atoms: list[Any] = [None] * RC.N_ATOM37
        for a in np.flatnonzero(present[i]).tolist():
            atoms[a] = [float(t) for t in text[i, a]]
        residues.append(atoms)
    return residues


def _annotations_json(annotations: Sequence[FunctionAnnotation] | None) -> list[dict[str, Any]] | None:
    if annotations is None:
        return None
    return [{"label": a.label, "start": a.start, "end": a.end} for a in annotations]


def protein_to_json(protein: Protein) -> dict[str, Any]:
    """The JSON object (version 1) of ``protein``; see the module docstring for the schema.

    Raises:
        InputError: an infinite SASA (the open top bin: JSON has no infinity, and ``null`` would read back as masked).
            An infinite PAE cannot occur: :class:`Protein` refuses it.
    """
    p = protein
    if p.sasa is not None and np.isinf(p.sasa).any():
        at = int(np.flatnonzero(np.isinf(p.sasa))[0]) + 1
        raise InputError(
            f"{p.error_prefix()}sasa at position {at} is inf, which JSON cannot hold (null means masked); "
            "use a finite value"
        )
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "name": p.name,
        "sequence": p.sequence,
        "chain_ids": None if p.chain_ids is None else list(p.chain_ids),
        "secondary_structure": p.secondary_structure,
        "sasa": None if p.sasa is None else _floats(p.sasa),
        "coordinates": None if p.coordinates is None else _coordinates_json(p.coordinates),
        "function_annotations": _annotations_json(p.function_annotations),
        "residue_annotations": _annotations_json(p.residue_annotations),
        "plddt": None if p.plddt is None else _floats(p.plddt),
        "ptm": p.ptm,
        "pae": None if p.pae is None else _floats(p.pae),
        "residue_index": None if p.residue_index is None else p.residue_index.tolist(),
        "insertion_code": None if p.insertion_code is None else p.insertion_code.tolist(),
    }


def _nan_array(value: Any, key: str, where: str, dtype: Any, ndim: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=object)
    except ValueError as exc:  # ragged nesting
        raise InputError(f"{where}: key {key!r}: not a regular array ({exc})") from None
    if array.size == 0 and array.ndim < ndim:
        array = array.reshape((0,) * ndim)  # [] is an empty matrix too (L = 0)
    if array.ndim != ndim:
        raise InputError(f"{where}: key {key!r}: expected {ndim} nested list level(s), got shape {array.shape}")
    out = np.empty(array.shape, dtype=dtype)
    for index, item in np.ndenumerate(array):
        if item is None:
            out[index] = np.nan
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            try:
                out[index] = item
            except OverflowError:  # an int beyond the float range (JSON ints are unbounded)
                at = "][".join(str(i) for i in index)
                raise InputError(f"{where}: key {key!r}[{at}]: {item!r} is too large for a float") from None
        else:
            at = "][".join(str(i) for i in index)
            raise InputError(f"{where}: key {key!r}[{at}]: expected a number or null, got {item!r}")
    return out


def _annotations_from_json(value: Any, key: str, where: str) -> tuple[FunctionAnnotation, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(f"{where}: key {key!r}: expected a list of {{label, start, end}} objects")
    out = []
    for n, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"label", "start", "end"}:
            raise InputError(f'{where}: key {key!r}[{n}]: expected {{"label", "start", "end"}}, got {item!r}')
        out.append(FunctionAnnotation(item["label"], item["start"], item["end"]))
    return tuple(out)


def protein_from_json(data: Any, source: str = "<json>") -> Protein:
    """A :class:`Protein` from its JSON object; errors name ``source``, the protein and the key."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    name = data.get("name") or ""
    where = f"{source}: protein {name!r}" if name else source
    if data.get("format") != JSON_FORMAT:
        raise InputError(f"{where}: key 'format' must be {JSON_FORMAT!r}, got {data.get('format')!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{where}: key 'version' must be a positive int, got {version!r}")
    if version > JSON_VERSION:
        raise InputError(
            f"{where}: version {version} was written by a newer OpenESM3 (this one reads up to {JSON_VERSION})"
        )
    unknown = sorted(set(data) - set(JSON_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; known: {list(JSON_KEYS)}")
    for key in ("name", "sequence", "secondary_structure"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InputError(f"{where}: key {key!r}: expected a string, got {type(data[key]).__name__}")

    def arr(key: str, dtype: Any, ndim: int) -> np.ndarray | None:
        value = data.get(key)
        return None if value is None else _nan_array(value, key, where, dtype, ndim)

    ptm = data.get("ptm")
    if ptm is not None and (not isinstance(ptm, (int, float)) or isinstance(ptm, bool)):
        raise InputError(f"{where}: key 'ptm': expected a number or null, got {ptm!r}")
    residue_index = data.get("residue_index")
    if residue_index is not None and (
        not isinstance(residue_index, list)
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in residue_index)
    ):
        raise InputError(f"{where}: key 'residue_index': expected a list of ints")
    insertion_code = data.get("insertion_code")
    if insertion_code is not None and (
        not isinstance(insertion_code, list) or not all(isinstance(x, str) and len(x) <= 1 for x in insertion_code)
    ):
        raise InputError(f"{where}: key 'insertion_code': expected a list of strings of at most one character")
    chain_ids = data.get("chain_ids")
    if chain_ids is not None and (not isinstance(chain_ids, list) or not all(isinstance(c, str) for c in chain_ids)):
        raise InputError(f"{where}: key 'chain_ids': expected a list of strings")
    if residue_index is not None and any(not _INT64_MIN <= x <= _INT64_MAX for x in residue_index):
        raise InputError(f"{where}: key 'residue_index': a residue number does not fit in 64 bits")
    # Converted before the try below: their errors already name the file (and the protein).
    fields: dict[str, Any] = {
        "sasa": arr("sasa", np.float64, 1),
        "function_annotations": _annotations_from_json(data.get("function_annotations"), "function_annotations", where),
        "residue_annotations": _annotations_from_json(data.get("residue_annotations"), "residue_annotations", where),
        # float64: Protein names a number beyond float32 as given (1e39, not inf), then stores float32
        "plddt": arr("plddt", np.float64, 1),
        "pae": arr("pae", np.float64, 2),
    }
    try:
        return Protein(
            name=name,
            sequence=data.get("sequence"),
            chain_ids=None if chain_ids is None else tuple(chain_ids),
            secondary_structure=data.get("secondary_structure"),
            ptm=ptm,
            residue_index=None if residue_index is None else np.asarray(residue_index, dtype=np.int64),
            insertion_code=None if insertion_code is None else np.asarray(insertion_code, dtype="<U1"),
            coordinates=data.get("coordinates"),  # parsed by Protein, as coordinates given in Python are
            **fields,
        )
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def json_string(proteins: Protein | Sequence[Protein], indent: int | None = None) -> str:
    if isinstance(proteins, Protein):
        payload: Any = protein_to_json(proteins)
    else:
        payload = [protein_to_json(p) for p in proteins]
    return json.dumps(payload, indent=indent, allow_nan=False) + "\n"


def write_json(path: PathLike, proteins: Protein | Sequence[Protein], indent: int | None = None) -> None:
    """Write one protein (an object) or several (a list) atomically (gzip-compressed for a ``.gz`` name)."""
    write_text_output(path, json_string(proteins, indent))


def read_json(path: PathLike) -> list[Protein]:
    """The protein(s) in a JSON file (one object or a list of objects)."""
    text = read_text_file(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    items = data if isinstance(data, list) else [data]
    return [protein_from_json(item, f"{path}[{i}]" if isinstance(data, list) else str(path)) for i, item in
            enumerate(items)]  # fmt: skip


# ==========================================================================================================
# by suffix
# ==========================================================================================================
def _suffix(path: PathLike) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def file_kind(path: PathLike) -> str:
    """``"json"``, ``"fasta"`` or ``"structure"`` (anything else), by suffix (a trailing ``.gz`` is ignored)."""
    suffix = _suffix(path)
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in FASTA_SUFFIXES:
        return "fasta"
    return "structure"


def _no_structure_options(path: PathLike, kind: str, options: dict[str, Any]) -> None:
    """Options of ``from_structure`` would be ignored for JSON / FASTA: refuse them rather than drop them (an
    option left at its default, e.g. ``chains=None`` from a generic caller, changes nothing and is allowed)."""
    if kind == "structure":
        return
    defaults = inspect.signature(Protein.from_structure).parameters
    given = sorted(k for k, v in options.items() if k not in defaults or v != defaults[k].default)
    if given:
        raise InputError(f"{path}: {', '.join(given)} applies to structure files only, not {kind}")


def load_protein(path: PathLike, **structure_options: Any) -> Protein:
    """One protein from ``.json``, FASTA (one record) or a structure file (options of ``from_structure``)."""
    kind = file_kind(path)
    _no_structure_options(path, kind, structure_options)
    if kind == "json":
        proteins = read_json(path)
    elif kind == "fasta":
        proteins = load_fasta(path)
    else:
        return Protein.from_structure(path, **structure_options)
    if len(proteins) != 1:
        raise InputError(f"{path}: holds {len(proteins)} proteins, expected exactly one")
    return proteins[0]


def load_proteins(path: PathLike, **structure_options: Any) -> list[Protein]:
    """Every protein of a JSON / FASTA file, or the one of a structure file."""
    kind = file_kind(path)
    _no_structure_options(path, kind, structure_options)
    if kind == "json":
        return read_json(path)
    if kind == "fasta":
        return load_fasta(path)
    return [Protein.from_structure(path, **structure_options)]


def save_protein(protein: Protein, path: PathLike) -> None:
    """Write atomically by suffix: ``.json``, FASTA suffixes, or a structure (``.pdb``, ``.cif``, ``.bcif``, ±.gz)."""
    kind = file_kind(path)
    if kind == "json":
        write_json(path, protein)
    elif kind == "fasta":
        write_fasta(path, [protein])
    else:
        protein.to_complex().write(path)
