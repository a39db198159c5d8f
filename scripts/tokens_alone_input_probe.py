"""What a sequence-conditioned decoder reads beside tokens when the sequence is unknown, and what it changes.

Each chain of a split is encoded, then decoded from its tokens alone twice: with the row training uses when it
drops the sequence (``<mask>`` at the residues, the sequence track's BOS/EOS/padding at the specials; the
decoder's default since 118d1e7) and with ``<mask>`` everywhere (the default before, which ``detokenize`` and
``calibrate-tokenizer`` fed). Reports the evaluation's summary of each and the per-chain differences
(docs/tokenizer_training.md, "Decoding from tokens alone").

    python scripts/tokens_alone_input_probe.py --data runs/dev_chains [--split valid] [--weights DIR] [--out F]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import one_line_errors
from openesm3.models import structure_decoder
from openesm3.training.data import ProteinDataset
from openesm3.training.pipeline import labelled_split_positions
from openesm3.training.tokenizer import evaluate
from openesm3.utils.atomic import atomic_write_json

INPUTS = ("training_row", "mask_everywhere")


def mask_everywhere(tokens: Tensor) -> Tensor:
    """The old default: ``<mask>`` at every position of the row, BOS and EOS included."""
    return torch.full_like(tokens, C.SEQUENCE_MASK)


def figures(results: list[evaluate.ProteinResult], n_codes: int) -> dict[str, float]:
    s = evaluate.summarize(results, n_codes)
    ptm = np.array([r.ptm for r in results])
    tm = np.array([r.tm_score for r in results])
    return {
        "n": len(results),
        "backbone_rmsd_median": s.backbone_rmsd_median,
        "lddt_ca_median": s.lddt_ca_median,
        "tm_score_median": s.tm_score_median,
        "mirrored_fraction": s.mirrored_fraction,
        "ptm_mean": s.ptm_mean,
        "tm_score_mean": s.tm_score_mean,
        "ptm_abs_error_mean": float(np.abs(ptm - tm).mean()),
        "ptm_vs_tm_score_r": s.ptm_tm_pearson,
        "plddt_mean": s.plddt_mean,
        "lddt_ca_mean": s.lddt_ca_mean,
        "plddt_vs_lddt_r_per_residue": s.plddt_lddt_pearson,
        "plddt_vs_lddt_r_per_protein": s.plddt_lddt_pearson_per_protein,
    }


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="ingested chain records with a train/valid split")
    parser.add_argument("--weights", default=None, help="tokenizer directory (default: the bundled tokenizer)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--calibration-fraction", type=float, default=0.0)
    parser.add_argument("--max-records", type=int, default=0, help="0 = every chain of the split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    encoder, decoder = load_structure_tokenizer(args.weights)
    if not decoder.config.sequence_conditioning:
        parser.error("the decoder is not sequence-conditioned: it reads no sequence row")
    dataset = ProteinDataset(args.data)
    rows = labelled_split_positions(dataset, args.split, calibration_fraction=args.calibration_fraction)
    rows = rows[: args.max_records] if args.max_records else rows
    results: dict[str, list[evaluate.ProteinResult]] = {name: [] for name in INPUTS}
    start = time.perf_counter()
    for i in rows:
        record = dataset[i]
        new = evaluate.round_trip(encoder, decoder, record, with_sequence=False)
        with mock.patch.object(structure_decoder, "unknown_sequence", mask_everywhere):
            old = evaluate.round_trip(encoder, decoder, record, with_sequence=False)
        if new is None or old is None:
            continue
        results["training_row"].append(new)
        results["mask_everywhere"].append(old)
    new_rs, old_rs = results["training_row"], results["mask_everywhere"]
    rmsd_change = np.array([o.backbone_rmsd - n.backbone_rmsd for n, o in zip(new_rs, old_rs)])
    report = {
        "weights": str(args.weights or "bundled"),
        "split": args.split,
        "calibration_fraction": args.calibration_fraction,
        "seconds": round(time.perf_counter() - start, 1),
        **{name: figures(rs, encoder.config.n_codes) for name, rs in results.items()},
        "mask_everywhere_minus_training_row": {
            "backbone_rmsd_mean": float(rmsd_change.mean()),
            "backbone_rmsd_largest_abs": float(np.abs(rmsd_change).max()),
            "chains_rmsd_changed_over_0.5A": int((np.abs(rmsd_change) > 0.5).sum()),
            "ptm_mean": float(np.mean([o.ptm - n.ptm for n, o in zip(new_rs, old_rs)])),
            "plddt_mean": float(np.mean([o.mean_plddt - n.mean_plddt for n, o in zip(new_rs, old_rs)])),
        },
        "proteins": [
            {
                "name": n.name,
                "length": n.length,
                "backbone_rmsd": round(n.backbone_rmsd, 4),
                "ptm": round(n.ptm, 4),
                "mean_plddt": round(n.mean_plddt, 4),
                "mask_everywhere_backbone_rmsd": round(o.backbone_rmsd, 4),
                "mask_everywhere_ptm": round(o.ptm, 4),
                "mask_everywhere_mean_plddt": round(o.mean_plddt, 4),
            }
            for n, o in zip(new_rs, old_rs)
        ],
    }
    if args.out:
        atomic_write_json(args.out, report)
    for name in INPUTS:
        print(name, {k: round(v, 3) for k, v in report[name].items()})
    print("mask_everywhere - training_row", report["mask_everywhere_minus_training_row"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
