"""Finding and loading the function and residue-annotation vocabularies (official release layout, spec §0).

Files (names in ``constants``):

- keyword list (one keyword per line; line order = keyword index), keyword IDF (float64 ``.npy``), InterPro
  entry list (TSV ``ENTRY_AC, ENTRY_TYPE, ENTRY_NAME``), InterPro-to-keywords CSV (``interpro_id,keywords``,
  keywords comma-joined, repeats = term frequency): shipped inside the official ``esm`` package (``esm/data/``);
- LSH hyperplanes (``.npz``, keys ``"0"``..``"7"``, ``[8, n_keywords]`` each, float32 or float64) and the
  residue-annotation CSV (``label,label_clean,count``): under ``data/`` of the official Hugging Face release.

Where they are looked for, in order (each directory ``D`` also as ``D/data``):

1. an explicit directory (``path=``): *only* there, so a custom vocabulary is never mixed with another;
2. the directory in the environment variable ``OPENESM3_VOCAB_DIR``;
3. the ``data/`` folder of an installed official ``esm`` package (found without importing it).

In cases 2-3 each file is taken from the first place that has it, so ``OPENESM3_VOCAB_DIR`` pointing at a
Hugging Face download plus the four files inside ``esm`` make a complete official vocabulary; the sizes of
all files are cross-checked on loading. A missing file raises :class:`VocabularyError` naming every missing
file and every place looked.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openesm3 import constants as C
from openesm3.errors import InputError, VocabularyError
from openesm3.utils.provenance import note_input

VOCAB_DIR_ENV = "OPENESM3_VOCAB_DIR"

FUNCTION_FILES: tuple[str, ...] = (
    C.KEYWORD_VOCABULARY_FILE,
    C.KEYWORD_IDF_FILE,
    C.INTERPRO_ENTRY_LIST_FILE,
    C.INTERPRO_TO_KEYWORDS_FILE,
    C.LSH_HYPERPLANES_FILE,
)


def esm_package_data_dir() -> Path | None:
    """``data/`` of the installed official ``esm`` package, located without importing it (or ``None``)."""
    try:
        spec = importlib.util.find_spec("esm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def search_places(path: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """The directories searched, in order, each with where it came from (for error messages)."""
    if path is not None:
        root = Path(path).expanduser()
        return [(root, "given path"), (root / "data", "given path")]
    places: list[tuple[Path, str]] = []
    env = os.environ.get(VOCAB_DIR_ENV)
    if env:
        root = Path(env).expanduser()
        places += [(root, f"${VOCAB_DIR_ENV}"), (root / "data", f"${VOCAB_DIR_ENV}")]
    package = esm_package_data_dir()
    if package is not None:
        places.append((package, "installed esm package"))
    return places


def locate_files(names: Sequence[str], path: str | os.PathLike[str] | None = None, *, what: str) -> dict[str, Path]:
    """Map each file name to the first place that has it, or raise naming every missing file and place."""
    places = search_places(path)
    found: dict[str, Path] = {}
    for name in names:
        for directory, _ in places:
            if (directory / name).is_file():
                found[name] = directory / name
                break
    missing = [name for name in names if name not in found]
    if missing:
        looked = "; ".join(f"{d} ({origin})" for d, origin in places) or "nowhere"
        hint = (
            f"pass the directory explicitly, set ${VOCAB_DIR_ENV}, or install the official esm package"
            if path is None
            else "a vocabulary given by path must hold all its files (there or in its data/ folder)"
        )
        raise VocabularyError(f"{what}: missing {', '.join(missing)}; looked in: {looked}. {hint}")
    for file in found.values():
        note_input(file, what)
    return found


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"{path}: cannot read ({exc})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_table(path: Path, delimiter: str, header: tuple[str, ...]) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VocabularyError(f"{path}: cannot read ({exc})") from exc
    if not rows or tuple(rows[0]) != header:
        got = rows[0] if rows else "an empty file"
        raise VocabularyError(f"{path}: line 1: expected the header {','.join(header)}, got {got}")
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise VocabularyError(f"{path}: line {line_no}: expected {len(header)} columns, got {len(row)}")
    return rows[1:]


def read_keywords(path: Path) -> tuple[str, ...]:
    keywords = tuple(_read_lines(path))
    seen: dict[str, int] = {}
    for line_no, keyword in enumerate(keywords, start=1):
        if keyword in seen:
            raise VocabularyError(
                f"{path}: line {line_no}: keyword {keyword!r} appears more than once (line {seen[keyword]})"
            )
        seen[keyword] = line_no
    if not keywords:
        raise VocabularyError(f"{path}: no keywords")
    return keywords


def _per_keyword(n_keywords: int, keywords_path: Path | None) -> str:
    """Where the expected keyword count comes from, for size-mismatch messages."""
    return f"one per keyword of {keywords_path} ({n_keywords} keywords)" if keywords_path else f"{n_keywords} keywords"


def _check_numpy_file(path: Path, kind: str) -> None:
    """Refuse a file that starts as neither a .npy array nor a zip archive (.npz): numpy reads any other file as a
    pickle and refuses it with advice to load it unsafely, which would mislead about a text or empty file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise VocabularyError(f"{path}: cannot read ({exc})") from exc
    if not head.startswith((b"\x93NUMPY", b"PK")):
        raise VocabularyError(f"{path}: not a NumPy {kind}" + (" (empty file)" if not head else ""))


