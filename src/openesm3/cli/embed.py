"""``openesm3 embed``: per-residue and mean ESM3 embeddings of every input protein, written to files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from openesm3.cli.common import add_model_arguments, add_overwrite_argument

DESCRIPTION = """\
Embed every protein of the inputs (FASTA records, protein JSON, or structure files) with the ESM3 trunk.
Per protein: the hidden state of --layer at each residue, [L, D] float32 with BOS/EOS stripped (rows line up
with the sequence's characters, chain breaks '|' included), and its mean over residues, [D].

Output (-o): a directory of <id>.npy ([L, D]) and <id>.mean.npy ([D]) files plus index.tsv (record id ->
file name), or, with --format safetensors (default when OUT ends in .safetensors), one file holding tensors
<id> and <id>.mean. Ids become safe file names (other characters -> '_', duplicates get _2, _3, ...). Files
are written atomically: the .npy files as each batch finishes, with index.tsv rewritten to list them; a
.safetensors file (held in memory until then) at the end, or, when the run is stopped by Ctrl-C, SIGTERM or an
error, with the embeddings done so far. A file this run would write that is already there (an earlier run's
embeddings) stops it before any model is loaded, as a stopped rerun would leave them part replaced: give a new OUT,
or --overwrite (other files in the directory are left alone). The file names come from the ids of the readable
records, in input order; a record that cannot be encoded (too long for the model) leaves its name unused. A bad
record is reported and skipped; the others complete.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "embed",
        help="per-residue and mean embeddings of FASTA records (or JSON / structure files)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA, protein JSON or structure file(s)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory (npy) or .safetensors file")
    p.add_argument("--format", choices=("npy", "safetensors"), help="default: by the output name")
    p.add_argument(
        "--layer",
        type=int,
        default=-1,
        help="0 = input embedding, i = after block i, negative counts from the end (default -1: the last block, "
        "the SDK's embeddings)",
    )
    p.add_argument("--mean-only", action="store_true", help="write only the mean embeddings")
    add_overwrite_argument(p)
    add_model_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from openesm3.cli.common import (
        Failures,
        bundle_from_args,
        check_model_options,
        check_new_outputs,
        check_output_dir,
        check_output_file,
        progress_bar,
        read_inputs,
        refuse_stdout,
        split_items,
    )
    from openesm3.cli.kept import report_kept
    from openesm3.errors import InputError, OpenESM3Error
    from openesm3.generation.embedding import (
        EmbeddingFormat,
        EmbeddingWriter,
        embed_batch,
        embedding_files,
        embedding_names,
        length_batches,
    )

    refuse_stdout(args.output, "-o", "embed writes a directory of .npy files or a .safetensors file")
    check_model_options(args)
    named_safetensors = args.output.lower().endswith(".safetensors")
    if args.format == "npy" and named_safetensors:
        raise InputError(f"-o {args.output} names a .safetensors file, but --format npy writes a directory")
    fmt: EmbeddingFormat = args.format or ("safetensors" if named_safetensors else "npy")
    if fmt == "safetensors":  # a directory, or an input file (replaced with --overwrite): refused before any work
        check_output_file(args.output, "-o", args.inputs)
    else:  # a file there or on its way: refused before any work (the directory is made once the trunk is loaded)
        check_output_dir(args.output, "-o")
    items = read_inputs(args.inputs)
    failures = Failures("embed")
    valid = split_items(items, failures)
    if not valid:
        failures.report(len(items), "protein(s)")
        return 2
    # Names from the ids of the readable records, in input order (not of the records that encode, known only once
    # the trunk is loaded and the structures encoded): every file this run could write is checked before model work.
    names = embedding_names([item.name for item, _ in valid])
    files = embedding_files(args.output, fmt, names, per_residue=not args.mean_only)
    check_new_outputs(args, [("-o", args.output, files)])
    has_structure = any(protein.coordinates is not None for _, protein in valid)
    bundle = bundle_from_args(args, needs=("esm3", "structure_encoder") if has_structure else ("esm3",))
    n_layers = bundle.n_layers
    if not -(n_layers + 1) <= args.layer <= n_layers:
        raise InputError(f"--layer {args.layer}: this model has layers -{n_layers + 1}..{n_layers}")

    encoded = []
    for (item, protein), name in zip(valid, names):
        try:
            tensor = bundle.encode(protein)
            bundle.check_length(tensor, item.name)
        except OpenESM3Error as exc:
            failures.add(item.name, exc)
            continue
        encoded.append((item, tensor, name))

    # Where the trunk was found, also when it came from $OPENESM3_WEIGHTS or the default location.
    metadata = {"layer": str(args.layer), "dtype": args.dtype, "weights": str(bundle.locate("esm3"))}
    writer = EmbeddingWriter(args.output, fmt, per_residue=not args.mean_only, metadata=metadata)
    done = 0

    def kept() -> str | None:
        return f"{done} of {len(encoded)} protein(s) in {args.output}" if done else None

    # A stopped run leaves the .npy files with an index.tsv of them all, or the safetensors file of the embeddings
    # held so far, written then.
    with report_kept("embed", kept, writer.close), progress_bar(args, len(encoded), "embed", "protein") as bar:
        for group in length_batches([len(t) for _, t, _ in encoded], args.batch_size):
            try:
                results = list(zip(group, embed_batch(bundle.esm3, [encoded[i][1] for i in group], layer=args.layer)))
            except OpenESM3Error:
                results = []  # find the bad item: one by one
                for i in group:
                    item, tensor, _ = encoded[i]
                    try:
                        results.append((i, embed_batch(bundle.esm3, [tensor], layer=args.layer)[0]))
                    except OpenESM3Error as exc:
                        failures.add(item.name, exc)
                        bar.update()
            for i, embedding in results:
                item, _, name = encoded[i]
                writer.add(item.name, embedding, name=name)
                done += 1
                bar.update()
            if results:
                writer.write_index()  # npy: index.tsv lists every file written so far
    if done:
        writer.close()
        print(f"openesm3 embed: {done} protein(s) -> {args.output} ({fmt}, layer {args.layer})", file=sys.stderr)
    failures.report(len(items), "protein(s)")
    return failures.exit_code(done)
