"""``openesm3 score``: pseudo-log-likelihoods of sequences, or masked- / wild-type-marginal scores of variants."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from typing import Any

from openesm3.cli.common import (
    DEFAULT_BATCH_SIZE,
    add_model_arguments,
    add_overwrite_argument,
    check_model_options,
    names_a_file,
    write_table,
)

DESCRIPTION = """\
Two modes.

Without variants: the pseudo-log-likelihood (PLL) of every input protein: each residue is masked in turn and
log p(residue | rest) summed (natural log). Columns: id, length, n_scored, pll, pll_per_residue, perplexity.

With variants (--mutations, --mutations-file or --dms): scores against the one wild-type protein of INPUT,
sum(log p(mutant) - log p(wild type)) over the mutated positions (higher = predicted fitter). --method
masked-marginal (default): the mutated positions are masked together, one forward pass per set of positions.
--method wt-marginal (Meier et al. 2021): read off one forward pass of the unmasked wild type, one pass for the
whole scan (so it takes no --batch-size). Syntax A42G, multi-mutants A42G:L50P, WT for the wild type; positions
are 1-based on the sequence, --offset K when the sequence starts at residue K+1. --numbering author (INPUT a
structure file): positions are the file's own residue numbers, with an optional insertion code before the mutant
(H52AG = residue 52A) and, in a complex, the chain before a '/' (L/H52G; or --variant-chain L for mutations naming
none). With --dms and a score column the Spearman correlation with the measurements is reported. Columns: mutant
(as written), score[, measured], error. A structure file as INPUT conditions the scores on its coordinates.

