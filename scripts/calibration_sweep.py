"""Choose how long to refit a confidence head, by cross-fitting on the calibration chains alone.

``openesm3 calibrate-tokenizer`` refits the heads for a fixed number of steps. On a few dozen chains a long refit
of the pairwise head overfits them (finding 14 and the v7 section of docs/tokenizer_training.md). This sweep decodes
a run's held-out calibration chains once and, for each number of steps, estimates the refitted head on new chains by
K-fold cross-fitting over whole clusters. The valid split is not touched, so a setting chosen here can still be
measured there.

    python scripts/calibration_sweep.py --run runs/tokenizer_v7_stage2b --heads pae --steps 50,200,1000 \
        --out benchmarks/results/tokenizer_v7_stage2b_calibration_sweep.json

Without the run directory, the same chains come from the ingested dataset and the run's split draw, with the
weights to calibrate given (``--weights``; default: the bundled tokenizer):

    python scripts/calibration_sweep.py --data runs/dev_chains --split calibration --calibration-fraction 0.1 \
        --weights runs/tokenizer_v7_bundle --heads pae --pair-fit ptm --steps 50 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict

import torch

from openesm3.checkpoints.vqvae_weights import load_vqvae_network
from openesm3.cli.calibrate_tokenizer import input_records, run_inputs
from openesm3.cli.common import one_line_errors
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.tokenizer.calibrate import CalibrationConfig, calibrate, decode_records
from openesm3.utils.atomic import atomic_write_text
from openesm3.utils.checks import check_seed


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a train-tokenizer run trained with data.split.calibration_fraction")
    p.add_argument("--data", help="instead of --run: an ingested dataset (with --split and --calibration-fraction)")
    p.add_argument("--split", default="calibration", help="with --data: the split (default: calibration)")
    p.add_argument("--calibration-fraction", type=float, help="with --data: the run's data.split.calibration_fraction")
    p.add_argument("--split-seed", type=int, default=0, help="with --data: the run's data.split.seed")
    p.add_argument("--weights", help="with --data: the tokenizer to calibrate (default: the bundled one)")
    p.add_argument("--heads", default="pae", help="plddt, pae, or both (comma-separated)")
    p.add_argument("--steps", default="50,200,1000", help="comma-separated numbers of refit steps to compare")
    p.add_argument(
        "--pair-fit", default="head", help="head, pae, temperature, ptm or ptm-temperature (CalibrationConfig.pair_fit)"
    )
    p.add_argument("--cross-fit", type=int, default=3, help="K folds over whole clusters (default 3)")
    p.add_argument("--with-sequence", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    heads = tuple(h.strip() for h in args.heads.split(",") if h.strip())
    if (args.run is None) == (args.data is None):
        p.error("give --run RUN, or --data DIR with --calibration-fraction")
    check_seed(args.split_seed, "--split-seed")  # else refused when the split is drawn, as the dataset's "seed"
    if args.run:
        weights, records, source = run_inputs(args.run)
    else:
        if args.calibration_fraction is None:
            p.error("--data needs --calibration-fraction (the run's data.split.calibration_fraction)")
        weights = args.weights
        with tempfile.TemporaryDirectory() as scratch:
            records, source, _ = input_records(
                [args.data], args.split, scratch, args.calibration_fraction, args.split_seed
            )
    encoder, _ = load_vqvae_network(weights, "structure_encoder")
    decoder, _ = load_vqvae_network(weights, "structure_decoder")
    if not isinstance(encoder, StructureEncoder) or not isinstance(decoder, StructureDecoder):
        raise SystemExit(f"{weights}: not a structure tokenizer")
    chains, skipped = decode_records(encoder, decoder, records, with_sequence=args.with_sequence, progress=False)
    print(f"{len(chains)} chains from {source} ({len(skipped)} left out)", flush=True)
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        config = CalibrationConfig(
            heads=heads,
            steps=steps,
            pair_fit=args.pair_fit,
            cross_fit=args.cross_fit,
            with_sequence=args.with_sequence,
        )
        start = time.perf_counter()
        report = calibrate(decoder, chains, config, progress=False).report
        cross, before, fitted = report["cross_fit"], report["before"], report["fitted"]
        row = {
            "steps": steps,
            "seconds": round(time.perf_counter() - start, 1),
            "config": asdict(config),
            "before": _brief(before),
            "cross_fit": _brief(cross),
            "fitted_in_sample": _brief(fitted),
            "ptm_r_gain": cross["ptm_r_gain"],
            "plddt_r_per_protein_gain": cross["plddt_r_per_protein_gain"],
        }
        rows.append(row)
        result = {
            "run": args.run,
            "weights": str(weights or "bundled"),
            "source": source,
            "chains": len(chains),
            "heads": list(heads),
            "rows": rows,
        }
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")  # after every row: a stopped sweep keeps it
        print(json.dumps({k: row[k] for k in ("steps", "seconds", "before", "cross_fit", "fitted_in_sample")}))
        sys.stdout.flush()
    return 0


def _brief(figures: dict) -> dict:
    plddt, ptm = figures["plddt"], figures["ptm"]
    return {
        "plddt_r_per_residue": round(plddt["r_per_residue"], 4),
        "plddt_r_per_protein": round(plddt["r_per_protein"], 4),
        "mean_plddt": round(plddt["mean_plddt"], 4),
        "mean_lddt_ca": round(plddt["mean_lddt_ca"], 4),
        "ptm_r": round(ptm["ptm_vs_tm_r"], 4),
        "mean_ptm": round(ptm["mean_ptm"], 4),
        "mean_tm": round(ptm["mean_tm"], 4),
    }


if __name__ == "__main__":
    raise SystemExit(main())
