"""``benchmarks/bench_generation.py --tiny`` end to end (a 2-layer model: it checks the script, times nothing), so
that the one-command benchmark suite can rely on its CLI and JSON layout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_data


def test_bench_generation_tiny_runs_and_writes_its_json(esm_reference, tmp_path) -> None:
    shared_data("dev")  # the prompts are real dev-set chains
    out = tmp_path / "generation.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_generation.py"), "--tiny", "--out", str(out),
           "--tracks", "structure", "--impls", "reference,ours_fp32", "--steps", "2", "--repeats", "1",
           "--threads", "1", "--cache", str(tmp_path / "trunk"), "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert not (tmp_path / "generation.json.partial").exists()  # the runs written as they finished, folded in
    assert len(results["prompts"]) == 8
    runs = results["runs"]
    assert set(runs) == {"structure / reference", "structure / ours_fp32"}
    for run in runs.values():
        assert run["steps_per_run"] == 2 and len(run["step_wall_s"][0]) == 2
        assert run["median_step_s"] > 0 and run["peak_rss_gb"] > 0
        assert run["throughput_prompt_steps_per_s"] == pytest.approx(8 / run["median_step_s"], rel=1e-2)
    assert "| structure | ours_fp32 (float32) |" in proc.stdout

    bad = subprocess.run([*cmd[:2], "--out", str(tmp_path / "bad.json"), "--tracks", "structur"],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert bad.returncode == 2 and "unknown track" in bad.stderr
