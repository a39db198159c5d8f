"""``openesm3 tokenize-structure``: structure files -> VQ-VAE structure tokens (JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from openesm3.constants import MODEL_CONTEXT


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tokenize-structure",
        help="encode structures into ESM3 structure tokens",
        description=(
            "Read PDB/mmCIF/BinaryCIF files (optionally .gz) and encode each with the structure VQ-VAE encoder "
            "into one code (0-4095) per residue, exactly as the official SDK does (coordinates normalised, "
            "residues numbered 1..L). All chains of a file are encoded together as one complex (chains joined "
            "by CHAINBREAK 4100) unless --separate-chains. Output: JSON with, per structure, the framed token "
            "row (BOS ... EOS) and per chain its codes, residue numbers, sequence and which residues had a "
            "backbone; plus the identity (SHA-256) of the weights. A file or structure that cannot be encoded is "
            "reported by name and the others are still written (exit code 1; 2 when none could be)."
        ),
    )
    p.add_argument("files", nargs="+", metavar="IN", help="structure file(s)")
    p.add_argument("--weights", metavar="PATH", help="encoder weights: esm3_structure_encoder_v0.pth, an "
                   "OpenESM3 directory, or a directory holding either (default: $OPENESM3_WEIGHTS, else the "
                   "small tokenizer bundled with OpenESM3, docs/tokenizer_training.md)")  # fmt: skip
    p.add_argument("--out", metavar="FILE", help="write the JSON here (atomically; default, or '-': standard output)")
    p.add_argument("--chain", action="append", metavar="ID", help="only these chain ids, in this order (repeatable)")
    p.add_argument("--model", type=int, default=1, help="model number of multi-model files, 1-based (default 1)")
    p.add_argument("--separate-chains", action="store_true", help="encode every chain on its own")
    p.add_argument("--batch-size", type=int, default=8, help="structures per forward pass (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--max-length", type=int, default=MODEL_CONTEXT,
                   help=f"refuse structures longer than this many tokens with BOS/EOS (default {MODEL_CONTEXT}, the "
                        "context of the decoder and ESM3; 0 = no limit)")  # fmt: skip
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from openesm3.checkpoints.vqvae_weights import load_vqvae_network, loaded_weights_identity
    from openesm3.cli.common import (
        STDOUT,
        Failures,
        chain_ids,
        check_output_file,
        is_stdout,
        progress_bar,
        write_text,
    )
    from openesm3.errors import InputError, OpenESM3Error
    from openesm3.generation.bundle import resolve_device
    from openesm3.generation.structure_tokens import StructureTokens, encode_structure, tokens_to_json
    from openesm3.models.structure_encoder import StructureEncoder
    from openesm3.structure import ProteinComplex, load_structure
    from openesm3.structure.io import output_format, structure_name
    from openesm3.utils.checks import check_batch_size
    from openesm3.utils.provenance import hashes_weights

    check_batch_size(args.batch_size, "--batch-size")
    if args.max_length < 0:
        raise InputError(f"--max-length must be >= 0 (0: no limit), got {args.max_length}")
    wanted = chain_ids(args.chain, "--chain")
    check_output_file(args.out, "--out", args.files)  # before the work, not after it
    named = None if args.out is None or is_stdout(args.out) else output_format(args.out)
    if named is not None:  # round-trip's --out, typed here: a JSON file that no structure reader could read
        raise InputError(
            f"--out {args.out}: names a structure file ({named}), but the tokens are written as JSON; give a .json "
            "name (round-trip --out writes the decoded structure)"
        )
    device = resolve_device(args.device)  # a device this machine lacks is the user's to fix, named now
    failures = Failures("tokenize-structure")
    structures: list[Any] = []
    for path in args.files:  # a file that cannot be read is reported at the end; the others are encoded
        try:
            complex_ = load_structure(path, model=args.model, chains=wanted)
        except OpenESM3Error as exc:
            failures.add(str(path), exc)
            continue
        name = structure_name(path)
        if args.separate_chains:
            structures += [ProteinComplex((chain,), f"{name}_{chain.chain_id}") for chain in complex_.chains]
        else:
            structures.append(ProteinComplex(complex_.chains, name))
    total = len(structures) + len(failures)
    if not structures:
        failures.report(total, "structure(s)")  # one unit in both counts: a file that cannot be read is one
        return 2
    encoder, place = load_vqvae_network(args.weights, "structure_encoder", device=device)
    assert isinstance(encoder, StructureEncoder)
    # The token file names the weights as loaded, not a file that replaced them meanwhile: the open run's hash of
    # the file opened at load (in the background, overlapping the encoding), else the file hashed now, just loaded.
    identity = None if hashes_weights() else loaded_weights_identity(place, "structure_encoder")
    max_length = args.max_length or None
    tokens: list[StructureTokens] = []
    with progress_bar(args, len(structures), "tokenize", "structure") as bar:
        for start in range(0, len(structures), args.batch_size):
            chunk = structures[start : start + args.batch_size]
            try:  # codes do not depend on the batch, so a failed batch is redone one structure at a time
                tokens += encode_structure(chunk, encoder, batch_size=args.batch_size, max_length=max_length)
            except InputError:
                for structure in chunk:
                    try:
                        tokens.append(encode_structure(structure, encoder, max_length=max_length))
                    except InputError as exc:
                        failures.add(structure.name, exc)
            bar.update(len(chunk))
    if tokens:
        identity = identity or loaded_weights_identity(place, "structure_encoder")
        if identity["sha256"] is None:
            print(f"openesm3 tokenize-structure: warning: the encoder weights {place} changed while they were "
                  "loaded; the token file gives their sha256 as null (unknown)", file=sys.stderr)  # fmt: skip
        payload = tokens_to_json(tokens, model=identity)
        text = json.dumps(payload, separators=(",", ":")) + "\n"
        write_text(args.out or STDOUT, text)
    for item in tokens:
        chains = ", ".join(f"{c.chain_id}:{len(c.codes)}" for c in item.chains)
        print(f"{item.name}: chains {chains}; {len(item.tokens)} tokens", file=sys.stderr)
    failures.report(total, "structure(s)")
    return failures.exit_code(len(tokens))
