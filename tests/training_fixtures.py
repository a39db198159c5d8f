"""Synthetic protein records, a tiny model and a tiny training program for the training-infrastructure tests.

Importable from any test (``tests/`` is on sys.path through conftest.py) and runnable as a program, alone or
under torchrun, by the subprocess tests (resume after ``kill -9``, 2 processes vs 1):

    PYTHONPATH=src python tests/training_fixtures.py --data DIR [--step-sleep S] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from openesm3.training.data import ProteinRecord

AA = "ACDEFGHIKLMNPQRSTVWY"


def synthetic_chain(rng: np.random.Generator, length: int, origin: np.ndarray) -> np.ndarray:
    """atom37 [L, 37, 3] with N, CA, C, O on a 3.8 A random walk (other atoms NaN)."""
    steps = rng.normal(size=(length, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    ca = origin + np.cumsum(steps, axis=0)
    atom37 = np.full((length, 37, 3), np.nan, dtype=np.float32)
    atom37[:, 1] = ca
    atom37[:, 0] = ca + rng.normal(scale=0.8, size=(length, 3))
    atom37[:, 2] = ca + rng.normal(scale=0.8, size=(length, 3))
    atom37[:, 4] = ca + rng.normal(scale=1.2, size=(length, 3))
    return atom37


def synthetic_record(
    rng: np.random.Generator, name: str, lengths: tuple[int, ...], *, cluster: str = "", split: str = ""
) -> ProteinRecord:
    """A chain (one length) or a complex (several), chains placed close enough to touch."""
    parts, chain_index = [], []
    for c, n in enumerate(lengths):
        parts.append(synthetic_chain(rng, n, origin=np.array([6.0 * c, 0.0, 0.0])))
        chain_index.append(np.full(n, c, dtype=np.int32))
    atom37 = np.concatenate(parts)
    mask = np.isfinite(atom37).all(axis=-1)
    missing = rng.random(len(atom37)) < 0.05  # a few residues without coordinates at all
    atom37[missing] = np.nan
    mask[missing] = False
    return ProteinRecord(
        name=name,
        sequence="".join(rng.choice(list(AA), size=len(atom37))),
        atom37=atom37,
        atom37_mask=mask,
        residue_index=np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in lengths]),
        chain_index=np.concatenate(chain_index),
        chain_ids=tuple("ABCDEFGH"[: len(lengths)]),
        source=f"synthetic/{name}.pdb",
        cluster=cluster,
        split=split,
    )


def synthetic_records(n: int = 40, seed: int = 0, *, max_length: int = 90) -> list[ProteinRecord]:
    """``n`` records of lengths 12..max_length, every 5th a two-chain complex; clusters of varying size."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        if i % 5 == 4:
            lengths: tuple[int, ...] = (int(rng.integers(10, max_length // 2)), int(rng.integers(10, max_length // 2)))
        else:
            lengths = (int(rng.integers(12, max_length)),)
        cluster = f"c{i % 7}" if i < 21 else f"c{i}"
        records.append(synthetic_record(rng, f"rec{i:03d}", lengths, cluster=cluster))
    return records


class TinyModel(nn.Module):
    """Sequence tokens -> per-residue distance of the C-alpha to the record's centroid (invariant target)."""

    def __init__(self, d: int = 32, n_blocks: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(64, d)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout)) for _ in range(n_blocks)
        )
        self.head = nn.Linear(d, 1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # [B, L] -> [B, L]
        h = self.embed(tokens)
        m = mask[..., None].to(h.dtype)
        for block in self.blocks:
            context = (h * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
            h = h + block(h + context)
        return self.head(h).sum(-1)  # [B, L]; not a view (FSDP2 warns about views returned by forward)


def tiny_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # noqa: ANN001
    """Masked MSE of the C-alpha-to-centroid distance; geometry and loss in fp32, mean over samples."""
    from openesm3.training.loop import full_precision

    pred = model(batch.sequence_tokens, batch.mask)
    with full_precision(batch.atom37.device.type):
        ca = batch.atom37[:, :, 1].float()
        present = batch.atom37_mask[:, :, 1] & batch.mask
        w = present.float()
        centroid = (ca * w[..., None]).sum(1, keepdim=True) / w.sum(1).clamp(min=1)[:, None, None]
        target = (ca - centroid).norm(dim=-1) / 10.0
        err = (pred.float() - target) ** 2 * w
        per_sample = err.sum(1) / w.sum(1).clamp(min=1)
        loss = per_sample.mean()
    return loss, {"rmse": per_sample.mean().sqrt().detach(), "pred_dtype_bf16": float(pred.dtype == torch.bfloat16)}


def main(argv: list[str] | None = None) -> int:
    """Train the tiny model on an ingested dataset (used by subprocess tests; also works under torchrun)."""
    from openesm3.training import distributed as D
    from openesm3.training.config import TrainConfig, load_config
    from openesm3.training.loop import seed_everything, train
    from openesm3.training.pipeline import build_protein_data

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("--step-sleep", type=float, default=0.0, help="seconds of sleep per loss call")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument(
        "--sequence-run", action="append", default=[], help="overrides of one run ('k=v k=v'); several run in turn"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    info = D.setup_distributed(load_config(TrainConfig, args.config, args.overrides).device)
    try:
        for extra in args.sequence_run or [""]:
            cfg = load_config(TrainConfig, args.config, [*args.overrides, *extra.split()])
            seed_everything(cfg.seed)
            model = TinyModel(dropout=args.dropout)
            data = build_protein_data(cfg, rank=info.rank, world_size=info.world_size)

            def loss_fn(m: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # noqa: ANN001
                if args.step_sleep:
                    time.sleep(args.step_sleep)
                return tiny_loss(m, batch)

            result = train(model, loss_fn, data.train, cfg, valid_data=data.valid, dist_info=info)
            if info.is_main:
                print(json.dumps({"step": result.step, "checkpoint": str(result.checkpoint)}), flush=True)
    finally:
        D.teardown_distributed()
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
