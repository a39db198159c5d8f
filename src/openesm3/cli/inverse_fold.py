"""``openesm3 inverse-fold``: sample sequences for the backbones of structure files, with their recovery of the
native sequence."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from openesm3.cli.common import add_decoding_arguments, add_model_arguments, add_overwrite_argument
from openesm3.config import INVERSE_FOLD_DECODING

DESCRIPTION = """\
Design sequences for the backbone of every input structure (PDB / mmCIF / BinaryCIF, optionally gzip'd; or protein
JSON with coordinates): the model reads the coordinates through geometric attention and decodes an all-mask
sequence (default: T = 0.7 annealed, random order, length/2 steps); only the 20 standard amino acids are sampled.

Output: -o FILE.fasta with --num-samples records per structure, headers
'>ID_k recovery=0.4123 structure=FILE chains=A', recovery = the fraction of the native's standard residues that
the design has at the same position. A summary table (id, sample, length, recovery; and a mean row per structure)
goes to --summary FILE (.tsv/.csv/.json) or stdout. A file without coordinates is reported by name and the
others complete. As each batch finishes, the FASTA and the --summary file are rewritten with every structure
done so far (in input order; each file atomically), so a run stopped by Ctrl-C, SIGTERM or an error keeps them
(what goes to stdout is printed at the end only). -o - prints the FASTA on stdout; the summary table then goes only
to a --summary FILE (stdout holds the FASTA alone). An existing -o or --summary file (an earlier run's) stops the
run before any work, as a stopped rerun would leave it part replaced: give new files, or --overwrite.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "inverse-fold",
        help="sample sequences for structures (FASTA with sequence recovery)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="structure file(s) or protein JSON with coordinates")
    p.add_argument("-o", "--output", required=True, metavar="FASTA", help="designed sequences (FASTA; '-': stdout)")
    p.add_argument("--chains", metavar="IDS", help="comma-separated chain ids to read (default: every protein chain)")
    p.add_argument("-n", "--num-samples", type=int, default=1, metavar="N", help="sequences per structure (default 1)")
    p.add_argument("--summary", metavar="FILE",
                   help="recovery table (.tsv, .csv, .json; '-': stdout); default: stdout, none with -o -")  # fmt: skip
    add_overwrite_argument(p)
    add_decoding_arguments(p, INVERSE_FOLD_DECODING)
    add_model_arguments(p)
    p.set_defaults(handler=run)


SUMMARY_COLUMNS = ["id", "sample", "length", "recovery"]


def _designed(name: str, source: str, native: Any, designs: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """The FASTA records and summary rows (one per sample, then their mean) of one structure's designs."""
    from openesm3.generation.tasks import sequence_recovery  # noqa: PLC0415
    from openesm3.protein_io import FASTA_LINE_WIDTH  # noqa: PLC0415

    records: list[str] = []
    rows: list[list[Any]] = []
    recoveries = []
    for k, design in enumerate(designs, start=1):
        assert design.sequence is not None and native.sequence is not None
        recovery = sequence_recovery(design.sequence, native.sequence)
        recoveries.append(recovery)
        chain_text = ",".join(native.chain_ids or ())
        header = f">{design.name} recovery={recovery:.4f} structure={source} chains={chain_text}"
        body = design.sequence
        records.append(header + "\n" + "\n".join(body[i : i + FASTA_LINE_WIDTH]
                                                 for i in range(0, len(body), FASTA_LINE_WIDTH)))  # fmt: skip
        rows.append([name, str(k), len(native), recovery])
    finite = [r for r in recoveries if not math.isnan(r)]
    rows.append([name, "mean", len(native), sum(finite) / len(finite) if finite else math.nan])
    return records, rows


def run(args: argparse.Namespace) -> int:
    from openesm3.cli.common import (  # noqa: PLC0415
        Failures,
        bundle_from_args,
        chain_ids,
        check_distinct_outputs,
        check_model_options,
        check_new_outputs,
        check_output_file,
        decoding_from_args,
        input_positions,
        is_stdout,
        names_a_file,
        progress_bar,
        read_inputs,
        split_items,
        unique_names,
        write_table,
        write_text,
    )
    from openesm3.cli.kept import report_kept  # noqa: PLC0415
    from openesm3.errors import InputError, OpenESM3Error  # noqa: PLC0415
    from openesm3.generation.tasks import inverse_fold  # noqa: PLC0415

    check_model_options(args)
    if args.num_samples < 1:
        raise InputError(f"--num-samples must be >= 1, got {args.num_samples}")
    decoding = decoding_from_args(args)
    check_output_file(args.output, "-o", args.inputs)
    check_output_file(args.summary, "--summary", args.inputs)
    check_distinct_outputs([("-o", args.output), ("--summary", args.summary)])
    check_new_outputs(args, [("-o", args.output, [args.output]), ("--summary", args.summary, [args.summary])])
    items = read_inputs(args.inputs, chains=chain_ids(args.chains, "--chains"))
    failures = Failures("inverse-fold")
    valid = split_items(items, failures)
    if not valid:
        failures.report(len(items), "structure(s)")
        return 2
    bundle = bundle_from_args(args, needs=("esm3",))
    names = unique_names([item.name for item, _ in valid])  # design ids name their structure unambiguously
    proteins = [p.replace(name=name) for name, (_, p) in zip(names, valid)]
    records: dict[int, list[str]] = {}  # structure index -> its FASTA records
    rows: dict[int, list[list[Any]]] = {}  # structure index -> its summary rows
    errors: dict[int, OpenESM3Error] = {}

    def save(batch: list[tuple[int, Any]]) -> None:
        """Keep a batch's designs, and write the FASTA (and a --summary file) again with every structure done so far,
        in input order: a run stopped later keeps them all, in complete files."""
        for i, result in batch:
            if isinstance(result, OpenESM3Error):
                errors[i] = result
                continue
            records[i], rows[i] = _designed(names[i], valid[i][0].source, valid[i][1], result)
        if any(i in records for i, _ in batch):
            write()

    fasta_to_file = names_a_file(args.output)  # '-': the FASTA goes to stdout at the end
    summary_to_file = names_a_file(args.summary)

    def fasta() -> str:
        return "\n".join(r for i in sorted(records) for r in records[i]) + "\n"

    def table() -> list[list[Any]]:
        return [row for i in sorted(rows) for row in rows[i]]

    def write() -> None:
        if fasta_to_file:
            write_text(args.output, fasta())
        if summary_to_file:
            write_table(args.summary, SUMMARY_COLUMNS, table())

    def kept() -> str | None:
        if not records or not (fasta_to_file or summary_to_file):
            return None
        n = sum(len(r) for r in records.values())
        done = f"{len(records)} of {len(proteins)} structure(s)"
        if not fasta_to_file:  # the --summary file alone: the sequences were to go to stdout at the end
            return (
                f"the summary of {n} design(s) for {done} in {args.summary} (no FASTA: -o - prints it at the end only)"
            )
        summary = f" and {args.summary}" if summary_to_file else ""
        return f"{n} sequence(s) for {done} in {args.output}{summary}"

    with (
        report_kept("inverse-fold", kept, write),
        progress_bar(args, len(proteins) * args.num_samples, "inverse-fold", "sequence") as bar,
    ):
        inverse_fold(bundle, proteins, args.num_samples, decoding, seed=args.seed, batch_size=args.batch_size,
                     progress=bar.update, streams=input_positions(items), on_batch=save)  # fmt: skip
    for i in sorted(errors):
        failures.add(names[i], errors[i])
    if records:
        if not fasta_to_file:
            write_text(args.output, fasta())  # on stdout: once, at the end
        if is_stdout(args.summary) or (args.summary is None and fasta_to_file):  # -o -: stdout holds the FASTA only
            write_table(None, SUMMARY_COLUMNS, table())
        n = sum(len(r) for r in records.values())
        where = args.output if fasta_to_file else "standard output"
        print(f"openesm3 inverse-fold: {n} sequence(s) for {len(records)} structure(s) -> {where}",
              file=sys.stderr)  # fmt: skip
    failures.report(len(items), "structure(s)")
    return failures.exit_code(len(records))