Variants that do not fit the sequence (wrong wild-type letter, position outside) are reported by name (after
FILE:LINE when read from --mutations-file or --dms) and the others are still scored. Output: -o FILE (.tsv,
.csv or .json; written atomically), else (or with -o -) a TSV table on stdout, at the end. The -o file is
rewritten with every result so far (in input order) after each protein, or every few seconds in a variant scan,
and when the run is stopped (Ctrl-C, SIGTERM, an error), so a stopped run keeps what was scored. An existing -o
file (an earlier run's table) stops the run before any work, as a stopped rerun would leave it part replaced: give
a new file, or --overwrite.
"""


# The -o table of a variant scan is rewritten with the scores so far at most this often (and when the run stops):
# after every pass of a few variants it would be written thousands of times over.
_REWRITE_SECONDS = 10.0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "score",
        help="pseudo-log-likelihood of sequences, masked-marginal variant effects (DMS CSVs, Spearman)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA, protein JSON or structure file(s)")
    variants = p.add_argument_group("variants")
    variants.add_argument("--mutations", nargs="+", metavar="VARIANT", help="e.g. A42G A42G:L50P (or comma-separated)")
    variants.add_argument("--mutations-file", metavar="FILE", help="one variant per line ('#' comments)")
    variants.add_argument("--dms", metavar="CSV", help="deep mutational scan (CSV; TSV by suffix .tsv/.tab; also .gz)")
    variants.add_argument("--mutant-column", default="mutant", help="DMS column of the variants (default mutant)")
    variants.add_argument("--score-column", help="DMS column of the measured scores (default DMS_score if present)")
    variants.add_argument(
        "--method", choices=("masked-marginal", "wt-marginal"), default=None,
        help="masked-marginal (default: mutated positions masked, a pass per set of positions) or wt-marginal "
        "(one pass of the unmasked wild type for the whole scan)",
    )  # fmt: skip
    variants.add_argument(
        "--numbering", choices=("sequence", "author"), default=None,
        help="what variant positions count: sequence (default: 1-based on the sequence, shifted by --offset) or "
        "author (a structure file's own residue numbers: H52G, insertion code H52AG, chain L/H52G)",
    )  # fmt: skip
    variants.add_argument("--variant-chain", metavar="ID",
                          help="with --numbering author: the chain of mutations that name none")  # fmt: skip
    variants.add_argument("--offset", type=int, default=None,
                          help="number of the first residue minus 1 (sequence numbering; default 0)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the table here (.tsv, .csv, .json; default, or '-': TSV on stdout)")  # fmt: skip
    add_overwrite_argument(p)
    add_model_arguments(p)
    # None: not given (refused with wt-marginal, and left None there: the run batches nothing), else the default
    p.set_defaults(handler=run, batch_size=None)


def _variant_texts(args: argparse.Namespace) -> tuple[list[str], list[str], list[float] | None, str | None]:
    """The variants asked for, where each comes from (``FILE:LINE`` for files, else the text itself), the
    measured scores and their column (``--dms``)."""
    from openesm3.errors import InputError
    from openesm3.generation.variants import read_dms_csv
    from openesm3.utils.text import read_text_file

    texts: list[str] = []
    sources: list[str] = []
    measured: list[float] | None = None
    column = None
    for value in args.mutations or ():
        parts = [part.strip() for part in value.split(",") if part.strip()]
        texts.extend(parts)
        sources.extend(parts)
    if args.mutations_file:
        lines = read_text_file(args.mutations_file, role="--mutations-file").splitlines()
        for number, line in enumerate(lines, start=1):
            if text := line.split("#")[0].strip():
                texts.append(text)
                sources.append(f"{args.mutations_file}:{number}")
    if args.dms:
        rows, column = read_dms_csv(args.dms, mutant_column=args.mutant_column, score_column=args.score_column)
        if texts:
            raise InputError("--dms cannot be combined with --mutations / --mutations-file")
        texts = [row.mutant for row in rows]
        sources = [f"{args.dms}:{row.line}" for row in rows]
        measured = [row.score for row in rows] if column is not None else None
    return texts, sources, measured, column


def run(args: argparse.Namespace) -> int:
    from openesm3.cli.common import (
        Failures,
        bundle_from_args,
        check_new_outputs,
        check_output_file,
        read_inputs,
        split_items,
    )
    from openesm3.errors import InputError

    check_model_options(args)
    read_files = [*args.inputs, *(f for f in (args.mutations_file, args.dms) if f is not None)]
    check_output_file(args.output, "-o", read_files)
    check_new_outputs(args, [("-o", args.output, [args.output])])
    texts, sources, measured, column = _variant_texts(args)
    items = read_inputs(args.inputs)
    # Any variant option asks for variant scores: one that holds no variant is an error, not a silent PLL table.
    variant_mode = args.mutations is not None or args.mutations_file is not None or args.dms is not None
    if variant_mode and not texts:  # (an empty --dms table is refused when read)
        where = f"--mutations-file {args.mutations_file}" if args.mutations_file is not None else "--mutations"
        raise InputError(f"{where}: no variants to score")
    if variant_mode and len(items) != 1:
        raise InputError(
            f"variant scoring needs exactly one wild-type protein; the input(s) hold {len(items)} "
            "(split the FASTA or pass one record)"
        )
    _check_variant_options(args, variant_mode)
    if variant_mode:
        _fill_variant_defaults(args, column)
    if args.batch_size is None and args.method != "wt-marginal":
        args.batch_size = DEFAULT_BATCH_SIZE  # (a --record shows the batch size the run used: none for wt-marginal)
    failures = Failures("score")
    valid = split_items(items, failures)
    if not valid:
        failures.report(len(items), "protein(s)")
        return 2
    numbering = _numbering(args, valid[0], texts) if variant_mode and args.numbering == "author" else None
    has_structure = any(protein.coordinates is not None for _, protein in valid)
    bundle = bundle_from_args(args, needs=("esm3", "structure_encoder") if has_structure else ("esm3",))
    if variant_mode:
        return _score_variants(args, bundle, valid[0], texts, sources, measured, column, numbering, failures)
    return _score_sequences(args, bundle, valid, failures, len(items))


def _check_variant_options(args: argparse.Namespace, variant_mode: bool) -> None:
    """The variant-only options are refused without variants (a PLL table would silently ignore them), --offset /
    --variant-chain with the numbering they do not belong to, and --batch-size with wt-marginal (one pass)."""
    from openesm3.errors import InputError

    if not variant_mode:
        names = ("method", "numbering", "variant_chain", "offset")
        given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]
        if given:
            raise InputError(
                f"{', '.join(given)}: for variant scores only (--mutations, --mutations-file or --dms); without "
                "variants score computes pseudo-log-likelihoods"
            )
    if args.numbering == "author" and args.offset is not None:
        raise InputError(
            "--offset shifts sequence numbering; with --numbering author the positions are the structure file's own "
            "residue numbers: drop --offset"
        )
    if args.variant_chain is not None and args.numbering != "author":
        raise InputError("--variant-chain names the chain of author-numbered variants: add --numbering author")
    if args.method == "wt-marginal" and args.batch_size is not None:
        raise InputError(
            "--batch-size: --method wt-marginal reads every variant off one forward pass of the wild type, so there "
            "is nothing to batch: drop --batch-size"
        )


def _fill_variant_defaults(args: argparse.Namespace, column: str | None) -> None:
    """The defaults of the variant options not given, set once the options are checked (the checks need to know
    what was given): a --record then shows the method, numbering, offset and DMS score column the run used, not
    nulls that a rerun could not tell from "not given". --offset stays None with author numbering (it has none)."""
    if args.method is None:
        args.method = "masked-marginal"
    if args.numbering is None:
        args.numbering = "sequence"
    if args.numbering == "sequence" and args.offset is None:
        args.offset = 0
    if args.dms is not None and args.score_column is None:
        args.score_column = column  # the column found (DMS_score), or None: the table has no measured scores


def _numbering(args: argparse.Namespace, valid: Any, texts: list[str]) -> Any:
    """The author numbering of the wild type; refused for an input without residue numbers (FASTA), and for a
    complex when a mutation names no chain and --variant-chain gives none."""
    from openesm3 import protein_io
    from openesm3.errors import InputError
    from openesm3.generation.variants import AuthorNumbering, nameable_chain, parse_variant

    item, protein = valid
    kind = protein_io.file_kind(item.source)
    if protein.residue_index is None:
        what = "a FASTA file" if kind == "fasta" else "a protein JSON without residue_index"
        raise InputError(
            f"--numbering author needs the residue numbers of a structure file (PDB / mmCIF); {item.source} is {what}, "
            "which has none: give the structure file, or use --numbering sequence (with --offset K for a sequence "
            "numbered from K + 1)"
        )
    numbering = AuthorNumbering.from_protein(protein, source=item.source, chain=args.variant_chain)
    if numbering.default_chain is None:
        for text in texts:
            try:
                unnamed = [m for m in parse_variant(text).mutations if m.chain is None]
            except InputError:
                continue  # reported with the variant
            if unnamed:
                nameable = [c for c in numbering.chains if nameable_chain(c)]
                write = f"write the chain before a '/' ({nameable[0]}/{unnamed[0]}), or " if nameable else ""
                raise InputError(
                    f"{item.source} has chains {', '.join(numbering.chains)} and variant {text!r} names none: "
                    f"{write}give --variant-chain for mutations naming none"
                )
    return numbering


def _score_sequences(args: argparse.Namespace, bundle: Any, items: list[Any], failures: Any, total: int) -> int:
    from openesm3.cli.common import progress_bar
    from openesm3.cli.kept import report_kept
    from openesm3.errors import OpenESM3Error
    from openesm3.generation.scoring import pseudo_log_likelihood, scorable_positions

    encoded = []
    for item, protein in items:
        try:
            tensor = bundle.encode(protein)
            bundle.check_length(tensor, item.name)
            encoded.append((item, tensor, len(scorable_positions(tensor))))
        except OpenESM3Error as exc:
            failures.add(item.name, exc)
    rows: list[list[Any]] = []
    header = ["id", "length", "n_scored", "pll", "pll_per_residue", "perplexity"]

    def kept() -> str | None:
        return f"the scores of {len(rows)} of {len(encoded)} protein(s) in {args.output}" if rows else None

    to_file = names_a_file(args.output)  # stdout ('-' or no -o) gets it at the end
    with (
        report_kept("score", kept, lambda: write_table(args.output, header, rows))
        if to_file
        else contextlib.nullcontext(),
        progress_bar(args, sum(n for *_, n in encoded), "score", "residue") as bar,
    ):
        for item, tensor, _ in encoded:
            try:
                pll = pseudo_log_likelihood(bundle.esm3, tensor, batch_size=args.batch_size, progress=bar.update)
            except OpenESM3Error as exc:
                failures.add(item.name, exc)
                continue
            rows.append([item.name, tensor.n_residues, pll.n_scored, pll.total, pll.mean, pll.perplexity])
            if to_file:  # every protein so far, in a complete file: a stopped run keeps them
                write_table(args.output, header, rows)
    if rows and not to_file:
        write_table(args.output, header, rows)
    failures.report(total, "protein(s)")
    return failures.exit_code(len(rows))


def _score_variants(
    args: argparse.Namespace,
    bundle: Any,
    valid: Any,
    texts: list[str],
    sources: list[str],
    measured: list[float] | None,
    column: str | None,
    numbering: Any,
    failures: Any,
) -> int:
    from openesm3.cli.common import progress_bar
    from openesm3.cli.kept import report_kept
    from openesm3.errors import InputError
    from openesm3.generation.scoring import VariantScore, masked_marginal_scores, wt_marginal_scores
    from openesm3.generation.variants import Variant, parse_variant, spearman

    parsed: list[Variant | InputError] = []
    for text in texts:
        try:
            parsed.append(parse_variant(text))
        except InputError as exc:
            parsed.append(exc)
    variants = [v for v in parsed if isinstance(v, Variant)]
    item, protein = valid
    wild_type = bundle.encode(protein)
    bundle.check_length(wild_type, item.name)
    header = ["mutant", "score"] + (["measured"] if measured is not None else []) + ["error"]
    place = [n for n, v in enumerate(parsed) if isinstance(v, Variant)]  # variant k of the scan is input line place[k]
    done: dict[int, VariantScore | InputError] = {n: v for n, v in enumerate(parsed) if isinstance(v, InputError)}
    written = [-math.inf]  # when the -o file was last written (time.monotonic)
    to_file = names_a_file(args.output)  # stdout ('-' or no -o) gets it at the end

    def row(n: int) -> list[Any]:
        result = done[n]
        error = result if isinstance(result, InputError) else result.error
        score = None if isinstance(result, InputError) else result.score
        cells: list[Any] = [texts[n], math.nan if score is None else score]
        if measured is not None:
            cells.append(measured[n])
        cells.append("" if error is None else str(error))
        return cells

    def write() -> None:
        write_table(args.output, header, [row(n) for n in sorted(done)])
        written[0] = time.monotonic()

    def save(batch: list[tuple[int, VariantScore]]) -> None:
        """Keep a pass's scores; the -o file is rewritten with every variant so far (in input order) at most every
        few seconds (a scan has many small passes) and when the run stops."""
        done.update((place[k], score) for k, score in batch)
        if to_file and time.monotonic() - written[0] >= _REWRITE_SECONDS:
            write()

    def kept() -> str | None:
        scored = any(isinstance(result, VariantScore) for result in done.values())  # not only unreadable variants
        return f"{len(done)} of {len(texts)} variant(s) in {args.output}" if to_file and scored else None

    with report_kept("score", kept, write), progress_bar(args, len(variants), "score", "variant") as bar:
        position = {"offset": args.offset or 0, "numbering": numbering}
        if args.method == "wt-marginal":
            wt_marginal_scores(bundle.esm3, wild_type, variants, **position, progress=bar.update, on_batch=save)
        else:
            masked_marginal_scores(bundle.esm3, wild_type, variants, **position, batch_size=args.batch_size,
                                   progress=bar.update, on_batch=save)  # fmt: skip
    results = [done[n] for n in range(len(texts))]
    rows = [row(n) for n in range(len(texts))]
    for n, result in enumerate(results):
        error = result if isinstance(result, InputError) else result.error
        if error is not None:
            failures.add(sources[n], error)  # a file's variants are named by FILE:LINE
    write_table(args.output, header, rows)
    n_ok = sum(1 for r in results if not isinstance(r, InputError) and r.error is None)
    summary = f"openesm3 score: {n_ok} of {len(texts)} variant(s) of {item.name!r} scored"
    if measured is not None:
        rho, n_pairs = spearman([r[1] for r in rows], measured)
        summary += f"; Spearman rho = {rho:.4f} over {n_pairs} variant(s) with a measured {column!r}"
    print(summary, file=sys.stderr)
    failures.report(len(texts), "variant(s)")
    return failures.exit_code(n_ok)
