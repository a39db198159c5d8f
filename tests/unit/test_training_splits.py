"""Train/validation/calibration splits by cluster or label, and greedy sequence-identity clustering."""

from __future__ import annotations

import numpy as np
import pytest

from openesm3.training.config import ConfigError, TrainConfig, apply_overrides
from openesm3.training.data import ProteinDataset, write_dataset
from openesm3.training.pipeline import (
    build_protein_data,
    calibration_dataset,
    labelled_split_positions,
    split_dataset,
    split_positions,
)
from openesm3.training.splits import (
    calibration_by_cluster,
    greedy_identity_clusters,
    kept_clusters,
    sampling_weights,
    sequence_identity,
    valid_by_cluster,
    valid_by_column,
)
from tests.training_fixtures import synthetic_records

AA = "ACDEFGHIKLMNPQRSTVWY"


def _random(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list(AA), n))


def _mutate(rng: np.random.Generator, seq: str, fraction: float) -> str:
    out = list(seq)
    for i in rng.choice(len(seq), int(round(fraction * len(seq))), replace=False):
        out[i] = AA[(AA.index(out[i]) + 1 + int(rng.integers(19))) % 20]
    return "".join(out)


def test_sequence_identity() -> None:
    rng = np.random.default_rng(0)
    a = _random(rng, 120)
    assert sequence_identity(a, a) == 1.0
    assert sequence_identity(a, a[10:90]) == 1.0  # identity over the shorter sequence
    assert sequence_identity(a, _mutate(rng, a, 0.3)) == pytest.approx(0.7, abs=0.02)
    assert sequence_identity(a, _random(rng, 120)) < 0.3


def test_greedy_identity_clusters() -> None:
    rng = np.random.default_rng(1)
    families = [_random(rng, int(rng.integers(60, 200))) for _ in range(6)]
    seqs, truth = [], []
    for f, parent in enumerate(families):
        for _ in range(f % 3 + 1):
            seqs.append(_mutate(rng, parent, 0.4))  # 60 % identical to the parent, ~36 % to each other
            truth.append(f)
    seqs.append(families[0][5:50])  # a fragment joins its family
    truth.append(0)
    labels = greedy_identity_clusters(seqs, 0.3)
    # same family <=> same cluster
    for i in range(len(seqs)):
        for j in range(len(seqs)):
            assert (labels[i] == labels[j]) == (truth[i] == truth[j]), (i, j)
    strict = greedy_identity_clusters(seqs, 0.9)  # negative: at 90 % the mutants stay apart
    assert len(set(strict)) > len(set(labels))
    assert greedy_identity_clusters(["AC", "AC", "W"], 0.5) == [0, 0, 1]  # short sequences too
    # exactly at the threshold joins (>=): 5 of 10 identical
    assert sequence_identity("ACDEFGHIKL", "ACDEFWWWWW") == 0.5
    assert greedy_identity_clusters(["ACDEFGHIKL", "ACDEFWWWWW"], 0.5) == [0, 0]


def test_cluster_split_is_stable_and_whole_clusters_move() -> None:
    clusters = [f"c{i // 3}" for i in range(3000)]
    valid = valid_by_cluster(clusters, 0.1, seed=0)
    assert valid.mean() == pytest.approx(0.1, abs=0.02)
    for c in range(1000):
        assert len(set(valid[3 * c : 3 * c + 3])) == 1
    assert np.array_equal(valid_by_cluster(clusters[:300], 0.1, seed=0), valid[:300])  # adding data moves nothing
    assert not np.array_equal(valid_by_cluster(clusters, 0.1, seed=1), valid)
    assert valid_by_column(["train", "valid", "Validation", "test", ""]).tolist() == [False, True, True, False, False]
    assert sampling_weights(["a", "a", "b"], "inverse_cluster_size").tolist() == [0.5, 0.5, 1.0]
    assert sampling_weights(["a", "a", "b"], "none").tolist() == [1.0, 1.0, 1.0]


def _labelled_dataset(root, labels: list[str]) -> ProteinDataset:
    """A dataset of synthetic records with the given ingestion split labels."""
    records = synthetic_records(len(labels))
    for r, label in zip(records, labels, strict=True):
        object.__setattr__(r, "split", label)
    write_dataset(records, root)
    return ProteinDataset(root)


