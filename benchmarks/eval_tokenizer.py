"""Evaluate a structure tokenizer's round trip (structure -> tokens -> structure) on a split of the dev set.

Reports median/mean backbone RMSD after Kabsch, lDDT-CA, TM-score, the fraction of mirror-image decodings, codebook
usage, pLDDT/pTM calibration and, for a sequence-conditioned decoder, all-atom RMSD and chi errors
(``openesm3.training.tokenizer.evaluate``).

    python benchmarks/eval_tokenizer.py --weights src/openesm3/data/tokenizer --data runs/dev_chains \\
        --split valid --out benchmarks/results/tokenizer_valid.json

``--weights`` is a directory with ``structure_encoder/`` and ``structure_decoder/`` in our format (a run's
``export/``; default: the shipped tokenizer). ``--data`` is an ingested shard dataset (``openesm3.training.ingest``)
or the raw dev directory (then ingested to a temporary directory). Full-length chains, no crops. The figures of
confidence heads that the decoder's weights record as never trained (a stage-1 export's pLDDT and PAE/pTM heads)
are printed as ``not trained`` and written as ``null``, with ``"untrained_heads"`` in the report.

``--split`` takes the split as a training run draws it from the ingestion labels: ``train``, ``valid``,
``calibration`` or ``all``. For a run trained with ``data.split.calibration_fraction`` (v7: 0.1), give the same
``--calibration-fraction`` so that ``train`` is the chains its decoder was fitted on and ``calibration`` the ones
it held out:

    python benchmarks/eval_tokenizer.py --data runs/dev_chains --split train --calibration-fraction 0.1 \\
        --threads 1 --out benchmarks/results/tokenizer_v7_train_split.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import untrained_note
from openesm3.errors import InputError, OpenESM3Error
from openesm3.training.config import ConfigError, IngestConfig
from openesm3.training.data import INDEX_FILE, ProteinDataset
from openesm3.training.ingest import ingest_structures
from openesm3.training.pipeline import SPLIT_NAMES, labelled_split_positions
from openesm3.training.tokenizer.evaluate import round_trip, summarize
from openesm3.utils.atomic import atomic_write_text


def open_dataset(data: Path, tmp: Path) -> ProteinDataset:
    if (data / INDEX_FILE).is_file():
        return ProteinDataset(data)
    manifest = data / "manifest.tsv"
    ingest_structures(data, tmp / "shards", IngestConfig(manifest=str(manifest) if manifest.is_file() else ""))
    return ProteinDataset(tmp / "shards")


def main(argv: list[str] | None = None) -> int:
    try:
        return evaluate(sys.argv[1:] if argv is None else argv)
    except (OpenESM3Error, OSError) as exc:  # a bad --weights or --data: one line, as the openesm3 commands say it
        print(f"eval_tokenizer.py: error: {exc}", file=sys.stderr)
        return 2


def evaluate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        type=Path,
        help="structure_encoder/ + structure_decoder/ directory (default: the bundled tokenizer)",
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dev"))
    parser.add_argument("--split", default="valid", help=f"one of {', '.join(SPLIT_NAMES)} (default: valid)")
    parser.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.0,
        help="the data.split.calibration_fraction the evaluated run was trained with (its held-out clusters leave "
        "--split train and form --split calibration)",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="the run's data.split.seed (default: 0)")
    parser.add_argument("--max-proteins", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.max_proteins < 0:
        parser.error(f"--max-proteins must be >= 0 (0: all), got {args.max_proteins}")
    torch.set_num_threads(args.threads)
    encoder, decoder = load_structure_tokenizer(args.weights)
    untrained = decoder.untrained_heads()  # heads of random weights (a stage-1 export): their figures are withheld
    if untrained:
        print(f"eval_tokenizer.py: note: {untrained_note(untrained)}; their figures are null", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = open_dataset(args.data, Path(tmp))
        try:
            rows = labelled_split_positions(
                dataset, args.split, calibration_fraction=args.calibration_fraction, seed=args.split_seed
            )
        except ConfigError as exc:
            parser.error(f"--split: {exc}")
        if not rows:
            fraction = f" with --calibration-fraction {args.calibration_fraction}" if args.calibration_fraction else ""
            raise InputError(f"{args.data}: split {args.split!r}{fraction} holds no records")
        if args.max_proteins:
            rows = rows[: args.max_proteins]
        start = time.perf_counter()
        results, without_seq = [], []
        for n, i in enumerate(rows):
            record = dataset[i]
            r = round_trip(encoder, decoder, record)
            if r is None:
                continue
            results.append(r)
            if decoder.config.sequence_conditioning:
                r0 = round_trip(encoder, decoder, record, with_sequence=False)
                if r0 is not None:
                    without_seq.append(r0)
            plddt = "not trained" if "plddt" in untrained else f"{r.mean_plddt:.3f}"
            ptm = "not trained" if "pae" in untrained else f"{r.ptm:.3f}"
            print(
                f"[{n + 1}/{len(rows)}] {r.name} L={r.length} RMSD {r.backbone_rmsd:.2f} lDDT-CA {r.lddt_ca:.3f} "
                f"TM {r.tm_score:.3f} pLDDT {plddt} pTM {ptm}"
                + (f" all-atom RMSD {r.all_atom_rmsd:.2f}" if r.all_atom_rmsd is not None else ""),
                file=sys.stderr,
            )
        elapsed = time.perf_counter() - start
    if not results:
        raise InputError(f"{args.data}: no record of split {args.split!r} could be round-tripped (too short?)")
    n_codes = encoder.config.n_codes
    summary = _withhold(dataclasses.asdict(summarize(results, n_codes)), untrained)
    report = {
        "weights": str(args.weights or "bundled"),
        "split": args.split,
        "calibration_fraction": args.calibration_fraction,
        "seconds": round(elapsed, 1),
        "threads": args.threads,
        "summary": summary,
        "summary_without_sequence": (
            _withhold(dataclasses.asdict(summarize(without_seq, n_codes)), untrained) if without_seq else None
        ),
        "proteins": [
            {
                "name": r.name,
                "length": r.length,
                "backbone_rmsd": round(r.backbone_rmsd, 4),
                "mirror_rmsd": round(r.mirror_rmsd, 4),
                "lddt_ca": round(r.lddt_ca, 4),
                "tm_score": round(r.tm_score, 4),
                "ptm": None if "pae" in untrained else round(r.ptm, 4),
                "mean_plddt": None if "plddt" in untrained else round(r.mean_plddt, 4),
                "all_atom_rmsd": None if r.all_atom_rmsd is None else round(r.all_atom_rmsd, 4),
            }
            for r in results
        ],
    }
    if untrained:  # why those figures are null (reports of trained decoders are as they were)
        report["untrained_heads"] = list(untrained)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + "\n")
    print(json.dumps({"summary": summary, "summary_without_sequence": report["summary_without_sequence"]}, indent=2))
    return 0


# the summary's figures read from each confidence head
_HEAD_FIGURES = {
    "plddt": ("plddt_lddt_pearson", "plddt_lddt_pearson_per_protein", "plddt_mean"),
    "pae": ("ptm_tm_pearson", "ptm_mean"),
}


def _withhold(summary: dict[str, Any], untrained: tuple[str, ...]) -> dict[str, Any]:
    """``summary`` with the figures of ``untrained`` heads null: those of random weights measure nothing."""
    return {k: None if any(k in _HEAD_FIGURES[h] for h in untrained) else v for k, v in summary.items()}


if __name__ == "__main__":
    raise SystemExit(main())
