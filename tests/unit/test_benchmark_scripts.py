"""The benchmark scripts' own arithmetic and argument checks (``benchmarks/``), without running a benchmark."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bench_trunk import speedup_table

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _row(table: list[str], label: str) -> list[str]:
    (line,) = [line for line in table if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_trunk_speedups_compare_runs_on_the_same_inputs() -> None:
    """A +coords run is compared with the reference given coordinates too, not with the sequence-only one."""
    results = json.loads((RESULTS / "trunk-forward-1thread.json").read_text())
    table = speedup_table(results)
    # run | wall | speed-up | CPU | CPU speed-up | peak
    assert _row(table, "reference fp32+coords")[4] == "1.00x"
    assert _row(table, "ours bf16+coords")[4] == "4.38x"  # 6.41 / 1.46 s CPU; 4.54x against the sequence-only run
    assert _row(table, "ours fp32+coords")[4] == "1.12x"
    assert _row(table, "ours bf16")[4] == "4.72x"  # 6.64 / 1.41 s
    assert _row(table, "reference fp32, random init, no file (spec §14)")[4] == "1.04x"
