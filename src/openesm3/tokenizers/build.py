"""Build your own function and residue-annotation vocabularies, written in the official file formats.

The official release ships the vocabulary files but not how they were made (PAPER_NOTES "gaps": IDF corpus
and formula, hyperplane distribution, keyword extraction). These are our documented choices:

- **Terms** (the analogue of InterPro entries): ``FunctionTerm(id, type, name, keywords)``; ``keywords`` may
  repeat (repeats are term frequency); if empty they are extracted from the name with
  :func:`keywords_from_text` (lowercased unigrams and bigrams of alphanumeric words).
- **IDF**: smooth IDF over a corpus of proteins, ``idf = ln((1 + N) / (1 + df)) + 1``, where a protein's
  document is the set of keywords of all its labels (terms' keywords and plain keywords) and ``df`` counts the
  proteins whose document holds the keyword.
- **Hyperplanes**: i.i.d. standard normal float32 ``[8, 8, n_keywords]`` from ``numpy.random.default_rng(seed)``.
- **Residue-annotation labels**: raw labels are grouped ignoring case and punctuation (paper A.1.8.3); a group's
  ``label_clean`` is its most frequent raw label (ties: alphabetical); groups seen in fewer than
  ``min_proteins`` proteins are dropped; labels that pandas reads as missing (:data:`PANDAS_NA_STRINGS`) are refused.

Output: a directory with the six official files (names as in the official release, whatever the sizes), which
both :class:`~openesm3.tokenizers.vocabulary.FunctionVocabulary` and the official package's tokenizers read.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openesm3 import constants as C
from openesm3.errors import InputError, VocabularyError
from openesm3.tokenizers.vocabulary import (
    FUNCTION_FILES,
    FunctionVocabulary,
    InterProEntry,
    ResidueAnnotationRow,
    ResidueAnnotationVocabulary,
)
from openesm3.utils.atomic import atomic_open, atomic_write_text
from openesm3.utils.provenance import note_moved, note_removed

_INTERPRO_RE = re.compile(C.INTERPRO_ID_PATTERN)
_WORD_RE = re.compile(r"[0-9a-z]+")
# Cell texts that pandas.read_csv turns into NaN by default (its ``na_values``; pandas 2.x docs). The official
# residue tokenizer reads its CSV with pandas and drops NaN labels, so such a label would shift every later id.
PANDAS_NA_STRINGS = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
     "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip
# Words too common to carry meaning as unigrams (they still join bigrams).
STOP_WORDS = frozenset("a an and as at by for from in into is of on or the to with via".split())


@dataclass(frozen=True)
class FunctionTerm:
    """An annotation term: written to the entry list (id, type, name) and the term-to-keywords CSV."""

    id: str
    type: str
    name: str
    keywords: tuple[str, ...] = ()


def keywords_from_text(text: str) -> tuple[str, ...]:
    """Lowercased unigrams (minus :data:`STOP_WORDS`) and adjacent bigrams of the alphanumeric words of ``text``."""
    words = _WORD_RE.findall(text.lower())
    unigrams = [w for w in words if w not in STOP_WORDS]
    bigrams = [f"{a} {b}" for a, b in zip(words, words[1:])]
    return tuple(unigrams + bigrams)


def draw_hyperplanes(n_keywords: int, *, seed: int) -> np.ndarray:
    """float32 ``[8, 8, n_keywords]`` standard-normal LSH hyperplanes (depth, bit, keyword), seeded."""
    rng = np.random.default_rng(seed)
    shape = (C.FUNCTION_DEPTH, C.FUNCTION_BITS_PER_TOKEN, n_keywords)
    return rng.standard_normal(shape, dtype=np.float32)


def smooth_idf(documents: Iterable[Iterable[str]], keywords: Sequence[str]) -> np.ndarray:
    """float64 ``[len(keywords)]``: ``ln((1 + N) / (1 + df)) + 1`` over ``N`` documents (sets of keywords)."""
    index = {k: i for i, k in enumerate(keywords)}
    df = np.zeros(len(keywords), dtype=np.float64)
    n_docs = 0
    for doc in documents:
        n_docs += 1
        hits = [index[k] for k in set(doc) if k in index]
        df[hits] += 1
    return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0


def build_function_vocabulary(
    terms: Sequence[FunctionTerm],
    corpus: Mapping[str, Sequence[str]],
    *,
    keywords: Sequence[str] | None = None,
    seed: int = 0,
    extract_missing_keywords: bool = True,
    corpus_name: str | None = None,
) -> FunctionVocabulary:
    """A complete function vocabulary from terms, a corpus and (optionally) a fixed keyword list.

    Args:
        terms: the annotation terms; ids must be unique and contain no tab, comma or newline.
        corpus: protein id -> its labels (term ids, labels containing an ``IPR`` id of a term, or keywords);
            used only for the IDF.
        keywords: the keyword list (its order is the keyword index). Default: all keywords of the terms,
            sorted. Every term keyword must be in it.
        seed: seed of the hyperplanes.
        extract_missing_keywords: give a term without keywords those of its name (:func:`keywords_from_text`);
            otherwise it keeps none (and tokenizes as ``<unk>``).
        corpus_name: where the corpus came from (a file name), put in front of errors about it.
    """
    if not terms:
        raise InputError("at least one term is needed to build a function vocabulary")
    term_keywords: dict[str, tuple[str, ...]] = {}
    for term in terms:
        if not term.id.strip():
            raise InputError(f"term {term!r}: empty id")
        for name, value in (("id", term.id), ("type", term.type), ("name", term.name)):
            if any(ch in value for ch in "\t\n\r") or (name == "id" and "," in value):
                raise InputError(f"term {term.id!r}: its {name} must not contain a tab, newline (or, for ids, a comma)")
        if term.id in term_keywords:
            raise InputError(f"term {term.id!r} is defined twice")
        extracted = keywords_from_text(term.name) if extract_missing_keywords else ()
        term_keywords[term.id] = term.keywords or extracted
    if keywords is None:
        keywords = sorted({k for words in term_keywords.values() for k in words})
    keyword_list = tuple(keywords)
    for k in keyword_list:
        if not k or "," in k or "\n" in k or "\r" in k or k != k.strip():
            raise InputError(f"keyword {k!r}: keywords must be non-empty, without commas, newlines or outer spaces")
    known = set(keyword_list)
    if len(known) != len(keyword_list):
        raise InputError("the keyword list has duplicates")
    for term_id, words in term_keywords.items():
        missing = sorted(set(words) - known)
        if missing:
            raise InputError(f"term {term_id!r}: keywords not in the keyword list: {missing[:5]}")

    def document(protein: str, labels: Sequence[str]) -> set[str]:
        doc: set[str] = set()
        for label in labels:
            match = _INTERPRO_RE.search(label)
            term_id = match.group() if match and match.group() in term_keywords else label
            if term_id in term_keywords:
                doc.update(term_keywords[term_id])
            elif label in known:
                doc.add(label)
            else:
                where = f"{corpus_name}: " if corpus_name else ""
                raise InputError(
                    f"{where}corpus protein {protein!r}: label {label!r} is neither a term id nor a keyword"
                )
        return doc

    idf = smooth_idf((document(p, labels) for p, labels in corpus.items()), keyword_list)
    entries = tuple(sorted((InterProEntry(t.id, t.type, t.name) for t in terms), key=lambda e: e.id))
    hyperplanes = draw_hyperplanes(len(keyword_list), seed=seed)
    return FunctionVocabulary(keyword_list, idf, entries, term_keywords, hyperplanes, source="built")


def write_function_vocabulary(vocabulary: FunctionVocabulary, directory: str | os.PathLike[str]) -> list[Path]:
    """Write the five function-vocabulary files in the official formats (atomically); return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in (
        C.KEYWORD_VOCABULARY_FILE, C.KEYWORD_IDF_FILE, C.INTERPRO_ENTRY_LIST_FILE, C.INTERPRO_TO_KEYWORDS_FILE,
    )]  # fmt: skip
    atomic_write_text(paths[0], "".join(f"{k}\n" for k in vocabulary.keywords))
    with atomic_open(paths[1], "wb") as handle:
        np.save(handle, vocabulary.idf.astype(np.float64))
    # Written with csv quoting (which leaves ordinary names as plain tab-joined text): a name that starts with a
    # double quote, written raw, reads back (ours, pandas) as a quoted field running into the following lines.
    entry_buffer = io.StringIO()
    entry_writer = csv.writer(entry_buffer, delimiter="\t", lineterminator="\n")
    entry_writer.writerow(C.INTERPRO_ENTRY_LIST_HEADER)
    entry_writer.writerows((e.id, e.type, e.name) for e in vocabulary.entries)
    atomic_write_text(paths[2], entry_buffer.getvalue())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(C.INTERPRO_TO_KEYWORDS_HEADER)
    for entry in vocabulary.entries:
        writer.writerow((entry.id, ",".join(vocabulary.interpro_keywords.get(entry.id, ()))))
    atomic_write_text(paths[3], buffer.getvalue())
    if vocabulary.hyperplanes is not None:
        paths.append(write_hyperplanes(vocabulary.hyperplanes, out / C.LSH_HYPERPLANES_FILE))
    return paths