def test_split_methods_on_a_dataset(tmp_path) -> None:
    ds = _labelled_dataset(tmp_path, ["valid" if i % 10 == 0 else "train" for i in range(30)])
    cfg = TrainConfig()
    by_column = lambda method: split_dataset(ds, apply_overrides(cfg, [f"data.split.method={method}"]).data)  # noqa: E731
    train, valid, _ = by_column("column")
    assert valid is not None and [e["name"] for e in valid.entries] == ["rec000", "rec010", "rec020"]
    assert len(train) == 27
    train, valid, clusters = split_dataset(ds, apply_overrides(cfg, ["data.split.valid_fraction=0.3"]).data)
    assert valid is not None and len(train) + len(valid) == 30
    assert not set(clusters) & set(valid.clusters)  # no cluster on both sides
    _, other, _ = split_dataset(ds, apply_overrides(cfg, ["data.split.valid_fraction=0.3", "data.split.seed=1"]).data)
    assert other is not None and set(other.clusters) != set(valid.clusters)  # split.seed draws another split
    train, valid, clusters = by_column("identity")
    assert all(c.startswith("identity") for c in clusters)
    train, valid, _ = by_column("none")
    assert valid is None and len(train) == 30
    no_labels = tmp_path / "plain"
    write_dataset(synthetic_records(4), no_labels)
    with pytest.raises(ConfigError, match="has no split labels"):
        split_dataset(ProteinDataset(no_labels), apply_overrides(cfg, ["data.split.method=column"]).data)
    with pytest.raises(ConfigError, match="data.path is not set"):
        build_protein_data(cfg)
    overrides = ["data.split.valid_fraction=0.3", "data.crop_length=30", "data.batch_size=4", "data.valid_batch_size=2"]
    data = build_protein_data(apply_overrides(cfg, overrides), dataset=ds)
    assert data.train.sampler.lengths.max() == 30 < ds.lengths.max()  # bucketed by cropped length
    assert data.valid is not None and data.valid.sampler.batch_size == 2


def test_train_fraction_keeps_nested_whole_clusters(tmp_path) -> None:
    clusters = [f"c{i // 3}" for i in range(3000)]
    half, quarter = kept_clusters(clusters, 0.5), kept_clusters(clusters, 0.25)
    assert half.mean() == pytest.approx(0.5, abs=0.05) and quarter.mean() == pytest.approx(0.25, abs=0.05)
    assert not (quarter & ~half).any()  # nested: a smaller fraction keeps a subset of a larger one
    for c in range(1000):
        assert len(set(half[3 * c : 3 * c + 3])) == 1
    assert not np.array_equal(half, valid_by_cluster(clusters, 0.5))  # independent of the validation draw

    records = synthetic_records(40)
    for i, r in enumerate(records):
        object.__setattr__(r, "split", "valid" if i % 10 == 0 else "train")
    write_dataset(records, tmp_path)
    ds = ProteinDataset(tmp_path)
    split = lambda *o: split_dataset(ds, apply_overrides(TrainConfig(), ["data.split.method=column", *o]).data)  # noqa: E731
    full_train, full_valid, full_clusters = split()
    train, valid, kept = split("data.split.train_fraction=0.5")
    assert valid is not None and full_valid is not None and valid.entries == full_valid.entries  # valid unchanged
    assert 0 < len(train) < len(full_train) and set(kept) < set(full_clusters)
    names = {e["name"] for e in train.entries}
    assert names < {e["name"] for e in full_train.entries}
    with pytest.raises(ConfigError, match="train_fraction must lie in"):
        apply_overrides(TrainConfig(), ["data.split.train_fraction=0"])


def test_record_weights_scale_sampling(tmp_path) -> None:
    records = synthetic_records(12)
    object.__setattr__(records[3], "weight", 0.0)  # never drawn
    object.__setattr__(records[5], "weight", 50.0)  # drawn far more often than its cluster alone implies
    write_dataset(records, tmp_path)
    cfg = apply_overrides(TrainConfig(), ["data.split.method=none", "data.batch_size=4", "data.epoch_size=400"])
    data = build_protein_data(cfg, dataset=ProteinDataset(tmp_path))
    drawn = [int(i) for b in data.train.sampler.epoch_batches(0) for i in b[:, 0]]
    counts = np.bincount(drawn, minlength=12)
    assert counts[3] == 0 and counts[5] > 0.5 * len(drawn)


