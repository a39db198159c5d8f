"""Ingestion of real PDB files from ../shared/data/dev with the real reader, then a few training steps on them."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from openesm3.training.config import IngestConfig, TrainConfig, apply_overrides
from openesm3.training.data import ProteinDataset
from openesm3.training.ingest import ingest_structures
from openesm3.training.logging import read_metrics
from openesm3.training.loop import seed_everything, train
from openesm3.training.pipeline import build_protein_data
from tests.conftest import shared_data
from tests.training_fixtures import TinyModel, tiny_loss

FILES = ("1a2p", "1a62", "1a8u", "1aho", "1ab9", "1agj")  # single chains, homo-oligomers, a 4-chain complex


@pytest.fixture(scope="module")
def dev_subset(tmp_path_factory):  # noqa: ANN201
    dev = shared_data("dev")
    rows = {r["pdb_id"]: r for r in csv.DictReader(open(dev / "manifest.tsv"), delimiter="\t")}  # noqa: PTH123
    root = tmp_path_factory.mktemp("dev")
    (root / "top240").mkdir()
    kept = []
    for pdb in FILES:
        shutil.copy(dev / rows[pdb]["file"], root / rows[pdb]["file"])
        kept.append(rows[pdb])
    header = list(kept[0])
    lines = ["\t".join(header)] + ["\t".join(r[h] for h in header) for r in kept]
    (root / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return root, {r["pdb_id"]: r for r in kept}


def _chains(row: dict[str, str]) -> dict[str, int]:
    return {c.split(":")[0]: int(c.split(":")[1]) for c in row["chains"].split(";")}


def test_ingest_real_files_as_chains(dev_subset, tmp_path) -> None:
    root, rows = dev_subset
    report = ingest_structures(root, tmp_path / "ds", IngestConfig(manifest=str(root / "manifest.tsv")), progress=False)
    assert report.n_files == len(FILES) and not report.skipped
    ds = ProteinDataset(tmp_path / "ds")
    by_name = {e["name"]: i for i, e in enumerate(ds.entries)}
    for pdb, row in rows.items():
        primary = ds[by_name[f"{pdb}_{row['primary_chain']}"]]
        assert primary.sequence == row["primary_seq"] and primary.length == int(row["primary_len"])
        assert primary.cluster == row["cluster40"] and primary.split == row["suggested_split"]
        assert primary.atom37.shape == (primary.length, 37, 3)
        assert primary.atom37_mask[:, 1].mean() > 0.9 and np.isnan(primary.atom37[~primary.atom37_mask]).all()
    # homo-oligomers are kept once per distinct sequence
    assert "1a2p_B" not in by_name and "1a2p_C" not in by_name


def test_ingest_real_complexes_and_train_on_them(dev_subset, tmp_path) -> None:
    root, rows = dev_subset
    cfg = IngestConfig(unit="complex", manifest=str(root / "manifest.tsv"), workers=2)
    ingest_structures(root, tmp_path / "ds", cfg, progress=False)
    ds = ProteinDataset(tmp_path / "ds")
    for entry in ds.entries:
        chains = _chains(rows[entry["name"]])
        assert entry["chain_ids"] == list(chains)
        assert entry["chain_lengths"] == list(chains.values()), entry["name"]
    cplx = ds[[e["name"] for e in ds.entries].index("1ab9")]
    assert cplx.n_chains == 4
    train_cfg = apply_overrides(
        TrainConfig(),
        [
            f"out_dir={tmp_path / 'run'}",
            "max_steps=4",
            "data.batch_size=2",
            "data.crop_length=64",
            "log_every=1",
            "precision=bf16",
            "device=cpu",
            "data.split.method=none",
            "progress=false",
            "tensorboard=false",
            "optim.warmup_steps=1",
        ],
    )
    seed_everything(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = build_protein_data(train_cfg, dataset=ds)
        batch = data.train.iterate().__next__().micro_batches[0]
        assert batch.atom37.shape[1] <= 64 and batch.chain_index.max() >= 0
        train(TinyModel(), tiny_loss, data.train, train_cfg)
    finally:
        torch.set_num_threads(threads)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert len(losses) == 4 and all(np.isfinite(losses))
