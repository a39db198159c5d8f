"""``openesm3 generate``: design proteins from prompts: unconditional, motif scaffolding, SS8 / keyword
conditioning, chain-of-thought across tracks; FASTA + one structure file per design."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from openesm3.cli.common import add_decoding_arguments, add_model_arguments, add_overwrite_argument
from openesm3.config import DESIGN_DECODING

DESCRIPTION = """\
Design --num-designs proteins per prompt. The prompt is either built from options:

  --length N                         unconditional design of N residues
  --motif FILE --motif-residues A10-25 --motif-positions 30
                                     keep residues 10-25 of chain A of FILE (author numbering; 'A10-25,A40-44'
                                     joins ranges) with their sequence and coordinates at design positions 30..45
                                     (1-based; default 1); the rest is generated
  --ss8 STRING                       SS8 letters GHITEBSC per position ('_' = free), length N
  --keywords zinc,binding            function keywords over the whole design (function vocabulary needed)

or read from --prompt FILE (protein JSON, or FASTA with '_' masks; every record is a prompt). The tracks of
--track-order (default sequence,structure; also ss8, sasa, function) are generated one after another, each
conditioned on the prompt and on the tracks before it; sequence and structure are always generated (appended if
missing). A motif is kept exactly: the design is superposed on the motif's backbone and the motif's atoms are put
back (summary column motif_rmsd = backbone RMSD of the generated motif positions before that).

Output -o DIR: designs.fasta (all designs), <id>.pdb (or .cif) per design with pLDDT in the B-factors, and
summary.tsv (id, file, length, ptm, mean_plddt, motif_rmsd, sequence). Default decoding: T = 0.7 annealed, random
order, length/2 steps per track. Prompts are taken --batch-size at a time through every track; as each batch
finishes its designs' files are written and designs.fasta and summary.tsv rewritten with every design so far (in
input order), each file atomically, so a run stopped by Ctrl-C, SIGTERM or an error keeps every design done, in
complete files. Since a rerun would replace files one by one, a run stops before any work when a file it would
write is already in DIR (designs.fasta, summary.tsv or one of its <id>.pdb): give a new DIR, or --overwrite to
replace them (other files in DIR are left alone). Each design draws from its own random stream, whatever the batch
size.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="design proteins: unconditional, motif scaffolding, SS8/keyword prompts, chain-of-thought",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    prompt = p.add_argument_group("prompt")
    prompt.add_argument("--length", type=int, metavar="N", help="design length")
    prompt.add_argument("--prompt", metavar="FILE", help="prompt(s): protein JSON, or FASTA with '_' masks")
    prompt.add_argument("--motif", metavar="FILE", help="structure file holding the motif")
    prompt.add_argument("--motif-residues", metavar="RANGE", help="chain and residue numbers, e.g. A10-25")
    prompt.add_argument("--motif-positions", type=int, metavar="POS",
                        help="1-based design position of the motif's first residue (default 1)")  # fmt: skip
    prompt.add_argument("--ss8", metavar="STRING", help="SS8 prompt (GHITEBSC, '_' free) of the design length")
    prompt.add_argument("--keywords", metavar="LIST", help="comma-separated function keywords")
    p.add_argument("--track-order", default="sequence,structure", metavar="TRACKS",
                   help="tracks to generate, in order (default sequence,structure)")  # fmt: skip
    p.add_argument("-n", "--num-designs", type=int, default=1, metavar="N", help="designs per prompt (default 1)")
    p.add_argument("--name", help="id prefix of designs built from options (default design)")
    p.add_argument("--format", choices=("pdb", "cif"), default="pdb", help="structure format (default pdb)")
    p.add_argument("--vocabulary-dir", metavar="DIR", help="function vocabulary files (for --keywords)")
    add_overwrite_argument(p)
    add_decoding_arguments(p, DESIGN_DECODING)
    add_model_arguments(p)
    p.set_defaults(handler=run)


SUMMARY_COLUMNS = ["id", "file", "length", "ptm", "mean_plddt", "motif_rmsd", "sequence"]
# Design k of the prompt at place p of the input draws from stream p * 2**32 + k - 1: its own whatever -n and the
# other records (the first prompt's designs keep streams 0..n-1).
_STREAMS_PER_PROMPT = 2**32