def test_calibration_clusters_are_held_out_of_training_and_validation(tmp_path) -> None:
    clusters = [f"c{i // 2}" for i in range(4000)]
    held = calibration_by_cluster(clusters, 0.1)
    assert held.mean() == pytest.approx(0.1, abs=0.02)
    assert all(held[2 * c] == held[2 * c + 1] for c in range(2000))  # whole clusters
    assert not np.array_equal(held, valid_by_cluster(clusters, 0.1))  # another draw than validation's

    labels = ["valid" if i % 10 == 0 else "calibration" if i % 10 == 1 else "test" if i % 10 == 2 else "train"
              for i in range(60)]  # fmt: skip
    ds = _labelled_dataset(tmp_path, labels)
    cfg = lambda *o: apply_overrides(TrainConfig(), list(o)).data  # noqa: E731
    # column: labelled calibration records and unknown labels (test) are not trained on
    train, valid, _ = split_dataset(ds, cfg("data.split.method=column"))
    held_ds = calibration_dataset(ds, cfg("data.split.method=column"))
    names = lambda d: {e["name"] for e in d.entries}  # noqa: E731
    assert valid is not None and held_ds is not None
    assert names(held_ds) == {f"rec{i:03d}" for i in range(1, 60, 10)}
    assert names(train) == {f"rec{i:03d}" for i in range(60) if i % 10 > 2}
    # cluster method with a calibration fraction: three disjoint sets
    data = cfg("data.split.valid_fraction=0.2", "data.split.calibration_fraction=0.3")
    train, valid, _ = split_dataset(ds, data)
    held_ds = calibration_dataset(ds, data)
    assert valid is not None and held_ds is not None and len(held_ds) > 0
    assert not names(train) & names(held_ds) and not names(valid) & names(held_ds)
    assert len(train) + len(valid) + len(held_ds) == 60
    assert not set(held_ds.clusters) & (set(train.clusters) | set(valid.clusters))
    assert calibration_dataset(ds, cfg()) is None
    with pytest.raises(ConfigError, match="calibration_fraction must lie in"):
        cfg("data.split.calibration_fraction=1")


def test_split_positions_name_the_records_a_run_trains_validates_and_calibrates_on(tmp_path) -> None:
    ds = _labelled_dataset(tmp_path, ["valid" if i % 4 == 0 else "train" for i in range(40)])
    cfg = lambda *o: apply_overrides(TrainConfig(), ["data.split.method=column", *o]).data  # noqa: E731
    plain = cfg()
    assert list(split_positions(ds, plain, "valid")) == list(range(0, 40, 4))
    assert list(split_positions(ds, plain, "Validation")) == list(range(0, 40, 4))  # label synonyms
    assert list(split_positions(ds, plain, "train")) == [i for i in range(40) if i % 4]
    assert len(split_positions(ds, plain, "calibration")) == 0
    assert list(split_positions(ds, plain, "all")) == list(range(40))
    # with a calibration fraction, the held-out clusters leave train (and only train) and form calibration
    held = cfg("data.split.calibration_fraction=0.4")
    train, calib = set(split_positions(ds, held, "train")), set(split_positions(ds, held, "calib"))
    assert calib and not train & calib
    assert train | calib == set(split_positions(ds, plain, "train"))
    assert list(split_positions(ds, held, "valid")) == list(range(0, 40, 4))
    held_ds = calibration_dataset(ds, held)  # the chains calibrate-tokenizer --run refits on
    assert held_ds is not None and {e["name"] for e in held_ds.entries} == {ds.entries[i]["name"] for i in calib}
    for unknown in ("test", " "):  # a blank name is no split (unlabelled records train, but "" names nothing)
        with pytest.raises(ConfigError, match=f"unknown split {unknown!r}"):
            split_positions(ds, plain, unknown)
    # the re-draw evaluation and calibration use: the same chains from the fraction and seed alone
    assert labelled_split_positions(ds, "calib", calibration_fraction=0.4) == sorted(calib)
    seeded = cfg("data.split.calibration_fraction=0.4", "data.split.seed=3")
    assert labelled_split_positions(ds, "train", calibration_fraction=0.4, seed=3) == list(
        split_positions(ds, seeded, "train")
    )


def test_identical_sequences_false_keeps_each_unlabelled_record_its_own_cluster(tmp_path) -> None:
    """A run started before identical unlabelled sequences shared a cluster drew its split and weights with each such
    record its own cluster; data.split.identical_sequences=false draws them so again (to resume such a run)."""
    from openesm3.training.pipeline import cluster_labels  # noqa: PLC0415

    records = synthetic_records(6)
    for i, r in enumerate(records):
        object.__setattr__(r, "cluster", "")
        if i in (3, 5):  # copies of record 1
            for field in ("sequence", "atom37", "atom37_mask", "residue_index", "chain_index", "chain_ids"):
                object.__setattr__(r, field, getattr(records[1], field))
    write_dataset(records, tmp_path, shard_size=4)
    ds = ProteinDataset(tmp_path)
    names = [e["name"] for e in ds.entries]
    grouped = [n if i not in (3, 5) else names[1] for i, n in enumerate(names)]
    assert ds.clusters == grouped
    assert cluster_labels(ds, apply_overrides(TrainConfig(), []).data) == grouped
    old = apply_overrides(TrainConfig(), ["data.split.identical_sequences=false"]).data
    assert cluster_labels(ds, old) == names
    cfg = apply_overrides(TrainConfig(), ["data.split.method=none", "data.split.identical_sequences=false"])
    train_clusters = split_dataset(ds, cfg.data)[2]  # the clusters the sampling weights are drawn from, as before
    assert train_clusters == names and np.allclose(sampling_weights(train_clusters, "inverse_cluster_size"), 1)
