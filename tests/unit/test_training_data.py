"""Protein records, shard datasets (safetensors + JSON index), cropping and collation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.training.cropping import ATOM37_CA, contiguous_crop, crop_record, interface_residues, spatial_crop
from openesm3.training.data import (
    CroppedRecords,
    DatasetError,
    ProteinDataset,
    ProteinRecord,
    ShardWriter,
    collate_proteins,
    sequence_to_ids,
    write_dataset,
)
from openesm3.training.sampler import SampleRef
from tests.training_fixtures import synthetic_record, synthetic_records


def _same(a: ProteinRecord, b: ProteinRecord) -> None:
    assert a.name == b.name and a.sequence == b.sequence and a.chain_ids == b.chain_ids
    assert (a.source, a.cluster, a.split, a.weight) == (b.source, b.cluster, b.split, b.weight)
    np.testing.assert_array_equal(a.atom37, b.atom37)  # NaN == NaN here
    for name in ("atom37_mask", "residue_index", "chain_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_shards_round_trip(tmp_path) -> None:
    records = synthetic_records(11)
    object.__setattr__(records[9], "weight", 2.5)
    object.__setattr__(records[10], "cluster", "")  # no cluster label from ingestion
    write_dataset(records, tmp_path, shard_size=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"] + [
        f"shard_0000{i}.safetensors" for i in range(3)
    ]
    ds = ProteinDataset(tmp_path)
    assert len(ds) == 11 and ds.lengths.tolist() == [r.length for r in records]
    for i in (0, 4, 9, 10):
        _same(ds[i], records[i])
    assert np.isnan(ds[0].atom37[~ds[0].atom37_mask]).all()
    entry = json.loads((tmp_path / "index.json").read_text())["records"][4]
    assert entry["chain_ids"] == ["A", "B"] and sum(entry["chain_lengths"]) == entry["length"] == records[4].length
    sub = ds.subset([10, 4])
    assert len(sub) == 2 and sub.lengths.tolist() == [records[10].length, records[4].length]
    _same(sub[1], records[4])
    _same(sub.subset([1])[0], records[4])  # a subset of a subset indexes the subset
    assert ds.clusters[0] == "c0" and ds.clusters[30 % 11] == records[30 % 11].cluster
    assert ds.clusters[10] == records[10].name  # unlabelled: a cluster of its own, not one cluster of all such


def test_rewriting_a_dataset_replaces_it(tmp_path) -> None:
    write_dataset(synthetic_records(9), tmp_path, shard_size=3)
    writer = ShardWriter(tmp_path, shard_size=3)  # a new ingestion into the same directory ...
    for record in synthetic_records(4, seed=1):
        writer.add(record)  # ... interrupted before close(): no index, so no mix of old and new
    with pytest.raises(DatasetError, match="no dataset index"):
        ProteinDataset(tmp_path)
    write_dataset(synthetic_records(4, seed=1), tmp_path, shard_size=3)
    assert len(ProteinDataset(tmp_path)) == 4 and len(list(tmp_path.glob("shard_*"))) == 2


def test_dataset_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(DatasetError, match="index.json: no dataset index"):
        ProteinDataset(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(DatasetError, match="not an openesm3-protein-shards v1 index"):
        ProteinDataset(tmp_path)
    (tmp_path / "index.json").write_text("[]")  # was an internal error: 'list' object has no attribute 'get'
    with pytest.raises(DatasetError, match=r"index.json: not an openesm3-protein-shards index \(a JSON list"):
        ProteinDataset(tmp_path)
    (tmp_path / "index.json").write_bytes(b"\xff{}")  # not UTF-8: was a bare UnicodeDecodeError
    with pytest.raises(DatasetError, match=r"index.json: unreadable dataset index \('utf-8' codec can't decode"):
        ProteinDataset(tmp_path)
    record = synthetic_records(1)[0]
    with pytest.raises(InputError, match="record 'rec000': atom37 has shape"):
        ProteinRecord(**{**record.__dict__, "atom37": record.atom37[:-1]})
    with pytest.raises(InputError, match="record 'rec000': weight must be finite and >= 0"):
        ProteinRecord(**{**record.__dict__, "weight": -1.0})
    with pytest.raises(InputError, match="chain_index out of range"):
        ProteinRecord(**{**record.__dict__, "chain_ids": ()})


def test_sequence_ids_use_the_official_vocabulary() -> None:
    ids = sequence_to_ids("LAC|X*")
    assert ids.tolist() == [
        C.SEQUENCE_VOCAB.index("L"),
        C.SEQUENCE_VOCAB.index("A"),
        C.SEQUENCE_VOCAB.index("C"),
        C.SEQUENCE_CHAINBREAK,
        C.SEQUENCE_VOCAB.index("X"),
        C.SEQUENCE_UNK,
    ]


def test_collate_pads_and_masks() -> None:
    records = synthetic_records(3)
    batch = collate_proteins(records)
    n = max(r.length for r in records)
    assert batch.atom37.shape == (3, n, 37, 3) and batch.atom37.dtype == torch.float32
    assert batch.sequence_tokens.shape == (3, n) and batch.sequence_tokens.dtype == torch.int64
    assert torch.isfinite(batch.atom37).all()  # NaN never reaches a loss
    lying = synthetic_record(np.random.default_rng(0), "lying", (20,))
    object.__setattr__(lying, "atom37_mask", np.ones_like(lying.atom37_mask))  # marks NaN atoms present
    padded = collate_proteins([lying])
    assert torch.isfinite(padded.atom37).all()
    assert torch.equal(padded.atom37_mask[0], torch.from_numpy(np.isfinite(lying.atom37).all(-1)))
    assert batch.n_tokens == sum(r.length for r in records) == int(batch.mask.sum())
    short = int(np.argmin([r.length for r in records]))
    length = records[short].length
    assert (batch.sequence_tokens[short, length:] == C.SEQUENCE_PAD).all()
    assert (batch.chain_index[short, length:] == -1).all() and not batch.atom37_mask[short, length:].any()
    present = torch.from_numpy(records[short].atom37_mask)
    assert torch.equal(batch.atom37_mask[short, :length], present)
    assert torch.equal(batch.atom37[short, :length][present], torch.from_numpy(records[short].atom37)[present])
    moved = batch.to("cpu")
    assert moved.n_tokens == batch.n_tokens and moved.names == batch.names


def test_contiguous_crop() -> None:
    starts = set()
    for seed in range(30):
        idx = contiguous_crop(100, 40, np.random.default_rng(seed))
        assert len(idx) == 40 and (np.diff(idx) == 1).all() and 0 <= idx[0] <= 60
        starts.add(int(idx[0]))
    assert len(starts) > 10
    ends = {int(contiguous_crop(10, 8, np.random.default_rng(seed))[0]) for seed in range(50)}
    assert ends == {0, 1, 2}  # every window, the last one included
    assert contiguous_crop(30, 40, np.random.default_rng(0)).tolist() == list(range(30))


def test_spatial_crop_keeps_the_nearest_residues_around_an_interface() -> None:
    rng = np.random.default_rng(0)
    record = synthetic_record(rng, "cplx", (60, 50))
    ca = record.atom37[:, ATOM37_CA]
    interface = interface_residues(ca, record.chain_index, 8.0)
    assert interface[record.chain_index == 0].any() and interface[record.chain_index == 1].any()
    far = interface_residues(ca + np.where(record.chain_index[:, None] == 1, 1000.0, 0.0), record.chain_index, 8.0)
    assert not far.any()  # negative: separated chains have no interface
    pair = np.array([[0.0, 0.0, 0.0], [7.5, 0.0, 0.0], [0.0, 8.5, 0.0]])  # C-alphas 7.5 and 8.5 A from chain 0
    assert interface_residues(pair, np.array([0, 1, 2]), 8.0).tolist() == [True, True, False]
    for seed in range(5):
        keep = spatial_crop(ca, record.chain_index, 32, np.random.default_rng(seed), 8.0)
        assert len(keep) == 32 and (np.diff(keep) > 0).all()
        assert len(np.unique(record.chain_index[keep])) == 2  # an interface crop spans both chains
        valid = np.isfinite(ca).all(1)
        # every kept residue is at least as close to some kept interface centre as any dropped residue is
        centres = [i for i in keep if interface[i]]
        assert centres
        d = lambda i, j: np.linalg.norm(ca[i] - ca[j])  # noqa: E731
        dropped = [j for j in range(len(ca)) if j not in set(keep) and valid[j]]
        assert any(max(d(c, k) for k in keep) <= min(d(c, j) for j in dropped) + 1e-4 for c in centres)
    cropped = crop_record(record, 32, np.random.default_rng(1))
    again = crop_record(record, 32, np.random.default_rng(1))
    assert cropped.length == 32 and cropped.sequence == again.sequence
    np.testing.assert_array_equal(cropped.residue_index, again.residue_index)
    contiguous = crop_record(record, 32, np.random.default_rng(1), mode="contiguous")
    assert contiguous.length == 32 and contiguous.sequence in record.sequence  # a window of the concatenation
    single = synthetic_record(rng, "one", (70,))
    assert crop_record(single, 100, np.random.default_rng(0)) is single
    for seed in range(5):  # a single chain gets a contiguous window even in spatial mode
        window = crop_record(single, 30, np.random.default_rng(seed))
        assert window.sequence in single.sequence and (np.diff(window.residue_index) == 1).all()


def test_cropped_records_depend_only_on_the_ref(tmp_path) -> None:
    write_dataset(synthetic_records(6, max_length=120), tmp_path)
    fetch = CroppedRecords(ProteinDataset(tmp_path), crop_length=20)
    long = int(np.argmax(ProteinDataset(tmp_path).lengths))
    a, b, c = fetch(SampleRef(long, 7)), fetch(SampleRef(long, 7)), fetch(SampleRef(long, 8))
    assert a.length == 20 and a.sequence == b.sequence
    assert not np.array_equal(a.residue_index, c.residue_index) or a.sequence != c.sequence
    ds = ProteinDataset(tmp_path)
    complex_ = 4  # every 5th synthetic record is a two-chain complex
    assert ds[complex_].n_chains == 2 and ds[complex_].length > 20
    windows = CroppedRecords(ds, crop_length=20, mode="contiguous")
    assert all(windows(SampleRef(complex_, seed)).sequence in ds[complex_].sequence for seed in range(5))


def test_structure_tokens_attach_crop_and_collate(tmp_path) -> None:
    rng = np.random.default_rng(0)
    records = [synthetic_record(rng, f"r{i}", (20 + 5 * i,)) for i in range(3)]
    write_dataset(records, tmp_path)
    dataset = ProteinDataset(tmp_path)
    assert dataset[0].structure_tokens is None and collate_proteins([dataset[0]]).structure_tokens is None
    tokens = [np.arange(n) + 100 * i for i, n in enumerate(dataset.lengths)]
    tokenized = dataset.with_structure_tokens(tokens)
    sub = tokenized.subset([2, 0])  # subsets keep them
    np.testing.assert_array_equal(sub[0].structure_tokens, tokens[2])
    cropped = sub[0].select(np.arange(4, 12))
    np.testing.assert_array_equal(cropped.structure_tokens, tokens[2][4:12])
    batch = collate_proteins([cropped, sub[1]])
    assert batch.structure_tokens is not None and batch.structure_tokens.shape == (2, 20)
    assert batch.structure_tokens[0, :8].tolist() == list(tokens[2][4:12])
    assert (batch.structure_tokens[0, 8:] == C.STRUCTURE_PAD).all()
    with pytest.raises(ValueError, match="structure tokens"):
        dataset.with_structure_tokens([np.arange(3)] * len(dataset))
    with pytest.raises(InputError, match="structure_tokens"):
        ProteinRecord(
            name="x", sequence="AA", atom37=np.zeros((2, 37, 3), np.float32), atom37_mask=np.zeros((2, 37), bool),
            residue_index=np.arange(2), chain_index=np.zeros(2, np.int32), structure_tokens=np.arange(3),
        )  # fmt: skip


def test_structure_token_renditions_crop_and_collate(tmp_path) -> None:
    """Records may carry K renditions of their tokens ([L, K]); crops keep all K, batches are [B, L, K]."""
    rng = np.random.default_rng(1)
    write_dataset([synthetic_record(rng, f"r{i}", (15 + 5 * i,)) for i in range(2)], tmp_path)
    dataset = ProteinDataset(tmp_path)
    tokens = [np.stack([np.arange(n) + 1000 * k for k in range(3)], axis=-1) for n in dataset.lengths]
    tokenized = dataset.with_structure_tokens(tokens)
    cropped = tokenized[1].select(np.arange(2, 9))
    np.testing.assert_array_equal(cropped.structure_tokens, tokens[1][2:9])
    batch = collate_proteins([cropped, tokenized[0]])
    assert batch.structure_tokens is not None and batch.structure_tokens.shape == (2, 15, 3)
    assert batch.structure_tokens[0, :7, 2].tolist() == list(range(2002, 2009))
    assert (batch.structure_tokens[0, 7:] == C.STRUCTURE_PAD).all()
    single = dataset.with_structure_tokens([t[:, 0] for t in tokens])
    with pytest.raises(ValueError, match="rendition counts"):
        collate_proteins([tokenized[0], single[1]])
    with pytest.raises(InputError, match="structure_tokens"):
        ProteinRecord(
            name="x", sequence="AA", atom37=np.zeros((2, 37, 3), np.float32), atom37_mask=np.zeros((2, 37), bool),
            residue_index=np.arange(2), chain_index=np.zeros(2, np.int32), structure_tokens=np.zeros((2, 2, 2)),
        )  # fmt: skip
