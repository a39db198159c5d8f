"""``openesm3 round-trip``: structure -> structure tokens -> structure, with the reconstruction error printed.

By default the small tokenizer bundled with OpenESM3 is used (docs/tokenizer_training.md); it decodes all heavy
atoms when given the sequence. With ``--weights`` any encoder/decoder the other tokenizer commands accept.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "round-trip",
        help="encode a structure into structure tokens, decode it back and print the RMSD",
        description=(
            "Encode one chain of a PDB/mmCIF file (or several, or all, as one complex) into structure tokens, "
            "decode the tokens back into coordinates and compare with the input as the tokenizer evaluation does: "
            "backbone RMSD (N, CA, C after superposition), lDDT-CA, TM-score, the decoder's own pTM and mean "
            "pLDDT ('not trained' for heads that the weights record as never trained, as a stage-1 export's) and, "
            "for a sequence-conditioned decoder such as the bundled one, the all-atom RMSD and chi1."
        ),
    )
    p.add_argument("file", metavar="IN", help="structure file (PDB/mmCIF/BinaryCIF, optionally .gz)")
    p.add_argument("--chain", metavar="ID", action="append",
                   help="chain id (default: the first chain); repeat it to round-trip those chains as one complex, "
                        "in this order")  # fmt: skip
    p.add_argument("--all-chains", action="store_true", help="every protein chain of the file, as one complex")
    p.add_argument("--weights", metavar="PATH", help="encoder/decoder weights (default: $OPENESM3_WEIGHTS, else "
                   "the bundled tokenizer)")  # fmt: skip
    p.add_argument("--out", metavar="FILE",
                   help="also write the decoded structure (.pdb, .cif or .bcif, optionally .gz; '-': PDB on stdout, "
                        "the report then on stderr)")  # fmt: skip
    p.add_argument("--no-sequence", action="store_true", help="decode from the tokens alone (backbone only)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR
    from openesm3.checkpoints.vqvae_weights import load_vqvae_network
    from openesm3.cli.common import chain_ids, check_output_file, is_stdout, untrained_note, write_structure_text
    from openesm3.errors import InputError
    from openesm3.generation.all_atom_decoding import decode_all_atom
    from openesm3.generation.structure_tokens import decode_structure, encode_structure
    from openesm3.models.structure_decoder import StructureDecoder
    from openesm3.models.structure_encoder import StructureEncoder
    from openesm3.structure.io import load_chain, load_structure, output_format
    from openesm3.training.tokenizer.evaluate import round_trip, structure_to_record

    if args.all_chains and args.chain:
        raise InputError("give --chain or --all-chains, not both")
    chain_ids(args.chain, "--chain")  # a chain given twice is refused here
    check_output_file(args.out, "--out", [args.file])  # before the work, not after it
    to_stdout = is_stdout(args.out)  # the decoded structure as PDB (or --format) text; the report then on stderr
    say = functools.partial(print, file=sys.stderr if to_stdout else sys.stdout)
    fmt = "pdb" if to_stdout else output_format(args.out or "")
    if args.out and fmt is None:
        raise InputError(f"--out {args.out}: the suffix names no structure format; use .pdb, .cif or .bcif "
                         "(optionally + .gz)")  # fmt: skip
    if args.all_chains or (args.chain and len(args.chain) > 1):
        structure: Any = load_structure(args.file, chains=args.chain)
        if len(structure.chains) == 1:
            structure = structure.chains[0]
    else:
        structure = load_chain(args.file, chain_id=args.chain[0] if args.chain else None)
    encoder, enc_place = load_vqvae_network(args.weights, "structure_encoder")
    decoder, _ = load_vqvae_network(args.weights, "structure_decoder")
    assert isinstance(encoder, StructureEncoder) and isinstance(decoder, StructureDecoder)
    tokens = encode_structure(structure, encoder)  # raises, naming the chain, when it cannot be encoded
    all_atom = decoder.config.sequence_conditioning and not args.no_sequence
    # The figures are the tokenizer evaluation's own (benchmarks/eval_tokenizer.py), so they can be compared.
    result = round_trip(encoder, decoder, structure_to_record(structure), with_sequence=all_atom)
    if result is None:  # pragma: no cover - encode_structure refuses such structures first
        raise InputError(f"{args.file}: too few residues with N, CA and C")
    codes = [code for chain in tokens.chains for code in chain.codes.tolist()]
    ids = ", ".join(chain.chain_id for chain in tokens.chains)
    say(f"{structure.name or args.file} chain{'s' * (len(tokens.chains) > 1)} {ids}: {len(codes)} residues -> "
          f"{len(tokens.tokens)} tokens ({len(set(codes))} distinct codes) -> structure")  # fmt: skip
    say(f"weights: {enc_place.parent if enc_place.name == 'structure_encoder' else enc_place}")
    say(f"backbone RMSD {result.backbone_rmsd:.2f} A (N, CA, C after superposition)  lDDT-CA {result.lddt_ca:.3f}  "
          f"TM-score {result.tm_score:.3f}")  # fmt: skip
    if result.mirror_rmsd < result.backbone_rmsd:
        say(f"  (the decoded fold fits the input better as its mirror image: RMSD {result.mirror_rmsd:.2f} A; "
              "lDDT cannot tell a fold from its mirror image, RMSD and TM-score can)")  # fmt: skip
    untrained = decoder.untrained_heads()
    ptm = "not trained" if "pae" in untrained else f"{result.ptm:.3f}"
    plddt = "not trained" if "plddt" in untrained else f"{result.mean_plddt:.3f}"
    say(f"decoder confidence: pTM {ptm}  mean pLDDT {plddt}")
    if untrained:
        zeros = "; the decoded file holds B-factors 0" if args.out and "plddt" in untrained else ""
        say(f"  ({untrained_note(untrained)}{zeros})")
    elif enc_place.parent == BUNDLED_TOKENIZER_DIR:
        say("  (the bundled decoder's pLDDT and pTM were calibrated on structures it was not trained on: on such "
              "structures they are right on average but rank them only roughly, pTM with TM-score at r 0.43: "
              "docs/tokenizer_training.md)")  # fmt: skip
    if all_atom and result.all_atom_rmsd is not None:
        chi1 = result.chi_errors.get(1, np.zeros(0))
        within = ""
        if len(chi1):
            within = f"  chi1 within 40 deg: {100 * float(np.mean(chi1 < 40)):.0f}% of {len(chi1)} residues"
        say(f"all-atom RMSD {result.all_atom_rmsd:.2f} A over the heavy atoms (sequence given){within}")
    elif all_atom:  # a backbone-only file (e.g. N, CA, C, O): nothing beyond the backbone to compare
        say("all-atom RMSD not measured: the input has no side-chain atoms (the decoded file has them)")
    if args.out:
        decoded = decode_all_atom(tokens, decoder)[0] if all_atom else decode_structure(tokens, decoder)
        written = decoded.structure if len(decoded.structure.chains) > 1 else decoded.structure.chains[0]
        assert fmt is not None  # a name without a structure suffix was refused up front
        write_structure_text(written, args.out, fmt, mmcif="round-trip prints PDB only; give --out FILE.cif")
        say(f"decoded structure written to {'standard output' if to_stdout else args.out}")
    return 0
