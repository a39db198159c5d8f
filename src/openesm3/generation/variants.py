"""Variants: mutation strings, deep-mutational-scan CSV files and the Spearman correlation used to judge scores.

Mutation syntax (ProteinGym / DeepSequence style): ``A42G`` = wild-type ``A`` at position 42 becomes ``G``;
several mutations of one variant are joined with ``:`` (``A42G:L50P``). Positions are 1-based in the numbering of
the mutation list; with ``offset`` k, position p refers to residue p - k of the given sequence (k = the number of
the sequence's first residue minus 1, e.g. 125 for a domain whose first residue is numbered 126). In a complex,
positions count every character of the sequence string, ``|`` included. An empty string, ``WT`` or ``_wt`` is the
wild type itself (no mutation; its score is 0 by definition).

Author numbering (:class:`AuthorNumbering`, ``openesm3 score --numbering author``): positions are a structure
file's own residue numbers, gaps, negative numbers and insertion codes included. A mutation is then
``[CHAIN/]WT NUMBER [INSERTION CODE] MUTANT``: ``H52G``, ``H52AG`` (residue 52A; the last letter is always the
mutant and a letter between the number and it is the insertion code), ``L/H52G`` (chain L of a complex; ``/``
because ``:`` joins the mutations of a multi-mutant). A mutation without a chain refers to the protein's only chain,
or to the default chain given to :meth:`AuthorNumbering.from_protein`. A chain id holding ``/`` or ``:`` (possible in
mmCIF) cannot be written in a mutation: such a mutation is refused saying so, and the chain can only be the default.
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
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.utils.text import read_text_file

# [CHAIN/]WT NUMBER [INSERTION CODE] MUTANT; the chain and insertion code are for author numbering only.
_MUTATION = re.compile(r"^(?:([^/:\s]+)/)?([A-Za-z])(-?\d+)([A-Za-z]?)([A-Za-z])$")
_STOP = re.compile(r"^(?:[^/:\s]+/)?[A-Za-z]-?\d+[A-Za-z]?\*$")
CHAIN_SEPARATOR = "/"
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
    """``wild_type`` at ``position`` (1-based, in the mutation list's numbering) becomes ``mutant``.

    ``insertion_code`` (one letter or empty) and ``chain`` (None: not named) belong to author numbering only
    (:class:`AuthorNumbering`); sequence numbering refuses them.
    """

    wild_type: str
    position: int
    mutant: str
    insertion_code: str = ""
    chain: str | None = None

    def __str__(self) -> str:
        chain = "" if self.chain is None else f"{self.chain}{CHAIN_SEPARATOR}"
        return f"{chain}{self.wild_type}{self.position}{self.insertion_code}{self.mutant}"

    @property
    def residue(self) -> str:
        """The residue's number as written, insertion code included (``52A``)."""
        return f"{self.position}{self.insertion_code}"


@dataclass(frozen=True)
class Variant:
    """One variant: its text as given and its mutations (none for the wild type)."""

    text: str
    mutations: tuple[Mutation, ...]

    def __str__(self) -> str:
        return self.text


def nameable_chain(chain: str) -> bool:
    """Whether a mutation can name ``chain`` (``L/H52G``): not when the id holds ``/`` (the chain ends at the first
    one) or ``:`` (which joins the mutations of a multi-mutant)."""
    return CHAIN_SEPARATOR not in chain and VARIANT_SEPARATOR not in chain


_UNNAMEABLE = (
    "a chain id holding '/' or ':' cannot be written in a mutation ('/' ends the chain id, ':' joins the mutations "
    "of a multi-mutant): make that chain the default (--variant-chain ID, or AuthorNumbering.from_protein(chain=ID)) "
    "and write its mutations without a chain"
)


def parse_mutation(text: str) -> Mutation:
    match = _MUTATION.match(text.strip())
    if match is None:
        if text.count(CHAIN_SEPARATOR) > 1:  # 'A/1/K2A': a chain id 'A/1' (mmCIF), not a wrong letter or number
            raise InputError(f"mutation {text!r}: more than one '/'; {_UNNAMEABLE}")
        if _STOP.match(text.strip()):  # nonsense variants are common in scans: say why they are refused
            raise InputError(
                f"mutation {text!r}: a stop codon ('*') has no amino-acid token; only substitutions are scored"
            )
        raise InputError(f"mutation {text!r}: expected wild-type letter, position, mutant letter (e.g. A42G)")
    chain, wt, pos, code, mt = match.groups()
    return Mutation(wt.upper(), int(pos), mt.upper(), code.upper(), chain)


def parse_variant(text: str) -> Variant:
    """``"A42G"`` / ``"A42G:L50P"`` / ``"WT"`` -> :class:`Variant`; errors name the variant."""
    stripped = text.strip()
    if stripped.lower() in WILD_TYPE_NAMES:
        return Variant(stripped, ())
    parts = stripped.split(VARIANT_SEPARATOR)
    mutations = []
    for number, part in enumerate(parts):
        try:
            mutations.append(parse_mutation(part))
        except InputError as exc:
            following = parts[number + 1] if number + 1 < len(parts) else ""
            if CHAIN_SEPARATOR in following:  # 'A:1/K2A': a chain id 'A:1' split at its ':' into 'A' and '1/K2A'
                chain = part.strip() + VARIANT_SEPARATOR + following.split(CHAIN_SEPARATOR)[0].strip()
                raise InputError(f"variant {stripped!r}: {exc}; if {chain!r} is a chain id, {_UNNAMEABLE}") from None
            raise InputError(f"variant {stripped!r}: {exc}") from None
    return Variant(stripped, tuple(mutations))


@dataclass(frozen=True)
class ResolvedMutation:
    """A mutation checked against a sequence: 0-based ``index`` in it and the wild-type / mutant token ids."""

    index: int
    wild_type_id: int
    mutant_id: int


def resolve_variant(
    variant: Variant, sequence: str, offset: int = 0, numbering: AuthorNumbering | None = None
) -> tuple[ResolvedMutation, ...]:
    """Check ``variant`` against ``sequence`` (uppercase, as in a :class:`~openesm3.protein.Protein`).

    Positions are 1-based on ``sequence`` (shifted by ``offset``), or, with ``numbering``, author residue numbers
    looked up in it (``offset`` must then be 0).

    Raises:
        InputError: naming the variant and the mutation: position outside the sequence (or a residue number not in
            the structure), a wild-type letter that does not match the sequence, a letter that is not a residue, a
            mutant that is an ambiguity code (X, B, Z), two mutations at one position, or a chain / insertion code
            without author numbering; also ``numbering`` built from a protein whose sequence is not ``sequence``.
    """
    if numbering is not None:
        numbering.check_against(sequence, offset, "the one given", "whose sequence the variants are checked against")
    out: list[ResolvedMutation] = []
    seen: dict[int, Mutation] = {}
    for m in variant.mutations:
        where = f"variant {variant.text!r}: mutation {m}"
        if numbering is not None:
            index = numbering.index(m, where)
        else:
            if m.chain is not None or m.insertion_code:
                named = f"a chain ({m.chain}/)" if m.chain is not None else f"an insertion code ({m.residue})"
                raise InputError(
                    f"{where}: names {named}, which only author numbering reads (--numbering author; "
                    "numbering=AuthorNumbering.from_protein(...)); with sequence numbering a position is a number"
                )
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
            if numbering is not None:
                raise InputError(
                    f"{where}: {numbering.source} has {sequence[index]!r} at {numbering.label(index)}, not "
                    f"{m.wild_type!r} "
                    "(wrong chain or structure?)"
                )
            raise InputError(
                f"{where}: the sequence has {sequence[index]!r} at position {m.position}, not {m.wild_type!r} "
                f"(wrong sequence or offset? offset is {offset})"
            )
        if index in seen:
            label = f"position {m.position}" if numbering is None else numbering.label(index)
            raise InputError(f"{where}: {label} is mutated twice (also by {seen[index]})")
        seen[index] = m
        out.append(ResolvedMutation(index, _RESIDUE_IDS[m.wild_type], _RESIDUE_IDS[m.mutant]))
    return tuple(out)


# ---- author numbering ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuthorNumbering:
    """A structure's own residue numbering (author ``residue_index`` and ``insertion_code`` of a
    :class:`~openesm3.protein.Protein` read from a structure file), for variants written in it (``H52G``, ``H52AG``,
    ``L/H52G``; see the module docstring). Build it with :meth:`from_protein`.

    Attributes:
        source: names the structure in errors (its file).
        residues: ``(chain, number, insertion code) -> index`` (0-based in the protein's sequence string, chain
            breaks counted).
        chains: the chain ids in order, with their residues' ``(number, insertion code)`` in order.
        default_chain: the chain of a mutation that names none (None: a complex without a default chain).
        sequence: the protein's sequence (chains joined by ``|``), to check that scores use the same protein.
        duplicates: residues named more than once in a chain (a variant naming one is refused).
    """

    source: str
    sequence: str
    residues: dict[tuple[str, int, str], int]
    chains: dict[str, tuple[tuple[int, str], ...]]
    default_chain: str | None
    duplicates: frozenset[tuple[str, int, str]] = frozenset()

    @classmethod
    def from_protein(cls, protein: Any, *, source: str | None = None, chain: str | None = None) -> AuthorNumbering:
        """The numbering of ``protein`` (a :class:`~openesm3.protein.Protein` with ``residue_index``).

        ``chain``: the chain of mutations that name none (default: the only chain of a single-chain protein).
        ``source`` names the protein in errors (default: its name).

        Raises:
            InputError: the protein has no residue numbers (e.g. read from FASTA), or ``chain`` is not one of its
                chains.
        """
        label = source if source is not None else (protein.name or "the protein")
        if protein.residue_index is None:
            raise InputError(
                f"{label}: author numbering needs the residue numbers of a structure file (PDB / mmCIF); this protein "
                "has none (a FASTA record, or JSON without residue_index): use sequence numbering, with an offset for "
                "a chain numbered from K + 1"
            )
        codes = protein.insertion_code
        residues: dict[tuple[str, int, str], int] = {}
        chains: dict[str, tuple[tuple[int, str], ...]] = {}
        duplicates: set[tuple[str, int, str]] = set()
        for chain_id, start, end in protein.chain_segments():
            numbers = []
            for index in range(start, end):
                key = (chain_id, int(protein.residue_index[index]), "" if codes is None else str(codes[index]).upper())
                if key in residues:
                    duplicates.add(key)
                residues.setdefault(key, index)
                numbers.append(key[1:])
            chains[chain_id] = tuple(numbers)
        if chain is not None and chain not in chains:
            raise InputError(f"{label}: no chain {chain!r} (chains: {', '.join(chains)})")
        default = chain if chain is not None else (next(iter(chains)) if len(chains) == 1 else None)
        return cls(label, protein.sequence or "", residues, chains, default, frozenset(duplicates))

    def check_against(self, sequence: str, offset: int, what: str, protein: str) -> None:
        """Refuse an ``offset`` (the residue numbers are the file's) and a ``sequence`` other than the one this
        numbering was built from, whose indices would point elsewhere or past the end. ``what`` names ``sequence``
        in the message and ``protein`` says which protein :meth:`from_protein` takes."""
        if offset != 0:
            raise InputError(
                f"author numbering takes no offset (got offset {offset}): the residue numbers are the file's"
            )
        if self.sequence != sequence:
            raise InputError(
                f"numbering: built from {self.source}, whose sequence is not {what} (AuthorNumbering.from_protein "
                f"takes the protein {protein})"
            )

    def index(self, mutation: Mutation, where: str) -> int:
        """0-based index in the sequence string of the residue ``mutation`` names; ``where`` prefixes errors."""
        chain = mutation.chain if mutation.chain is not None else self.default_chain
        if chain is None:
            nameable = [c for c in self.chains if nameable_chain(c)]
            example = f"name the chain ({nameable[0]}{CHAIN_SEPARATOR}{mutation}) or " if nameable else ""
            raise InputError(
                f"{where}: {self.source} has chains {', '.join(self.chains)}: {example}give a default chain "
                "(--variant-chain)"
            )
        if chain not in self.chains:
            raise InputError(f"{where}: {self.source} has no chain {chain!r} (chains: {', '.join(self.chains)})")
        key = (chain, mutation.position, mutation.insertion_code)
        if key in self.duplicates:
            raise InputError(f"{where}: residue {mutation.residue} appears more than once in chain {chain} of "
                             f"{self.source}, so it names no one residue")  # fmt: skip
        if key not in self.residues:
            raise InputError(
                f"{where}: residue {mutation.residue} is not in chain {chain} of {self.source}; {self.describe(chain)}"
            )
        return self.residues[key]

    def label(self, index: int) -> str:
        """``chain A residue 52A`` for the residue at ``index`` of the sequence string."""
        chain, number, code = next(key for key, i in self.residues.items() if i == index)
        return f"chain {chain} residue {number}{code}"

    def describe(self, chain: str) -> str:
        """``chain A has residues 3-120 with a gap at 60-65; insertion codes: 52A, 52B``: what can be named."""
        numbers = self.chains[chain]
        plain = [n for n, code in numbers if not code]
        runs: list[list[int]] = []
        for n in plain:
            if runs and n == runs[-1][1] + 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        if not runs:
            text = f"chain {chain} has no residue without an insertion code"
        elif all(b[0] > a[1] for a, b in zip(runs, runs[1:])):  # increasing: one range with gaps
            text = f"chain {chain} has residues {_span(runs[0][0], runs[-1][1])}"
            gaps = [_span(a[1] + 1, b[0] - 1) for a, b in zip(runs, runs[1:])]
            if gaps:
                text += f" with {'a gap' if len(gaps) == 1 else 'gaps'} at {_some(gaps)}"
        else:
            text = f"chain {chain} has residues {_some([_span(a, b) for a, b in runs])} (in file order)"
        coded = [f"{n}{code}" for n, code in numbers if code]
        if coded:
            text += f"; insertion codes: {_some(coded)}"
        return text


def _span(first: int, last: int) -> str:
    """``3-120``; ``-2 to 5`` when a number is negative (``-2--1`` would be hard to read)."""
    if first == last:
        return f"{first}"
    return f"{first} to {last}" if first < 0 or last < 0 else f"{first}-{last}"


def _some(items: list[str], limit: int = 8) -> str:
    """The first ``limit`` items, comma-separated, and how many more."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


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
