"""torchrun with 2 processes (gloo, CPU) takes the same steps as 1 process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openesm3.training.checkpointing import CheckpointError
from openesm3.training.data import write_dataset
from openesm3.training.logging import read_metrics
from tests.training_fixtures import main as train_tiny
from tests.training_fixtures import synthetic_records

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "tests" / "training_fixtures.py"
STEPS = 6


def _common(data: Path) -> list[str]:
    return [
        f"data.path={data}",
        f"max_steps={STEPS}",
        "data.batch_size=8",
        "data.crop_length=48",
        "precision=fp32",
        "device=cpu",
        "optim.lr=1e-2",
        "optim.warmup_steps=2",
        "log_every=1",
        "val_every=3",
        "ckpt_every=3",
        "data.split.valid_fraction=0.2",
        "progress=false",
        "tensorboard=false",
    ]


def _losses(out: Path) -> list[tuple[str, int, float]]:
    return [(r["split"], r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl")]


def _params(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step_{STEPS:09d}" / "model.safetensors"))


@pytest.mark.slow
def test_two_processes_ddp_and_fsdp_match_one_process(tmp_path) -> None:
    data = tmp_path / "data"
    write_dataset(synthetic_records(40), data, shard_size=16)
    one = tmp_path / "one"
    assert train_tiny([*_common(data), f"out_dir={one}"]) == 0
    # a second run with another batch split must differ (the comparison below can fail)
    other = tmp_path / "other"
    assert train_tiny([*_common(data), f"out_dir={other}", "data.batch_size=4"]) == 0

    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(PROGRAM),
        *_common(data),
        "--sequence-run",
        f"out_dir={ddp} distributed=ddp",
        "--sequence-run",
        f"out_dir={fsdp} distributed=fsdp",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    reference = _losses(one)
    assert [step for split, step, _ in reference if split == "train"] == list(range(1, STEPS + 1))
    assert any(split == "valid" for split, _, _ in reference)
    for out in (ddp, fsdp):
        got = _losses(out)
        assert [(a, s) for a, s, _ in got] == [(a, s) for a, s, _ in reference]
        assert max(abs(x - y) for (_, _, x), (_, _, y) in zip(got, reference)) < 1e-6, out.name
        p, q = _params(one), _params(out)
        assert p.keys() == q.keys()
        assert max((p[k] - q[k]).abs().max().item() for k in p) < 1e-6, out.name
    p, q = _params(one), _params(other)
    assert max((p[k] - q[k]).abs().max().item() for k in p) > 1e-4  # negative control

    # the run of 2 processes resumed by 1 is refused from its trainer state, before any tensor of it is read
    (ddp / "checkpoints" / f"step_{STEPS:09d}" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"step_{STEPS:09d}: written by 2 processes, resumed with 1; resume "):
        train_tiny([*_common(data), f"out_dir={ddp}", f"max_steps={STEPS + 2}"])
