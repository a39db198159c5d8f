"""From a :class:`DataConfig` to train/validation loaders of protein batches for this process.

Steps: open the shard dataset, split it (:mod:`openesm3.training.splits`), weight the training records
(inverse cluster size by default, so e.g. the 46 T4-lysozyme files of cluster ``107l`` in the dev set count
as one cluster), and build length-bucketed samplers over cropped lengths whose batches split evenly over
processes and gradient-accumulation micro-batches. A record's sampling weight is its cluster weight times
the weight given at ingestion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openesm3.training.config import ConfigError, DataConfig, SplitConfig, TrainConfig
from openesm3.training.data import CroppedRecords, ProteinBatch, ProteinDataset, ProteinRecord, collate_proteins
from openesm3.training.loader import StepLoader
from openesm3.training.sampler import LengthBucketSampler
from openesm3.training.splits import (
    CALIBRATION_LABELS,
    TRAIN_LABELS,
    VALID_LABELS,
    calibration_by_cluster,
    calibration_by_column,
    greedy_identity_clusters,
    kept_clusters,
    sampling_weights,
    train_by_column,
    valid_by_cluster,
    valid_by_column,
)

ProteinLoader = StepLoader[ProteinRecord, ProteinBatch]


@dataclass(frozen=True)
class ProteinData:
    train: ProteinLoader
    valid: ProteinLoader | None
    train_set: ProteinDataset
    valid_set: ProteinDataset | None


def cluster_labels(dataset: ProteinDataset, data: DataConfig) -> list[str]:
    """The cluster of every record: from ingestion, or from greedy identity clustering (split.method=identity).
    Records ingestion gave none share one by identical sequence (:attr:`ProteinDataset.clusters`) unless
    ``split.identical_sequences`` is false: then each is its own, named after itself (as before that setting)."""
    if data.split.method == "identity":
        sequences = [dataset.sequence(i) for i in range(len(dataset))]
        ids = greedy_identity_clusters(sequences, data.split.identity_threshold)
        return [f"identity{c}" for c in ids]
    if not data.split.identical_sequences:
        return [e["cluster"] or e["name"] for e in dataset.entries]
    return dataset.clusters


def split_masks(dataset: ProteinDataset, data: DataConfig) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(cluster of every record, and boolean [N] masks of the training, validation and calibration records)."""
    clusters = cluster_labels(dataset, data)
    method = data.split.method
    is_train = np.ones(len(dataset), dtype=bool)
    is_calibration = np.zeros(len(dataset), dtype=bool)
    if method == "none":
        is_valid = np.zeros(len(dataset), dtype=bool)
    elif method == "column":
        if not any(dataset.splits):
            raise ConfigError(
                f"data.split.method=column but {dataset.root} has no split labels (ingest with a manifest split "
                "column, or use split.method=cluster/identity)"
            )
        is_valid = valid_by_column(dataset.splits)
        is_calibration = calibration_by_column(dataset.splits)
        is_train = train_by_column(dataset.splits)
    else:
        is_valid = valid_by_cluster(clusters, data.split.valid_fraction, data.split.seed)
    if data.split.calibration_fraction > 0:
        is_calibration |= calibration_by_cluster(clusters, data.split.calibration_fraction, data.split.seed)
    is_calibration &= ~is_valid
    is_train &= ~is_valid & ~is_calibration
    if data.split.train_fraction < 1:
        is_train &= kept_clusters(clusters, data.split.train_fraction, data.split.seed)
    return clusters, is_train, is_valid, is_calibration


SPLIT_NAMES = ("train", "valid", "calibration", "all")


def split_positions(dataset: ProteinDataset, data: DataConfig, split: str) -> np.ndarray:
    """Positions of the records of ``split`` as a run with ``data`` draws them: ``train`` (the chains it fits on),
    ``valid``, ``calibration`` (held out of both) or ``all``. Label synonyms (``validation``, ``calib``...) work."""
    name = split.strip().lower()
    if name == "all":
        return np.arange(len(dataset))
    _, is_train, is_valid, is_calibration = split_masks(dataset, data)
    if name in TRAIN_LABELS - {""}:
        return np.flatnonzero(is_train)
    if name in VALID_LABELS:
        return np.flatnonzero(is_valid)
    if name in CALIBRATION_LABELS:
        return np.flatnonzero(is_calibration)
    raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLIT_NAMES)}")