def _option_prompt(args: argparse.Namespace) -> Any:
    from openesm3.errors import InputError  # noqa: PLC0415
    from openesm3.generation.design import Motif, design_prompt, select_motif  # noqa: PLC0415
    from openesm3.protein import Protein  # noqa: PLC0415

    if args.length is None:
        raise InputError("give --length N (or --prompt FILE)")
    motifs = []
    if (args.motif is None) != (args.motif_residues is None):
        raise InputError("--motif FILE and --motif-residues RANGE go together")
    if args.motif is None and args.motif_positions is not None:
        raise InputError("--motif-positions places a motif: give --motif FILE --motif-residues RANGE too")
    if args.motif is not None:
        structure = Protein.from_structure(args.motif)
        source = f"{args.motif} {args.motif_residues}"
        residues = select_motif(structure, args.motif_residues, source=args.motif)
        if args.motif_positions is None:
            args.motif_positions = 1  # set, not only used: a --record shows where the motif was placed
        position = args.motif_positions
        if position < 1:
            raise InputError(f"--motif-positions must be >= 1, got {position}")
        motifs.append(Motif(residues, position - 1, source))
    keywords = [k.strip() for k in args.keywords.split(",") if k.strip()] if args.keywords else []
    if args.name is None:
        args.name = "design"  # (after the check refusing --name with --prompt) a --record shows the prefix used
    return design_prompt(args.length, motifs=motifs, ss8=args.ss8, keywords=keywords, name=args.name)


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from openesm3.cli.common import (  # noqa: PLC0415
        Failures,
        Item,
        bundle_from_args,
        check_model_options,
        check_new_outputs,
        check_not_inputs,
        decoding_from_args,
        input_positions,
        output_names,
        prepare_output_dir,
        progress_bar,
        read_inputs,
        refuse_stdout,
        split_items,
        unique_names,
        write_table,
    )
    from openesm3.cli.kept import report_kept  # noqa: PLC0415
    from openesm3.errors import InputError, OpenESM3Error, VocabularyError  # noqa: PLC0415
    from openesm3.generation.design import design, parse_track_order  # noqa: PLC0415
    from openesm3.protein_io import write_fasta  # noqa: PLC0415

    refuse_stdout(args.output, "-o", "generate writes a directory (structures, designs.fasta, summary.tsv)")
    check_model_options(args)
    if args.num_designs < 1:
        raise InputError(f"--num-designs must be >= 1, got {args.num_designs}")
    decoding = decoding_from_args(args)
    order = parse_track_order(args.track_order)
    failures = Failures("generate")
    if args.prompt is not None:
        built = [args.length, args.motif, args.motif_residues, args.motif_positions, args.ss8, args.keywords, args.name]
        if any(v is not None for v in built):
            raise InputError(
                "--prompt FILE cannot be combined with --length/--motif/--motif-residues/--motif-positions/--ss8/"
                "--keywords/--name (the prompt file holds the prompts and their names)"
            )
        items = read_inputs([args.prompt])
    else:
        prompt = _option_prompt(args)
        items = [Item(prompt.name, "options", protein=prompt)]
    valid = split_items(items, failures)
    if not valid:
        failures.report(len(items), "prompt(s)")
        return 2
    needs = ("esm3", "structure_decoder") + (("function_decoder",) if "function" in order else ())
    bundle = bundle_from_args(args, needs=needs)
    if "function" in order:
        try:
            bundle.tokenizers.function_vocabulary  # noqa: B018 - decoding function tokens needs it: checked before any work
        except VocabularyError as exc:
            raise VocabularyError(f"--track-order function needs the function vocabulary: {exc}") from None
    if args.prompt is None:  # an unknown keyword, a --length beyond the model's limit: stop before loading any model
        prompt_tokens = bundle.encode(valid[0][1], structure_tokens=False)
        try:
            bundle.check_length(prompt_tokens)  # the limit is read from the trunk's config, not its weights
        except InputError as exc:
            raise InputError(f"--length {args.length}: {exc}") from None
    if "function" in order:
        bundle.check_function_vocabulary()  # loads the function decoder
    out = prepare_output_dir(args.output, "-o")
    prompts, names, streams = [], [], []
    for prompt_name, (_, protein), position in zip(
        unique_names([p.name or item.name for item, p in valid]), valid, input_positions(items)
    ):
        for k in range(1, args.num_designs + 1):
            prompts.append(protein.replace(name=f"{prompt_name}_{k}"))
            names.append(f"{prompt_name}_{k}")
            streams.append(position * _STREAMS_PER_PROMPT + k - 1)
    stems = output_names(names)
    sources = [f for f in (args.prompt, args.motif) if f is not None]
    outputs = [out / f"{stem}.{args.format}" for stem in stems] + [out / "designs.fasta", out / "summary.tsv"]
    check_not_inputs(outputs, sources, "-o")
    check_new_outputs(args, [("-o", args.output, outputs)])
    designed: dict[int, Any] = {}  # design index -> protein written
    rows: dict[int, list[Any]] = {}
    errors: dict[int, OpenESM3Error] = {}

    def save(batch: list[tuple[int, Any]]) -> None:
        """Write a batch's designs as soon as they are done, and designs.fasta and summary.tsv again with every
        design so far (in input order): a run stopped later keeps them all, in complete files."""
        for i, result in batch:
            if isinstance(result, OpenESM3Error):
                errors[i] = result
                continue
            protein = result.protein
            path = out / f"{stems[i]}.{args.format}"
            try:
                protein.to_mmcif(path) if args.format == "cif" else protein.to_pdb(path)
            except OpenESM3Error as exc:
                errors[i] = exc
                continue
            designed[i] = protein
            mean_plddt = float(np.nanmean(protein.plddt)) if protein.plddt is not None else float("nan")
            rmsd = float("nan") if result.motif_rmsd is None else result.motif_rmsd
            rows[i] = [names[i], path.name, len(protein), protein.ptm, mean_plddt, rmsd, protein.sequence]
        if any(i in designed for i, _ in batch):
            write()

    def write() -> None:
        done = sorted(designed)
        write_fasta(out / "designs.fasta", [designed[i] for i in done])
        write_table(str(out / "summary.tsv"), SUMMARY_COLUMNS, [rows[i] for i in done])

    def kept() -> str | None:
        if not designed:
            return None
        return (f"{len(designed)} of {len(prompts)} design(s) in {out} (designs.fasta, summary.tsv, "
                f"<id>.{args.format})")  # fmt: skip

    with (
        report_kept("generate", kept, write),
        progress_bar(args, len(prompts) * len(order), "generate", "track") as bar,
    ):
        design(bundle, prompts, order, decoding, seed=args.seed, batch_size=args.batch_size,
               progress=bar.update, streams=streams, on_batch=save)  # fmt: skip
    for i in sorted(errors):
        failures.add(names[i], errors[i])
    if designed:
        print(f"openesm3 generate: {len(designed)} design(s) -> {out} (tracks: {', '.join(order)})", file=sys.stderr)
    failures.report(len(prompts) + len(items) - len(valid), "design(s)")
    return failures.exit_code(len(designed))
