"""How many structure codes change when the coordinates move a little: each chain of a split is encoded clean and
with Gaussian noise of sigma A added to every coordinate; for each sigma, the fraction of changed codes and, for the
changed ones, the rank of the new code among the clean code's nearest codebook neighbours (docs/tokenizer_training.md,
finding 8: the reason for stage-2 token augmentation).

    python scripts/token_noise_sensitivity.py --data runs/dev_chains [--weights DIR] [--split valid] [--out FILE.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import one_line_errors
from openesm3.training.data import ProteinDataset
from openesm3.training.tokenizer.config import SMALL_STAGE2_DECODER
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.training.tokenizer.run import noised
from openesm3.utils.atomic import atomic_write_json


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ingested chain records with a train/valid split")
    parser.add_argument("--weights", default=None, help="tokenizer directory (default: the bundled tokenizer)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--max-records", type=int, default=40)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    encoder, _ = load_structure_tokenizer(args.weights)
    model = StructureTokenizerModel(encoder.config, SMALL_STAGE2_DECODER, stage=2).eval()
    model.encoder.load_state_dict(encoder.state_dict())
    n_codes = encoder.config.n_codes
    dataset = ProteinDataset(args.data)
    records = [dataset[i] for i, s in enumerate(dataset.splits) if s == args.split][: args.max_records]
    clean = np.concatenate(model.encode_records(records))
    codebook = model.encoder.codebook.embeddings.detach()
    rank = torch.cdist(codebook, codebook).argsort(1).argsort(1).numpy()  # rank[a, b]: b is a's rank-th neighbour
    result: dict[str, object] = {"weights": args.weights or "bundled", "split": args.split, "records": len(records)}
    for sigma in args.sigmas:
        rng = np.random.default_rng(args.seed)
        noisy = np.concatenate(model.encode_records([noised(r, sigma, rng) for r in records]))
        keep = (clean < n_codes) & (noisy < n_codes)
        a, b = clean[keep], noisy[keep]
        changed = a != b
        r = rank[a[changed], b[changed]]
        row = {
            "changed_fraction": float(changed.mean()),
            "median_neighbour_rank": float(np.median(r)) if len(r) else 0.0,
            "within_8": float(np.mean(r <= 8)) if len(r) else 1.0,
            "within_32": float(np.mean(r <= 32)) if len(r) else 1.0,
        }
        result[f"sigma_{sigma}"] = row
        print(f"sigma {sigma} A: {row['changed_fraction']:.0%} of codes change; new code: median neighbour rank "
              f"{row['median_neighbour_rank']:.0f}, {row['within_32']:.0%} within the 32 nearest")  # fmt: skip
    if args.out is not None:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