def labelled_split_positions(
    dataset: ProteinDataset, split: str, *, calibration_fraction: float = 0.0, seed: int = 0
) -> list[int]:
    """:func:`split_positions` for a run that split by the ingestion labels (``method="column"``, as the tokenizer
    runs do) with this ``data.split.calibration_fraction`` and ``seed``: what evaluation and calibration re-draw."""
    split_config = SplitConfig(method="column", calibration_fraction=calibration_fraction, seed=seed)
    return [int(i) for i in split_positions(dataset, DataConfig(split=split_config), split)]


def split_dataset(dataset: ProteinDataset, data: DataConfig) -> tuple[ProteinDataset, ProteinDataset | None, list[str]]:
    """(train, valid or None, cluster label of every training record)."""
    clusters, is_train, is_valid, _ = split_masks(dataset, data)
    train_pos = np.flatnonzero(is_train)
    valid_pos = np.flatnonzero(is_valid)
    if len(train_pos) == 0:
        fraction = f" with train_fraction={data.split.train_fraction}" if data.split.train_fraction < 1 else ""
        raise ConfigError(f"the {data.split.method!r} split of {dataset.root}{fraction} leaves no training records")
    valid = dataset.subset(valid_pos) if len(valid_pos) else None
    return dataset.subset(train_pos), valid, [clusters[i] for i in train_pos]


def calibration_dataset(dataset: ProteinDataset, data: DataConfig) -> ProteinDataset | None:
    """The records a run with ``data`` holds out for calibration (None when it holds none out)."""
    _, _, _, is_calibration = split_masks(dataset, data)
    positions = np.flatnonzero(is_calibration)
    return dataset.subset(positions) if len(positions) else None


def build_protein_data(
    config: TrainConfig, *, rank: int = 0, world_size: int = 1, dataset: ProteinDataset | None = None
) -> ProteinData:
    """Train and validation loaders for process ``rank`` of ``world_size`` (``dataset`` defaults to data.path)."""
    data = config.data
    if dataset is None:
        if not data.path:
            raise ConfigError("data.path is not set: give the directory of an ingested dataset")
        dataset = ProteinDataset(data.path)
    train_set, valid_set, train_clusters = split_dataset(dataset, data)
    weights = sampling_weights(train_clusters, data.weighting) * train_set.weights
    fetch_train = CroppedRecords(train_set, data.crop_length, data.complex_crop, data.interface_distance)
    sampler = LengthBucketSampler(
        np.minimum(train_set.lengths, data.crop_length),
        batch_size=data.batch_size,
        max_tokens=data.max_tokens,
        boundaries=data.bucket_boundaries,
        weights=weights,
        multiple_of=world_size * config.grad_accum,
        seed=config.seed,
        epoch_size=data.epoch_size,
        shuffle=True,
    )
    train = StepLoader(
        sampler,
        fetch_train,
        collate_proteins,
        rank=rank,
        world_size=world_size,
        grad_accum=config.grad_accum,
        num_workers=data.num_workers,
    )
    valid = None
    if valid_set is not None:
        valid_sampler = LengthBucketSampler(
            np.minimum(valid_set.lengths, data.crop_length),
            batch_size=data.valid_batch_size or data.batch_size,
            max_tokens=data.max_tokens,
            boundaries=data.bucket_boundaries,
            multiple_of=world_size,
            seed=config.seed,
            shuffle=False,
        )
        fetch_valid = CroppedRecords(valid_set, data.crop_length, data.complex_crop, data.interface_distance)
        valid = StepLoader(
            valid_sampler, fetch_valid, collate_proteins, rank=rank, world_size=world_size, num_workers=0
        )
    return ProteinData(train=train, valid=valid, train_set=train_set, valid_set=valid_set)