def write_hyperplanes(hyperplanes: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Official npz layout: keys ``"0"``..``"7"``, each float32 ``[8 bits, n_keywords]``."""
    if hyperplanes.ndim != 3 or hyperplanes.shape[:2] != (C.FUNCTION_DEPTH, C.FUNCTION_BITS_PER_TOKEN):
        raise VocabularyError(f"hyperplanes must have shape (8, 8, n_keywords), got {hyperplanes.shape}")
    arrays = {str(d): np.ascontiguousarray(hyperplanes[d], dtype=np.float32) for d in range(C.FUNCTION_DEPTH)}
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return Path(path)


def check_vocabulary_directory(directory: str | os.PathLike[str]) -> None:
    """InputError where :func:`write_vocabulary_directory` could not put a file: a directory (not a link) named like
    one of the vocabulary's files, or like the residue-annotation table (written, or removed as an earlier build's).
    Without this check the error came after some of the new files were already in place."""
    out = Path(directory)
    for name in (*FUNCTION_FILES, C.RESIDUE_ANNOTATION_VOCAB_FILE):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            raise InputError(
                f"{path}: is a directory, where the vocabulary has a file of that name (written, or removed as an "
                "earlier build's); move the directory away or give another output directory"
            )


def write_vocabulary_directory(
    directory: str | os.PathLike[str],
    function: FunctionVocabulary,
    residue: ResidueAnnotationVocabulary | None = None,
) -> list[Path]:
    """Write every file into a staging folder inside ``directory``, then move each into place.

    The files of one vocabulary only make sense together (IDF, hyperplanes and keyword list share one keyword
    index): a failure while writing (disk full) leaves ``directory`` as it was, instead of new files beside old.
    Without ``residue``, a residue-annotation table already in ``directory`` (an earlier build's) is removed once
    the new files are in place: left there, it would be read as this vocabulary's (a vocabulary directory is
    searched for it before the installed esm package).
    """
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    check_vocabulary_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-vocab.", dir=out))
    try:
        staged = write_function_vocabulary(function, staging)
        if residue is not None:
            staged.append(write_residue_annotation_vocabulary(residue, staging))
        written = []
        for path in staged:
            os.replace(path, out / path.name)
            note_moved(path, out / path.name)
            written.append(out / path.name)
        if residue is None:
            (out / C.RESIDUE_ANNOTATION_VOCAB_FILE).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        note_removed(staging)
    return written


# ---------------------------------------------------------------------------------------------------------------
# Residue annotations
# ---------------------------------------------------------------------------------------------------------------
def residue_label_key(label: str) -> str:
    """Grouping key of a raw residue label: case and punctuation ignored."""
    return " ".join(re.findall(r"[0-9a-z]+", label.casefold()))


def most_frequent_label(group: Sequence[tuple[str, int]]) -> str:
    """Default ``label_clean`` of a group of ``(raw label, count)``: the most frequent, ties alphabetical."""
    return min(group, key=lambda item: (-item[1], item[0]))[0]


def count_label_proteins(corpus: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Raw label -> number of proteins carrying it, from protein id -> labels."""
    counts: Counter[str] = Counter()
    for labels in corpus.values():
        counts.update(set(labels))
    return dict(counts)