def read_idf(path: Path, n_keywords: int, keywords_path: Path | None = None) -> np.ndarray:
    _check_numpy_file(path, ".npy file")
    try:
        idf = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise VocabularyError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    if isinstance(idf, np.lib.npyio.NpzFile):
        idf.close()
        raise VocabularyError(f"{path}: expected a single array of IDF values (.npy), got an npz archive")
    if idf.shape != (n_keywords,) or not np.issubdtype(idf.dtype, np.floating):
        raise VocabularyError(
            f"{path}: expected float IDF values of shape ({n_keywords},), got {idf.dtype} {idf.shape} "
            f"({_per_keyword(n_keywords, keywords_path)})"
        )
    if not np.all(np.isfinite(idf)) or np.any(idf < 0):
        raise VocabularyError(f"{path}: IDF values must be finite and >= 0")
    return idf.astype(np.float64)


def read_hyperplanes(path: Path, n_keywords: int, keywords_path: Path | None = None) -> np.ndarray:
    """``[depth, bits, n_keywords]`` from the npz keys ``"0"``, ``"1"``, ... (spec §3.3).

    float32 files stay float32; anything else is read as float64, never rounded down: the official tokenizer
    projects with the stored values, and a bit whose projection is within float32 rounding of 0 would flip.
    """
    _check_numpy_file(path, ".npz archive")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise VocabularyError(f"{path}: expected an npz archive with the keys '0'..'7', got a single array")
        with loaded as npz:
            keys = sorted(npz.files, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
            arrays = {k: npz[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise VocabularyError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    expected = [str(d) for d in range(C.FUNCTION_DEPTH)]
    if keys != expected:
        raise VocabularyError(f"{path}: expected the keys {expected}, got {keys}")
    for key, array in arrays.items():
        if array.shape != (C.FUNCTION_BITS_PER_TOKEN, n_keywords):
            raise VocabularyError(
                f"{path}: hyperplanes {key!r} have shape {array.shape}, expected "
                f"({C.FUNCTION_BITS_PER_TOKEN}, {n_keywords}): {_per_keyword(n_keywords, keywords_path)}"
            )
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise VocabularyError(f"{path}: hyperplanes {key!r} are {array.dtype}, expected real numbers")
        if not np.all(np.isfinite(array)):
            raise VocabularyError(f"{path}: hyperplanes {key!r} hold non-finite values (NaN or inf)")
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays.values()) else np.float64
    return np.stack([arrays[k].astype(dtype) for k in expected])


@dataclass(frozen=True)
class InterProEntry:
    """One row of the entry list."""

    id: str
    type: str
    name: str


@dataclass(frozen=True, eq=False)
class FunctionVocabulary:
    """Everything the function tokenizer and decoder need (spec §3.3, §8).

    Attributes:
        keywords: the keyword list; position = keyword index (58,641 officially).
        idf: float64 ``[n_keywords]``.
        entries: InterPro entries sorted by id; position = the function decoder's InterPro class index.
        interpro_keywords: InterPro id -> its keywords in file order, with repeats (term frequency).
        hyperplanes: float32 or float64 ``[8, 8, n_keywords]`` LSH hyperplanes (depth, bit, keyword; the file's
            precision is kept), or ``None`` when
            loaded for decoding only.
        source: where the files came from (for messages).
    """

    keywords: tuple[str, ...]
    idf: np.ndarray
    entries: tuple[InterProEntry, ...]
    interpro_keywords: dict[str, tuple[str, ...]]
    hyperplanes: np.ndarray | None
    source: str = "memory"
    keyword_index: dict[str, int] = field(init=False, repr=False)
    interpro_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword_index", {k: i for i, k in enumerate(self.keywords)})
        object.__setattr__(self, "interpro_index", {e.id: i for i, e in enumerate(self.entries)})
        if len(self.keyword_index) != len(self.keywords):
            raise VocabularyError(f"{self.source}: duplicate keywords")
        if self.idf.shape != (len(self.keywords),):
            raise VocabularyError(f"{self.source}: {self.idf.shape[0]} IDF values for {len(self.keywords)} keywords")
        if self.hyperplanes is not None and self.hyperplanes.shape != (
            C.FUNCTION_DEPTH,
            C.FUNCTION_BITS_PER_TOKEN,
            len(self.keywords),
        ):
            raise VocabularyError(
                f"{self.source}: hyperplanes of shape {self.hyperplanes.shape} "
                f"do not match {len(self.keywords)} keywords"
            )
        unknown = [i for i in self.interpro_keywords if i not in self.interpro_index]
        if unknown:
            raise VocabularyError(f"{self.source}: InterPro ids with keywords but not in the entry list: {unknown[:5]}")
        for ipr, words in self.interpro_keywords.items():
            missing = [w for w in words if w not in self.keyword_index]
            if missing:
                raise VocabularyError(f"{self.source}: keywords of {ipr} not in the keyword list: {missing[:5]}")

    @property
    def n_keywords(self) -> int:
        return len(self.keywords)

    @property
    def n_interpro(self) -> int:
        return len(self.entries)

    @property
    def interpro_ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, with_hyperplanes: bool = True) -> FunctionVocabulary:
        """Find (module docstring) and read the function vocabulary; ``with_hyperplanes=False`` for decoding."""
        names = FUNCTION_FILES if with_hyperplanes else FUNCTION_FILES[:-1]
        files = locate_files(names, path, what="function vocabulary")
        keywords = read_keywords(files[C.KEYWORD_VOCABULARY_FILE])
        keywords_path = files[C.KEYWORD_VOCABULARY_FILE]
        idf = read_idf(files[C.KEYWORD_IDF_FILE], len(keywords), keywords_path)
        entries = read_entry_list(files[C.INTERPRO_ENTRY_LIST_FILE])
        interpro_keywords = read_interpro_keywords(files[C.INTERPRO_TO_KEYWORDS_FILE])
        hyperplanes = (
            read_hyperplanes(files[C.LSH_HYPERPLANES_FILE], len(keywords), keywords_path) if with_hyperplanes else None
        )
        source = ", ".join(sorted({str(p.parent) for p in files.values()}))
        return cls(keywords, idf, entries, interpro_keywords, hyperplanes, source=source)


def read_entry_list(path: Path) -> tuple[InterProEntry, ...]:
    rows = _read_table(path, "\t", C.INTERPRO_ENTRY_LIST_HEADER)
    entries = sorted((InterProEntry(*row) for row in rows), key=lambda e: e.id)
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise VocabularyError(f"{path}: duplicate ENTRY_AC values")
    return tuple(entries)


def read_interpro_keywords(path: Path) -> dict[str, tuple[str, ...]]:
    """InterPro id -> keywords (repeats kept). An empty keywords field is an empty tuple.

    (The official loader reads that field as NaN and then fails on the one such entry, IPR006563; see
    :mod:`openesm3.tokenizers.function`.)
    """
    result: dict[str, tuple[str, ...]] = {}
    for line_no, (ipr, words) in enumerate(_read_table(path, ",", C.INTERPRO_TO_KEYWORDS_HEADER), start=2):
        if ipr in result:
            raise VocabularyError(f"{path}: line {line_no}: {ipr} appears twice")
        result[ipr] = tuple(words.split(",")) if words else ()
    return result


@dataclass(frozen=True)
class ResidueAnnotationRow:
    """One row of the residue-annotation CSV: a raw ``label``, its cleaned form and its protein count."""

    label: str
    label_clean: str
    count: int


@dataclass(frozen=True, eq=False)
class ResidueAnnotationVocabulary:
    """The residue-annotation vocabulary (spec §3.4).

    ``labels`` are the distinct ``label_clean`` values sorted by their summed ``count``, descending, ties in
    alphabetical order; label ``k`` has token id ``4 + k``. ``label_to_clean`` maps raw labels to clean ones.
    """

    rows: tuple[ResidueAnnotationRow, ...]
    source: str = "memory"
    labels: tuple[str, ...] = field(init=False)
    label_to_clean: dict[str, str] = field(init=False, repr=False)
    label_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        totals: dict[str, int] = {}
        for row in self.rows:
            totals[row.label_clean] = totals.get(row.label_clean, 0) + row.count
        # Sorted by name first, then a stable sort by count: ties stay alphabetical (spec §3.4).
        labels = sorted(sorted(totals), key=lambda name: -totals[name])
        object.__setattr__(self, "labels", tuple(labels))
        # For a raw label listed twice the last row wins, like building a dict from the columns.
        object.__setattr__(self, "label_to_clean", {row.label: row.label_clean for row in self.rows})
        object.__setattr__(self, "label_index", {name: C.RESIDUE_FIRST_LABEL + i for i, name in enumerate(labels)})

    @property
    def vocab_size(self) -> int:
        return C.RESIDUE_FIRST_LABEL + len(self.labels)

    def token_string(self, token_id: int) -> str:
        """``<pad>``, ``<motif>``, ``<unk>``, ``<none>`` or the label of a label id."""
        if not 0 <= token_id < self.vocab_size:
            raise InputError(f"residue annotation id {token_id} is outside 0..{self.vocab_size - 1}")
        if token_id < C.RESIDUE_FIRST_LABEL:
            return ("<pad>", "<motif>", "<unk>", "<none>")[token_id]
        return self.labels[token_id - C.RESIDUE_FIRST_LABEL]

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ResidueAnnotationVocabulary:
        files = locate_files([C.RESIDUE_ANNOTATION_VOCAB_FILE], path, what="residue-annotation vocabulary")
        return cls.from_csv(files[C.RESIDUE_ANNOTATION_VOCAB_FILE])

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> ResidueAnnotationVocabulary:
        path = Path(path)
        rows: list[ResidueAnnotationRow] = []
        for line_no, (label, clean, count) in enumerate(_read_table(path, ",", C.RESIDUE_ANNOTATION_HEADER), start=2):
            try:
                n = int(count)
            except ValueError:
                raise VocabularyError(f"{path}: line {line_no}: count {count!r} is not an integer") from None
            rows.append(ResidueAnnotationRow(label, clean, n))
        if not rows:
            raise VocabularyError(f"{path}: no labels")
        return cls(tuple(rows), source=str(path))
