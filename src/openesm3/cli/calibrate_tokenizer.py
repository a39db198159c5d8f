"""``openesm3 calibrate-tokenizer``: refit a tokenizer decoder's pLDDT and PAE/pTM heads on held-out chains.

A decoder's confidence heads learn its errors on its own training chains and overstate on new ones; refitting them on
chains the decoder has not seen calibrates them (docs/tokenizer_training.md, finding 14). The chains come from
structure files, an ingested dataset (``--split`` picks its records by label), or a ``train-tokenizer`` run trained
with ``data.split.calibration_fraction`` (``--run``: its export and the chains it held out). The output is a new
tokenizer directory (``--weights`` takes it) with a ``calibration.json`` report: the heads' figures before, their
cross-fitted estimate on new chains, and in-sample.

Examples::

    openesm3 calibrate-tokenizer held_out/*.pdb --out my_tokenizer_calibrated
    openesm3 calibrate-tokenizer --run runs/tokenizer_stage2 --out runs/tokenizer_stage2/calibrated
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "calibrate-tokenizer",
        help="refit a structure decoder's confidence heads (pLDDT, PAE/pTM) on held-out chains",
        description=(
            "Decode held-out chains once with a structure tokenizer (frozen), refit the decoder's pLDDT and "
            "PAE/pTM heads on the decodings' own errors, and write a new tokenizer directory whose confidences are "
            "calibrated on chains like these. The decoded coordinates do not change. Use chains the decoder was "
            "not trained on: refitting on training chains changes nothing."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="structure files or directories of them (PDB/mmCIF, optionally .gz; every chain is used), text files "
        "listing structure files (one path per line), or one ingested dataset directory (given alone); an input "
        "that cannot be read (a missing or unreadable file, a directory without structure files) is named and left out",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="new tokenizer directory (must not exist or be empty)")
    p.add_argument(
        "--run",
        metavar="DIR",
        help="a train-tokenizer run trained with data.split.calibration_fraction (or calibration labels): its "
        "export and the chains it held out (instead of INPUT and --weights)",
    )
    p.add_argument("--weights", metavar="PATH", help="tokenizer to calibrate (default: $OPENESM3_WEIGHTS, else the "
                   "bundled tokenizer)")  # fmt: skip
    p.add_argument("--split", metavar="LABEL", help="with an ingested dataset: only the records of this split label")
    p.add_argument(
        "--calibration-fraction",
        type=float,
        metavar="F",
        help="with an ingested dataset: --split train, valid or calibration picks the chains a train-tokenizer run "
        "with data.split.calibration_fraction=F draws (e.g. 0.1 and calibration: the 68 dev chains the bundled "
        "tokenizer held out) instead of matching labels",
    )
    p.add_argument("--split-seed", type=int, default=0, help="with --calibration-fraction: the run's data.split.seed")
    p.add_argument("--heads", default="plddt,pae", help="heads to refit: plddt, pae or both (default: both)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps per head and fit (default: 1000)")
    p.add_argument(
        "--pair-fit",
        choices=("head", "pae", "temperature", "ptm", "ptm-temperature"),
        default="head",
        help="what of the pairwise head to refit: every weight (head, the default), only its PAE outputs (pae), "
        "one scale of its PAE logits (temperature: keeps its ranking; for few chains), or a scale of its PAE logits "
        "fitted so that each chain's pTM matches its TM-score (ptm: 2 parameters; calibrates pTM in the mean; "
        "ptm-temperature: 1 parameter)",
    )
    p.add_argument(
        "--cross-fit",
        type=int,
        default=2,
        metavar="K",
        help="estimate the refitted heads on new chains by K-fold cross-fitting over clusters (default: 2; 0: none)",
    )
    p.add_argument(
        "--with-sequence",
        action="store_true",
        help="decode with the chains' sequences (sequence-conditioned decoders; default: from tokens alone)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the fits (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from openesm3.checkpoints.vqvae_weights import load_vqvae_network
    from openesm3.cli.common import check_output_dir as check_output_place
    from openesm3.cli.common import refuse_stdout, set_threads
    from openesm3.errors import InputError
    from openesm3.models.structure_decoder import StructureDecoder
    from openesm3.models.structure_encoder import StructureEncoder
    from openesm3.training.tokenizer.calibrate import (
        REPORT_FILE,
        CalibrationConfig,
        calibrate,
        check_output_dir,
        decode_records,
        summary_lines,
        write_calibrated,
    )
    from openesm3.utils.checks import check_seed

    refuse_stdout(args.out, "--out", "calibrate-tokenizer writes a tokenizer directory")
    check_seed(args.seed, "--seed")
    check_seed(args.split_seed, "--split-seed")  # else refused by SplitConfig as "seed", blaming the dataset
    check_output_dir(args.out)  # before any work, not after the fits
    check_output_place(args.out, "--out")  # nor a file on its way, nor a read-only place
    set_threads(args.threads)
    config = CalibrationConfig(
        heads=tuple(h.strip() for h in args.heads.split(",") if h.strip()),
        steps=args.steps,
        pair_fit=args.pair_fit,
        cross_fit=args.cross_fit,
        with_sequence=args.with_sequence,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="openesm3-calibrate-") as scratch:
        unread: list[str] = []  # input files that could not be read, named and left out as the others go on
        if args.run:
            if args.inputs or args.weights or args.split:
                raise InputError("--run gives the weights and the chains: leave out INPUT, --weights and --split")
            weights, records, source = run_inputs(args.run)
        else:
            if not args.inputs:
                raise InputError("give the held-out chains: structure files, an ingested dataset, or --run DIR")
            weights = args.weights
            records, source, unread = input_records(
                args.inputs, args.split, scratch, args.calibration_fraction, args.split_seed, progress=not args.quiet
            )
        encoder, place = load_vqvae_network(weights, "structure_encoder")
        decoder, _ = load_vqvae_network(weights, "structure_decoder")
        if not isinstance(encoder, StructureEncoder) or not isinstance(decoder, StructureDecoder):
            raise InputError(f"{place}: not a structure tokenizer")
        print(f"calibrating {place.parent if place.name == 'structure_encoder' else place} on {source}", flush=True)
        chains, skipped = decode_records(
            encoder, decoder, records, with_sequence=config.with_sequence, progress=not args.quiet
        )
        for s in skipped:
            print(f"  left out {s['name']}: {s['problem']}", file=sys.stderr)
        result = calibrate(decoder, chains, config, progress=not args.quiet)
    report = dict(result.report, weights=str(place), source=source, skipped=skipped)
    out = write_calibrated(encoder, result.decoder, args.out, report)
    print(f"{len(chains)} chains in {len(set(report['clusters']))} clusters")
    for line in summary_lines(report):
        print(line)
    print(f"calibrated tokenizer written to {out} (report: {out / REPORT_FILE}); use it with --weights {out}")
    if unread:  # as tokenize-structure: the others were used, but not every input
        print(f"openesm3 calibrate-tokenizer: {len(unread)} input(s) could not be read and were left out (named "
              "above)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def input_records(
    inputs: list[str],
    split: str | None,
    scratch: str,
    calibration_fraction: float | None = None,
    split_seed: int = 0,
    *,
    progress: bool = True,
) -> tuple[list, str, list[str]]:
    """``(records, source, unread)``: the records of an ingested dataset (one directory with an index) or of
    structure files ingested to ``scratch``, and the inputs that could not be read (each named on stderr and left
    out; none for a dataset). With ``calibration_fraction``, ``split`` is drawn as a training run draws it
    (``split_positions``)."""
    from pathlib import Path

    from openesm3.errors import InputError
    from openesm3.training.config import IngestConfig
    from openesm3.training.data import INDEX_FILE, ProteinDataset
    from openesm3.training.ingest import ingest_structures

    if len(inputs) == 1 and (Path(inputs[0]) / INDEX_FILE).is_file():
        dataset = ProteinDataset(inputs[0])
        positions: list[int] = list(range(len(dataset)))
        if calibration_fraction is not None:
            from openesm3.training.config import ConfigError
            from openesm3.training.pipeline import labelled_split_positions

            if split is None:
                raise InputError("--calibration-fraction draws a split: give --split calibration (or train, valid)")
            try:
                positions = labelled_split_positions(
                    dataset, split, calibration_fraction=calibration_fraction, seed=split_seed
                )
            except ConfigError as exc:
                raise InputError(f"{inputs[0]}: {exc}") from None
            if not positions:
                raise InputError(
                    f"{inputs[0]}: split {split!r} with calibration_fraction={calibration_fraction} is empty"
                )
            source = f"{inputs[0]} (split {split}, calibration_fraction {calibration_fraction}, seed {split_seed})"
            return [dataset[i] for i in positions], source, []
        if split is not None:
            from openesm3.training.splits import CALIBRATION_LABELS, TRAIN_LABELS, VALID_LABELS

            wanted = split.strip().lower()
            # the synonyms train-tokenizer treats alike (``--split calibration`` finds records labelled ``cal``)
            wanted_set = next((g for g in (CALIBRATION_LABELS, VALID_LABELS, TRAIN_LABELS) if wanted in g), {wanted})
            positions = [i for i, s in enumerate(dataset.splits) if s.strip().lower() in wanted_set]
            if not positions:
                labels = sorted(set(dataset.splits)) or ["(none)"]
                raise InputError(f"{inputs[0]}: no records with split {split!r} (labels: {', '.join(labels)})")
        return [dataset[i] for i in positions], f"{inputs[0]}" + (f" (split {split})" if split else ""), []
    datasets = [i for i in inputs if (Path(i) / INDEX_FILE).is_file()]
    if datasets:  # else searched for structure files, found to hold none and left out, the others calibrated alone
        raise InputError(
            f"{datasets[0]}: an ingested dataset is given alone (its records are the chains), not with other inputs"
        )
    if split is not None or calibration_fraction is not None:
        raise InputError(
            "--split and --calibration-fraction select records of an ingested dataset; structure files have no splits"
        )
    # a missing input, given or in a list file, is named and left out as an empty or unreadable file is
    # (tokenize-structure does the same); named once however often it was given, as a file given twice is read once
    # min_length=1: every chain with a C-alpha reaches decode_records, which names those too short to calibrate on
    # (ingestion's default of 10 left out chains of 1-9 residues without a word, 8 and 9 usable ones included)
    report = ingest_structures(inputs, scratch, IngestConfig(min_length=1), progress=progress, skip_missing=True)
    unread = [f"{s['source']}: {s['problem']}" for s in report.skipped]
    for problem in unread:
        print(f"  could not read {problem}", file=sys.stderr)
    if report.n_records == 0:
        raise InputError(f"no readable protein chains in {', '.join(inputs)}")
    dataset = ProteinDataset(scratch)
    return [dataset[i] for i in range(len(dataset))], f"{report.n_files} structure files", unread


def run_inputs(run_dir: str) -> tuple[str, list, str]:
    """(export directory, held-out records, description) of a train-tokenizer run."""
    import dataclasses
    import json
    from pathlib import Path

    from openesm3.errors import InputError
    from openesm3.training.checkpointing import STATE_FILE
    from openesm3.training.config import config_from_dict
    from openesm3.training.data import ProteinDataset
    from openesm3.training.pipeline import calibration_dataset
    from openesm3.training.tokenizer.config import TokenizerTrainConfig
    from openesm3.training.tokenizer.export import ENCODER_DIR, resolve_checkpoint

    checkpoint = resolve_checkpoint(run_dir)
    saved = json.loads((checkpoint / STATE_FILE).read_text())["config"]
    config = config_from_dict(TokenizerTrainConfig, saved)
    if "identical_sequences" not in (saved.get("data") or {}).get("split", {}):  # a run from before the setting:
        # its records without a cluster label were each their own cluster; the chains it held out are drawn so
        split = dataclasses.replace(config.data.split, identical_sequences=False)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, split=split))
    export = Path(run_dir) / "export"
    if not (export / ENCODER_DIR).is_dir():
        raise InputError(
            f"{run_dir}: no export/ (a run exports when it finishes; for a stopped run: openesm3 train-tokenizer "
            f"--export-only --config ... out_dir={run_dir})"
        )
    held = calibration_dataset(ProteinDataset(config.data.path), config.data)
    if held is None:
        raise InputError(
            f"{run_dir}: the run held out no chains for calibration (train with data.split.calibration_fraction=0.1, "
            "or label records calibration at ingestion with data.split.method=column), or give held-out chains as INPUT"
        )
    return str(export), [held[i] for i in range(len(held))], f"the {len(held)} chains {run_dir} held out"
