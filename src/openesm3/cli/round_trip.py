"""``openesm3 round-trip``: structure -> structure tokens -> structure, with the reconstruction error printed.

By default the small tokenizer bundled with OpenESM3 is used (docs/tokenizer_training.md); it decodes all heavy
atoms when given the sequence. With ``--weights`` any encoder/decoder the other tokenizer commands accept.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "round-trip",
        help="encode a structure into structure tokens, decode it back and print the RMSD",
        description=(
            "Encode one chain of a PDB/mmCIF file into structure tokens, decode the tokens back into coordinates "
            "and compare with the input: backbone RMSD (N, CA, C after superposition), lDDT-CA, TM-score, the "
            "decoder's own pTM and mean pLDDT and, for a sequence-conditioned decoder such as the bundled one, "
            "the all-atom RMSD."
        ),
    )
    p.add_argument("file", metavar="IN", help="structure file (PDB/mmCIF/BinaryCIF, optionally .gz)")
    p.add_argument("--chain", metavar="ID", help="chain id (default: the first chain)")
    p.add_argument("--weights", metavar="PATH", help="encoder/decoder weights (default: $OPENESM3_WEIGHTS, else "
                   "the bundled tokenizer)")  # fmt: skip
    p.add_argument("--out", metavar="FILE", help="also write the decoded structure (.pdb or .cif)")
    p.add_argument("--no-sequence", action="store_true", help="decode from the tokens alone (backbone only)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR
    from openesm3.checkpoints.vqvae_weights import load_vqvae_network
    from openesm3.generation.all_atom_decoding import decode_all_atom
    from openesm3.generation.structure_tokens import decode_structure, encode_structure
    from openesm3.geometry.alignment import kabsch
    from openesm3.geometry.lddt import lddt
    from openesm3.geometry.metrics import tm_score
    from openesm3.models.structure_decoder import StructureDecoder
    from openesm3.models.structure_encoder import StructureEncoder
    from openesm3.structure import residue_constants as RC
    from openesm3.structure.io import load_chain

    chain = load_chain(args.file, chain_id=args.chain)
    encoder, enc_place = load_vqvae_network(args.weights, "structure_encoder")
    decoder, _ = load_vqvae_network(args.weights, "structure_decoder")
    assert isinstance(encoder, StructureEncoder) and isinstance(decoder, StructureDecoder)
    tokens = encode_structure(chain, encoder)
    all_atom = decoder.config.sequence_conditioning and not args.no_sequence
    decoded = decode_all_atom(tokens, decoder)[0] if all_atom else decode_structure(tokens, decoder)
    model = decoded.structure.chains[0]

    true37 = torch.from_numpy(np.asarray(chain.atom37, dtype=np.float32))
    pred37 = torch.from_numpy(np.asarray(model.atom37, dtype=np.float32))
    present = torch.from_numpy(np.asarray(chain.atom37_mask)) & torch.isfinite(pred37).all(-1)
    backbone = present[:, :3].all(-1)
    true_bb, pred_bb = true37[backbone][:, :3].reshape(-1, 3), pred37[backbone][:, :3].reshape(-1, 3)
    rmsd = float(kabsch(pred_bb, true_bb).rmsd)
    ca = backbone
    ld = float(lddt(pred37[:, 1], torch.nan_to_num(true37[:, 1]), ca).score)
    tm = float(tm_score(pred37[ca][:, 1], true37[ca][:, 1]).score)
    codes = tokens.chains[0].codes
    print(f"{chain.name or args.file} chain {chain.chain_id}: {len(codes)} residues -> {len(tokens.tokens)} tokens "
          f"({len(set(codes.tolist()))} distinct codes) -> structure")  # fmt: skip
    print(f"weights: {enc_place.parent if enc_place.name == 'structure_encoder' else enc_place}")
    print(f"backbone RMSD {rmsd:.2f} A (N, CA, C after superposition)  lDDT-CA {ld:.3f}  TM-score {tm:.3f}")
    print(f"decoder confidence: pTM {decoded.ptm:.3f}  mean pLDDT {float(decoded.plddt.mean()):.3f}")
    if enc_place.parent == BUNDLED_TOKENIZER_DIR:
        print("  (the bundled decoder's pLDDT and pTM were calibrated on structures it was not trained on: on such "
              "structures they are right on average but rank them only roughly, pTM with TM-score at r 0.43: "
              "docs/tokenizer_training.md)")  # fmt: skip
    if all_atom:
        atoms = present & torch.from_numpy(np.asarray(model.atom37_mask))
        side_chain = atoms.clone()
        side_chain[:, [RC.ATOM37_ORDER[name] for name in ("N", "CA", "C", "O", "OXT")]] = False
        if side_chain.any():
            aa = float(kabsch(pred37[atoms], true37[atoms]).rmsd)
            print(f"all-atom RMSD {aa:.2f} A over {int(atoms.sum())} heavy atoms (sequence given)")
        else:  # a backbone-only file (e.g. N, CA, C, O): nothing beyond the backbone to compare
            print("all-atom RMSD not measured: the input has no side-chain atoms (the decoded file has them)")
    if args.out:
        model.write(args.out)
        print(f"decoded structure written to {args.out}")
    return 0