def build_residue_annotation_vocabulary(
    label_counts: Mapping[str, int],
    *,
    min_proteins: int = 1,
    choose_clean: Callable[[Sequence[tuple[str, int]]], str] = most_frequent_label,
) -> ResidueAnnotationVocabulary:
    """Rows ``label, label_clean, count`` from raw labels and their protein counts (see module docstring).

    A group is kept if its raw labels together are seen in at least ``min_proteins`` proteins.
    """
    groups: dict[str, list[tuple[str, int]]] = {}
    for label, count in label_counts.items():
        if not label or any(ch in label for ch in "\n\r") or count < 0:
            raise InputError(f"residue label {label!r}: labels must be non-empty single lines, counts >= 0")
        if label in PANDAS_NA_STRINGS:
            raise InputError(
                f"residue label {label!r}: pandas (and so the official tokenizer) reads it as a missing value and "
                "drops it, which shifts the ids of the other labels; rename it"
            )
        key = residue_label_key(label)
        if not key:
            raise InputError(f"residue label {label!r} has no letters or digits")
        groups.setdefault(key, []).append((label, int(count)))
    rows: list[ResidueAnnotationRow] = []
    for key in sorted(groups):
        group = sorted(groups[key])
        if sum(count for _, count in group) < min_proteins:
            continue
        clean = choose_clean(group)
        rows.extend(ResidueAnnotationRow(label, clean, count) for label, count in group)
    if not rows:
        raise InputError(f"no residue label is seen in >= {min_proteins} proteins")
    return ResidueAnnotationVocabulary(tuple(rows), source="built")


