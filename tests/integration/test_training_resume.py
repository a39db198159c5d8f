"""A training process killed with SIGKILL at a random moment resumes and continues the same loss trajectory."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openesm3.training.checkpointing import latest_checkpoint, list_checkpoints
from openesm3.training.data import write_dataset
from openesm3.training.logging import read_metrics
from tests.training_fixtures import main as train_tiny
from tests.training_fixtures import synthetic_records

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "tests" / "training_fixtures.py"


def _args(data: Path, out: Path) -> list[str]:
    return [
        f"data.path={data}",
        f"out_dir={out}",
        "max_steps=40",
        "ckpt_every=5",
        "keep_last=2",
        "log_every=1",
        "val_every=10",
        "data.batch_size=4",
        "data.crop_length=48",
        "precision=fp32",
        "device=cpu",
        "optim.lr=5e-3",
        "optim.warmup_steps=5",
        "data.split.valid_fraction=0.2",
        "progress=false",
        "tensorboard=false",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _trajectory(out: Path) -> list[tuple[str, int, float]]:
    return [(r["split"], r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl")]


@pytest.mark.slow
def test_kill_9_then_resume_continues_the_same_loss_trajectory(tmp_path) -> None:
    data = tmp_path / "data"
    write_dataset(synthetic_records(40), data, shard_size=16)
    reference = tmp_path / "reference"
    assert train_tiny(["--dropout", "0.1", *_args(data, reference)]) == 0  # uninterrupted, in this process

    out = tmp_path / "killed"
    # the killed run loads data in a background worker (prefetching ahead) and sleeps in every step so it is
    # still running when killed; neither changes the numbers
    command = [
        sys.executable,
        str(PROGRAM),
        "--dropout",
        "0.1",
        "--step-sleep",
        "0.05",
        *_args(data, out),
        "data.num_workers=1",
    ]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(out / "checkpoints") is None:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(random.Random(0).uniform(0.0, 0.6))  # a random moment after the first checkpoint
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = list_checkpoints(out / "checkpoints")[-1][0]
    assert 5 <= killed_at < 40

    resumed = subprocess.run(
        [sys.executable, str(PROGRAM), "--dropout", "0.1", *_args(data, out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _trajectory(out) == _trajectory(reference)  # exact: fp32 on CPU, every RNG restored
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [35, 40]
