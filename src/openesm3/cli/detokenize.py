"""``openesm3 detokenize``: structure tokens (JSON) -> structures (backbones, or every heavy atom with
``--with-sequence``) with pLDDT, pTM and PAE.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from openesm3.cli.common import add_overwrite_argument


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "detokenize",
        help="decode ESM3 structure tokens into structures (backbones; all atoms with --with-sequence)",
        description=(
            "Decode the structure tokens of a JSON file written by 'openesm3 tokenize-structure' (or any file of "
            "that format) with the structure VQ-VAE decoder. Writes PDB or mmCIF with N, CA, C and inferred O, "
            "pLDDT (0-1, as the official SDK) in the B-factor column, chain ids and residue numbers from the "
            "tokens; prints pTM and mean pLDDT per structure (for heads that the weights record as never trained, "
            "as a stage-1 tokenizer export's: 'not trained', B-factors 0, null in --confidence). With "
            "--with-sequence, a sequence-conditioned decoder "
            "(such as the bundled one) also reads each chain's sequence from the file and builds every heavy atom. "
            "Structures of the same name are written as NAME, NAME_2, ... (in a file name, characters other than "
            "letters, digits, '.', '_' and '-' become '_'). A structure longer than the decoder's "
            "context is reported by name and the others are still written (exit code 1; 2 when none could be). "
            "Into a directory the structures are written as each batch is decoded, so a file this run would write "
            "that is already there (an earlier run's) stops it before the decoder is loaded: give a new directory, "
            "or --overwrite (other files there are left alone)."
        ),
    )
    p.add_argument("tokens", metavar="TOKENS", help="structure-token JSON file")
    p.add_argument("--weights", metavar="PATH", help="decoder weights: esm3_structure_decoder_v0.pth, an OpenESM3 "
                   "directory, or a directory holding either (default: $OPENESM3_WEIGHTS, else the "
                   "small tokenizer bundled with OpenESM3, docs/tokenizer_training.md)")  # fmt: skip
    p.add_argument("--out", metavar="PATH", required=True,
                   help="output file for one structure (format from the suffix: .pdb, .cif or .bcif, optionally .gz; "
                        "'-': one structure on stdout, in --format, default pdb), or a directory for several (one "
                        "NAME.pdb / NAME.cif each)")  # fmt: skip
    p.add_argument("--format", choices=["pdb", "cif"], help="output format (default: from the suffix, else pdb)")
    p.add_argument("--with-sequence", action="store_true",
                   help="decode all heavy atoms from the tokens and each chain's sequence in the file "
                        "(needs a sequence-conditioned decoder, such as the bundled one; the official one "
                        "has none)")  # fmt: skip
    p.add_argument("--confidence", metavar="FILE", help="also write pLDDT, pTM and PAE per structure as JSON")
    p.add_argument("--batch-size", type=int, default=8,
                   help="structures per forward pass (default 8; --with-sequence decodes one at a time)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    add_overwrite_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from openesm3.checkpoints.vqvae_weights import load_vqvae_network
    from openesm3.cli.common import (
        Failures,
        check_new_outputs,
        check_output_file,
        is_stdout,
        output_names,
        prepare_output_dir,
        progress_bar,
        refuse_stdout,
        stdout_structure_format,
        unique_names,
        untrained_note,
        write_structure_text,
    )
    from openesm3.errors import InputError
    from openesm3.generation.all_atom_decoding import decode_all_atom
    from openesm3.generation.bundle import resolve_device
    from openesm3.generation.structure_tokens import decode_structure, tokens_from_json
    from openesm3.models.structure_decoder import StructureDecoder
    from openesm3.structure.io import SUFFIX_FORMATS
    from openesm3.utils.checks import check_batch_size
    from openesm3.utils.text import read_text_file

    check_batch_size(args.batch_size, "--batch-size")
    device = resolve_device(args.device)  # a device this machine lacks is the user's to fix, named now
    source = Path(args.tokens)
    try:
        data = json.loads(read_text_file(source))
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from None
    items = tokens_from_json(data, source=str(source))
    refuse_stdout(args.confidence, "--confidence", "detokenize writes the confidence JSON (PAE matrices) into a "
                  "file as it decodes")  # fmt: skip
    out = Path(args.out)
    to_stdout = is_stdout(args.out)  # one structure as text; the per-structure lines then go to stderr
    suffixes = [s.lower() for s in out.suffixes if s.lower() != ".gz"]
    as_file = len(items) == 1 and bool(suffixes) and suffixes[-1] in SUFFIX_FORMATS
    names_file = bool(suffixes) and suffixes[-1] in SUFFIX_FORMATS
    if len(items) > 1 and to_stdout:
        raise InputError(f"--out -: {source} holds {len(items)} structures; standard output takes one: give a "
                         "directory for --out")  # fmt: skip
    if len(items) > 1 and (names_file or (out.exists() and not out.is_dir())):
        raise InputError(f"--out {args.out}: {source} holds {len(items)} structures, one file takes one; give a "
                         "directory")  # fmt: skip
    if to_stdout:
        fmt_out = stdout_structure_format("--out", args.format)
    elif as_file:  # before the decoding, not after it
        named = SUFFIX_FORMATS[suffixes[-1]]
        if args.format is not None and args.format != named:
            raise InputError(f"--out {out} names a {named} file, but --format is {args.format}")
        check_output_file(args.out, "--out")  # as given: Path(args.out) has lost a trailing '/'
    else:
        prepare_output_dir(str(out), "--out")
    check_output_file(args.confidence, "--confidence", [args.tokens])
    all_names = unique_names([item.name or f"structure_{k + 1}" for k, item in enumerate(items)])
    # File names of every structure, before the decoder is loaded (which says which fit its context): a structure
    # that turns out too long leaves its name unused, and a bad --out costs nothing.
    all_stems = output_names(all_names)  # a name such as '../x' or 'a/b' would be written outside --out
    if not as_file and not to_stdout and items:  # written batch by batch: a stopped rerun would mix in earlier files
        suffix = args.format or "pdb"
        check_new_outputs(args, [("--out", args.out, [out / f"{stem}.{suffix}" for stem in all_stems]),
                                 ("--confidence", args.confidence, [args.confidence])])  # fmt: skip
    decoder, _ = load_vqvae_network(args.weights, "structure_decoder", device=device)
    assert isinstance(decoder, StructureDecoder)
    mismatch = _other_tokenizer(data.get("model"), args.weights)
    if mismatch:
        print(f"openesm3 detokenize: warning: {source}: {mismatch}", file=sys.stderr)
    if args.with_sequence:
        if not decoder.config.sequence_conditioning:
            raise InputError(
                "--with-sequence needs a sequence-conditioned decoder; these weights decode backbones from "
                "tokens alone (drop --with-sequence)"
            )
        missing = [f"{item.name or k + 1} chain {c.chain_id}" for k, item in enumerate(items) for c in item.chains
                   if not c.sequence]  # fmt: skip
        if missing:
            raise InputError(f"{source}: --with-sequence needs every chain's sequence; none for {', '.join(missing)}")
    untrained = decoder.untrained_heads()
    if untrained:
        print(f"openesm3 detokenize: note: {untrained_note(untrained)}; so "
              + ", ".join(_WITHHELD[h] for h in untrained), file=sys.stderr)  # fmt: skip
    failures = Failures("detokenize")
    limit = decoder.config.max_length
    for name, item in zip(all_names, items):  # named and skipped now, not the end of the batch when its turn comes
        if len(item.tokens) > limit:
            failures.add(name, f"{len(item.tokens)} tokens (with BOS/EOS) exceed the decoder context of {limit}")
    fits = [(name, stem, item) for name, stem, item in zip(all_names, all_stems, items) if len(item.tokens) <= limit]
    names = [name for name, _, _ in fits]
    stems = [stem for _, stem, _ in fits]
    items = [item for _, _, item in fits]
    with contextlib.ExitStack() as stack:
        confidence = stack.enter_context(_json_object_file(args.confidence)) if args.confidence and items else None
        bar = stack.enter_context(progress_bar(args, len(items), "detokenize", "structure"))
        for start in range(0, len(items), args.batch_size):  # each batch is written before the next is decoded
            chunk = items[start : start + args.batch_size]
            if args.with_sequence:
                decoded = decode_all_atom(chunk, decoder)
            else:
                decoded = decode_structure(chunk, decoder, batch_size=args.batch_size)
            for name, stem, result in zip(names[start:], stems[start:], decoded):
                if to_stdout:
                    target, fmt = out, fmt_out
                elif as_file:
                    target = out
                    fmt = args.format
                else:
                    fmt = args.format or "pdb"
                    target = out / f"{stem}.{fmt}"
                write_structure_text(result.structure, target, fmt)
                ptm = "not trained" if "pae" in untrained else f"{result.ptm:.4f}"
                plddt = "not trained" if "plddt" in untrained else f"{float(result.plddt.mean()):.4f}"
                print(
                    f"{name}\tpTM {ptm}\tmean pLDDT {plddt}\t-> {'standard output' if to_stdout else target}",
                    file=sys.stderr if to_stdout else sys.stdout,
                )
                if confidence is not None:
                    no_pae = "pae" in untrained
                    entry: dict[str, Any] = {
                        "ptm": None if no_pae else result.ptm,
                        "plddt": None if "plddt" in untrained else [round(float(v), 6) for v in result.plddt],
                        "pae": None if no_pae else [[round(float(v), 4) for v in row] for row in result.pae],
                    }
                    if untrained:  # why the values are null (files of trained decoders are as they were)
                        entry["untrained_heads"] = list(untrained)
                    confidence(name, entry)
            bar.update(len(chunk))
    failures.report(len(all_names), "structure(s)")
    return failures.exit_code(len(names))


# what detokenize leaves out for each untrained head
_WITHHELD = {
    "plddt": "no pLDDT (the B-factor column holds 0; null in --confidence)",
    "pae": "no pTM or PAE (null in --confidence)",
}


@contextlib.contextmanager
def _json_object_file(path: str) -> Iterator[Callable[[str, Any], None]]:
    """A JSON object written one member at a time (gzip-compressed under a ``.gz`` name), appearing complete,
    atomically, when the block ends; an error or interrupt leaves no file. Members are not held in memory: the PAE
    matrices of a batch, as Python lists, took about 100 MB per 1500-residue structure until the end."""
    import gzip  # noqa: PLC0415

    from openesm3.utils.atomic import atomic_open  # noqa: PLC0415

    with atomic_open(path, "wb") as handle:
        compressed = Path(path).suffix.lower() == ".gz"
        stream: Any = gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) if compressed else handle
        separator = "{"

        def add(name: str, value: Any) -> None:
            nonlocal separator
            stream.write(f"{separator}{json.dumps(name)}:{json.dumps(value, separators=(',', ':'))}".encode())
            separator = ","

        yield add
        stream.write(("{}" if separator == "{" else "}").encode() + b"\n")
        if compressed:
            stream.close()  # the gzip trailer; the file itself is closed by atomic_open


def _other_tokenizer(made_by: object, weights: str | None) -> str | None:
    """Why the tokens look made by another tokenizer than the decoder's, or None.

    The token file names the encoder that made it (path and SHA-256). The decoder's own encoder is the one found
    from the same ``--weights``. Same SHA-256: fine. Otherwise, when the recorded encoder is still where the file
    says, the two are compared tensor by tensor (a float16 copy of the same tokenizer agrees to float16 precision);
    when it is not, the warning says the match could not be checked. Token files without that record, and
    decoders without an encoder beside them, are not checked.
    """
    from openesm3.checkpoints.vqvae_weights import resolve_vqvae_weights, weights_identity  # noqa: PLC0415
    from openesm3.errors import WeightsError  # noqa: PLC0415

    if not isinstance(made_by, dict) or not isinstance(made_by.get("sha256"), str):
        return None
    try:
        ours = resolve_vqvae_weights(weights, "structure_encoder")
    except WeightsError:
        return None
    ours_sha = weights_identity(ours, "structure_encoder")["sha256"]
    if ours_sha == made_by["sha256"]:
        return None
    recorded = made_by.get("weights")
    theirs = None
    if isinstance(recorded, str):
        try:
            theirs = resolve_vqvae_weights(recorded, "structure_encoder")
        except WeightsError:
            theirs = None
    same: bool | None = None  # None: the recorded encoder cannot be compared (moved, changed or unreadable)
    if theirs is not None and weights_identity(theirs, "structure_encoder")["sha256"] == made_by["sha256"]:
        try:
            same = _same_encoder(theirs, ours)
        except WeightsError:
            same = None
    if same:
        return None
    if same is False:
        verdict = "a different tokenizer: its codes decode to nonsense here"
    else:
        verdict = "no longer there to compare with; if it is a different tokenizer, its codes decode to nonsense"
    return (
        f"the tokens were made by the encoder {recorded or '?'} (sha256 {made_by['sha256'][:12]}), not by the one "
        f"beside this decoder ({ours}, sha256 {ours_sha[:12]}): {verdict}; pass --weights of the tokenizer that "
        "made them"
    )


def _same_encoder(a: Path, b: Path) -> bool:
    """Whether two encoders hold the same tensors up to float16 storage (so they give the same codes)."""
    import torch  # noqa: PLC0415

    from openesm3.checkpoints.vqvae_weights import load_vqvae_network  # noqa: PLC0415

    first = load_vqvae_network(a, "structure_encoder")[0].state_dict()
    second = load_vqvae_network(b, "structure_encoder")[0].state_dict()
    return first.keys() == second.keys() and all(
        first[k].shape == second[k].shape and torch.allclose(first[k], second[k], rtol=1e-3, atol=1e-5) for k in first
    )