def write_residue_annotation_vocabulary(
    vocabulary: ResidueAnnotationVocabulary, directory: str | os.PathLike[str]
) -> Path:
    """Write the official residue-annotation CSV (``label,label_clean,count``) into ``directory``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(C.RESIDUE_ANNOTATION_HEADER)
    for row in vocabulary.rows:
        writer.writerow((row.label, row.label_clean, row.count))
    path = Path(directory) / C.RESIDUE_ANNOTATION_VOCAB_FILE
    atomic_write_text(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------------------------
# Input files of the build-function-vocab command
# ---------------------------------------------------------------------------------------------------------------
def _read_tsv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    lines = [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1)]
    lines = [(n, line) for n, line in lines if line.strip() and not line.startswith("#")]
    if not lines:
        raise InputError(f"{path}: empty (a header line with the columns {', '.join(required)} is needed)")
    header_no, header_line = lines[0]
    header = header_line.split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: line {header_no}: header lacks the column(s) {', '.join(missing)} (got {header})")
    records = []
    for n, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputError(f"{path}: line {n}: {len(fields)} tab-separated fields, the header has {len(header)}")
        records.append((n, dict(zip(header, fields))))
    return records


def read_annotation_corpus(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """TSV with a header holding ``protein_id`` and ``label`` (other columns ignored), one row per
    (protein, label); ``#`` lines are comments. Returns protein id -> labels in file order."""
    corpus: dict[str, list[str]] = {}
    for n, record in _read_tsv(Path(path), ("protein_id", "label")):
        protein, label = record["protein_id"].strip(), record["label"].strip()
        if not protein or not label:
            raise InputError(f"{path}: line {n}: empty protein_id or label")
        corpus.setdefault(protein, []).append(label)
    if not corpus:
        raise InputError(f"{path}: no annotations")
    return corpus


def read_terms(path: str | os.PathLike[str]) -> list[FunctionTerm]:
    """TSV with the header ``term_id, term_type, term_name, keywords``; keywords comma-separated (repeats
    allowed), or empty to extract them from the name."""
    terms = []
    first_line: dict[str, int] = {}
    for n, record in _read_tsv(Path(path), ("term_id", "term_type", "term_name", "keywords")):
        term_id = record["term_id"].strip()
        if not term_id:
            raise InputError(f"{path}: line {n}: empty term_id")
        if "," in term_id:
            raise InputError(f"{path}: line {n}: term id {term_id!r} must not contain a comma")
        if term_id in first_line:
            raise InputError(f"{path}: line {n}: term {term_id!r} is defined twice (line {first_line[term_id]})")
        first_line[term_id] = n
        words = tuple(w.strip() for w in record["keywords"].split(",") if w.strip())
        terms.append(FunctionTerm(term_id, record["term_type"].strip(), record["term_name"].strip(), words))
    if not terms:
        raise InputError(f"{path}: no terms")
    return terms


def read_keyword_list(path: str | os.PathLike[str]) -> list[str]:
    """One keyword per line (the official keyword-vocabulary format); each is checked, naming its line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    if lines and lines[-1] == "":
        lines.pop()
    keywords = [line.rstrip("\r") for line in lines]
    first_line: dict[str, int] = {}
    for n, keyword in enumerate(keywords, start=1):
        if not keyword or "," in keyword or keyword != keyword.strip():
            raise InputError(
                f"{path}: line {n}: keyword {keyword!r}: keywords must be non-empty, without commas or outer spaces"
            )
        if keyword in first_line:
            first = first_line[keyword]
            raise InputError(f"{path}: line {n}: keyword {keyword!r} appears more than once (line {first})")
        first_line[keyword] = n
    if not keywords:
        raise InputError(f"{path}: no keywords")
    return keywords
