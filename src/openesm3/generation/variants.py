"""Variants: mutation strings, deep-mutational-scan CSV files and the Spearman correlation used to judge scores.

Mutation syntax (ProteinGym / DeepSequence style): ``A42G`` = wild-type ``A`` at position 42 becomes ``G``;
several mutations of one variant are joined with ``:`` (``A42G:L50P``). Positions are 1-based in the numbering of
the mutation list; with ``offset`` k, position p refers to residue p - k of the given sequence (k = the number of
the sequence's first residue minus 1, e.g. 125 for a domain whose first residue is numbered 126). In a complex,
positions count every character of the sequence string, ``|`` included. An empty string, ``WT`` or ``_wt`` is the
wild type itself (no mutation; its score is 0 by definition).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.utils.text import read_text_file

_MUTATION = re.compile(r"^([A-Za-z])(-?\d+)([A-Za-z])$")
_STOP = re.compile(r"^[A-Za-z]-?\d+\*$")
WILD_TYPE_NAMES = frozenset({"", "wt", "_wt", "wildtype", "wild_type", "wild-type"})
VARIANT_SEPARATOR = ":"
# Residue letters a mutation may name: the amino-acid tokens of the sequence vocabulary (ids 4..28, X B U Z O
# included; '.', '-' excluded).
_RESIDUE_IDS: dict[str, int] = {tok: i for i, tok in enumerate(C.SEQUENCE_VOCAB) if len(tok) == 1 and tok.isalpha()}
# Letters a wild type may carry (the sequence may hold them) but a mutant may not: each stands for several residues
# or none (scans also write X for a stop), so a score for it answers no question about a substitution.
_AMBIGUOUS_MUTANTS = frozenset("XBZ")
DMS_SCORE_COLUMNS = ("DMS_score",)  # tried, in order, when no score column is named (ProteinGym's)
# Score cells that mean "not measured" (compared lowercased): pandas' default missing-value markers, so a table
# reads the same here as with pandas.read_csv.
MISSING_SCORES = frozenset(
    {"", "na", "n/a", "nan", "-nan", "none", "null", "<na>", "#n/a", "#n/a n/a", "#na", "1.#ind", "-1.#ind",
     "1.#qnan", "-1.#qnan"}
)  # fmt: skip


@dataclass(frozen=True)
class Mutation:
    """``wild_type`` at ``position`` (1-based, in the mutation list's numbering) becomes ``mutant``."""

    wild_type: str
    position: int
    mutant: str

    def __str__(self) -> str:
        return f"{self.wild_type}{self.position}{self.mutant}"


@dataclass(frozen=True)
class Variant:
    """One variant: its text as given and its mutations (none for the wild type)."""

    text: str
    mutations: tuple[Mutation, ...]

    def __str__(self) -> str:
        return self.text


def parse_mutation(text: str) -> Mutation:
    match = _MUTATION.match(text.strip())
    if match is None:
        if _STOP.match(text.strip()):  # nonsense variants are common in scans: say why they are refused
            raise InputError(
                f"mutation {text!r}: a stop codon ('*') has no amino-acid token; only substitutions are scored"
            )
        raise InputError(f"mutation {text!r}: expected wild-type letter, position, mutant letter (e.g. A42G)")
    wt, pos, mt = match.groups()
    return Mutation(wt.upper(), int(pos), mt.upper())


def parse_variant(text: str) -> Variant:
    """``"A42G"`` / ``"A42G:L50P"`` / ``"WT"`` -> :class:`Variant`; errors name the variant."""
    stripped = text.strip()
    if stripped.lower() in WILD_TYPE_NAMES:
        return Variant(stripped, ())
    try:
        mutations = tuple(parse_mutation(part) for part in stripped.split(VARIANT_SEPARATOR))
    except InputError as exc:
        raise InputError(f"variant {stripped!r}: {exc}") from None
    return Variant(stripped, mutations)


@dataclass(frozen=True)
class ResolvedMutation:
    """A mutation checked against a sequence: 0-based ``index`` in it and the wild-type / mutant token ids."""

    index: int
    wild_type_id: int
    mutant_id: int


def resolve_variant(variant: Variant, sequence: str, offset: int = 0) -> tuple[ResolvedMutation, ...]:
    """Check ``variant`` against ``sequence`` (uppercase, as in a :class:`~openesm3.protein.Protein`).

    Raises:
        InputError: naming the variant and the mutation: position outside the sequence, a wild-type letter that
            does not match the sequence, a letter that is not a residue, a mutant that is an ambiguity code (X, B,
            Z), or two mutations at one position.
    """
    out: list[ResolvedMutation] = []
    seen: dict[int, Mutation] = {}
    for m in variant.mutations:
        where = f"variant {variant.text!r}: mutation {m}"
        index = m.position - offset - 1
        if not 0 <= index < len(sequence):
            raise InputError(
                f"{where}: position {m.position} is outside the sequence "
                f"(positions {offset + 1}..{offset + len(sequence)} with offset {offset})"
            )
        for letter in (m.wild_type, m.mutant):
            if letter not in _RESIDUE_IDS:
                raise InputError(f"{where}: {letter!r} is not an amino-acid letter")
        if m.mutant in _AMBIGUOUS_MUTANTS:
            raise InputError(
                f"{where}: mutant {m.mutant!r} is an ambiguity code (some scans write X for a stop), not one residue; "
                "only substitutions by a residue (the 20 amino acids, U or O) are scored"
            )
        if sequence[index] != m.wild_type:
            raise InputError(
                f"{where}: the sequence has {sequence[index]!r} at position {m.position}, not {m.wild_type!r} "
                f"(wrong sequence or offset? offset is {offset})"
            )
        if index in seen:
            raise InputError(f"{where}: position {m.position} is mutated twice (also by {seen[index]})")
        seen[index] = m
        out.append(ResolvedMutation(index, _RESIDUE_IDS[m.wild_type], _RESIDUE_IDS[m.mutant]))
    return tuple(out)


# ---- deep mutational scans ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DMSRow:
    """One row of a DMS table: the variant text, its measured score (NaN if absent) and its line number."""

    mutant: str
    score: float
    line: int


def read_dms_csv(
    path: str | os.PathLike[str], *, mutant_column: str = "mutant", score_column: str | None = None
) -> tuple[list[DMSRow], str | None]:
    """Rows of a DMS CSV (or TSV, by suffix: ``.tsv``, ``.tab``, each optionally ``.gz``) and the score column used
    (None: no measured scores).

    ``score_column`` None tries ``DMS_score`` (ProteinGym). Empty scores and the missing-value markers of
    :data:`MISSING_SCORES` (``NA``, ``NaN``, ...) are NaN (excluded from correlations); any other score that is
    not a number is an error naming the file, line and column (it would otherwise drop out of the correlation
    without a word). Raises :class:`InputError` naming the file and the columns it has when a column is missing.
    """
    source = Path(path)
    text = read_text_file(source)
    name = source.name.lower().removesuffix(".gz")  # scan.tsv.gz is a TSV
    delimiter = "\t" if name.endswith((".tsv", ".tab")) else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: empty file")
    header = [h.strip() for h in header]
    if mutant_column not in header:
        raise InputError(f"{path}: no column {mutant_column!r} (columns: {', '.join(header)}); use --mutant-column")
    if score_column is None:
        score_column = next((c for c in DMS_SCORE_COLUMNS if c in header), None)
    elif score_column not in header:
        raise InputError(f"{path}: no column {score_column!r} (columns: {', '.join(header)}); use --score-column")
    for column in (mutant_column, score_column):
        if column is not None and header.count(column) > 1:
            numbers = " and ".join(str(n + 1) for n, h in enumerate(header) if h == column)
            raise InputError(f"{path}: the header names column {column!r} more than once (columns {numbers})")
    m_col = header.index(mutant_column)
    s_col = None if score_column is None else header.index(score_column)
    rows = []
    first = reader.line_num + 1  # the line the next record starts on
    for record in reader:
        line, first = first, reader.line_num + 1
        if reader.line_num > line:  # an unclosed quote would silently swallow every row after it
            raise InputError(
                f"{path}:{line}: a quoted field runs on to line {reader.line_num} (a quote not closed?); "
                "a DMS table has one row per line"
            )
        if not record or all(not field.strip() for field in record):
            continue
        if len(record) != len(header):
            raise InputError(f"{path}:{line}: {len(record)} fields, the header has {len(header)}")
        score = math.nan
        if s_col is not None:
            cell = record[s_col].strip()
            if cell.lower() not in MISSING_SCORES:
                try:
                    score = float(cell)
                except ValueError:
                    raise InputError(
                        f"{path}:{line}: column {score_column!r}: {cell!r} is not a number "
                        "(an empty cell, NA or NaN means not measured)"
                    ) from None
        rows.append(DMSRow(record[m_col].strip(), score, line))
    if not rows:
        raise InputError(f"{path}: no data rows")
    return rows, score_column


# ---- rank correlation --------------------------------------------------------------------------------------
def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties getting the mean of the ranks they span (``scipy.stats.rankdata(method="average")``)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.concatenate(([True], sorted_x[1:] != sorted_x[:-1])))
    ends = np.concatenate((starts[1:], [len(x)]))
    ranks_sorted = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of ranks start+1..end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, int]:
    """Spearman's rank correlation of the pairs where both values are finite, and how many pairs that is.

    NaN when fewer than 2 pairs remain or one side is constant.
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"spearman needs two 1-d arrays of one length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    n = int(keep.sum())
    if n < 2:
        return math.nan, n
    ra, rb = rankdata(a[keep]), rankdata(b[keep])
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return (float((ra * rb).sum()) / denom if denom > 0 else math.nan), n
