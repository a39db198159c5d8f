"""How much a tokenizer's codes say about the local backbone: per-code circular means of phi and psi fitted on the
train split, scored on the valid split (mean / median absolute error in degrees; lower is more informative).

A decoder can only rebuild local geometry as precisely as the codes describe it, so this separates the encoder's
share of the reconstruction error from the decoder's (docs/tokenizer_training.md).

    python scripts/code_informativeness.py --data runs/dev_chains [--weights DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import one_line_errors
from openesm3.generation.structure_tokens import encode_structure
from openesm3.structure.sidechain_geometry import backbone_phi_psi
from openesm3.training.data import ProteinDataset
from openesm3.training.tokenizer.evaluate import record_to_chain
from openesm3.utils.atomic import atomic_write_json


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ingested chain records with a train/valid split")
    parser.add_argument("--weights", default=None, help="tokenizer directory (default: the bundled tokenizer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    encoder, _ = load_structure_tokenizer(args.weights)
    n_codes = encoder.config.n_codes
    dataset = ProteinDataset(args.data)
    angles: dict[str, list[np.ndarray]] = {"train": [], "valid": []}
    codes: dict[str, list[np.ndarray]] = {"train": [], "valid": []}
    for i, split in enumerate(dataset.splits):
        record = dataset[i]
        if split not in angles or record.n_chains != 1:
            continue
        with torch.no_grad():
            encoded = encode_structure(record_to_chain(record), encoder, max_length=None)
        chain_codes = encoded.chains[0].codes
        valid = encoded.chains[0].residue_mask & (chain_codes < n_codes)
        atoms = np.nan_to_num(record.atom37[:, :3])
        phi, psi = backbone_phi_psi(atoms, record.atom37_mask[:, :3].all(-1))
        keep = valid & np.isfinite(phi) & np.isfinite(psi)
        angles[split].append(np.stack([phi[keep], psi[keep]], axis=-1))
        codes[split].append(chain_codes[keep])
    train_a, train_c = np.concatenate(angles["train"]), np.concatenate(codes["train"])
    valid_a, valid_c = np.concatenate(angles["valid"]), np.concatenate(codes["valid"])
    result: dict[str, object] = {"weights": args.weights or "bundled", "n_codes": n_codes,
                                 "train_residues": len(train_c), "valid_residues": len(valid_c)}  # fmt: skip
    for k, name in enumerate(("phi", "psi")):
        s = np.bincount(train_c, weights=np.sin(train_a[:, k]), minlength=n_codes)
        c = np.bincount(train_c, weights=np.cos(train_a[:, k]), minlength=n_codes)
        mean = np.arctan2(s, c)
        err = np.degrees(np.abs(np.angle(np.exp(1j * (valid_a[:, k] - mean[valid_c])))))
        overall = np.arctan2(np.sin(train_a[:, k]).sum(), np.cos(train_a[:, k]).sum())
        base = np.degrees(np.abs(np.angle(np.exp(1j * (valid_a[:, k] - overall)))))
        result[name] = {"mae": float(err.mean()), "median": float(np.median(err)), "no_code_mae": float(base.mean())}
        print(f"{name}: MAE {err.mean():.1f} deg, median {np.median(err):.1f} deg (one mean for all codes: "
              f"{base.mean():.1f} deg)")  # fmt: skip
    if args.out is not None:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
