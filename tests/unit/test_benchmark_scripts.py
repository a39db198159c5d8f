"""The benchmark scripts' own arithmetic and argument checks (``benchmarks/``), without running a benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def test_trunk_grid_rejects_unknown_runs_and_malformed_points() -> None:
    """A misspelt run name was timed as ours fp32 under that name (the worker's fallback branch), and a point
    like ``16x`` ended in a ValueError traceback after the weights had been prepared."""
    from benchmarks.bench_trunk_grid import parse_grid, parse_runs

    assert parse_grid("1x64, 16X256") == [(1, 64), (16, 256)]
    assert parse_runs("ours bf16, reference fp32") == ["ours bf16", "reference fp32"]
    for bad in ("16x", "x64", "16", "0x64", "4x-1", "ax64"):
        with pytest.raises(ValueError, match="B x L"):
            parse_grid(bad)
    with pytest.raises(ValueError, match="ours-bf16"):
        parse_runs("ours fp32,ours-bf16")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--trunk-runs", "ours-bf16", "ours-bf16"), ("--grid", "16x", "B x L"), ("--only", "trunks", "trunks")],
)
def test_run_all_names_a_bad_setting_in_one_line(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from benchmarks import run_all

    # --render-only: a run_all that failed to check the setting renders an empty report instead of benchmarking
    argv = ["run_all.py", "--out-dir", str(tmp_path / "results"), "--render-only", option, value]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_:
        run_all.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()  # refused before anything was made


def test_vqvae_peak_memory_is_in_gb_and_older_gib_files_are_labelled_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_vqvae.py divided ru_maxrss (KiB) by 1024**2, GiB, under the key peak_rss_gb that every other script
    fills in GB (1e9 bytes); the suite's table printed both as GB, side by side with the function decoder's."""
    import resource
    from types import SimpleNamespace

    from benchmarks import bench_vqvae, run_all

    monkeypatch.setattr(resource, "getrusage", lambda _: SimpleNamespace(ru_maxrss=1_000_000))  # KiB
    assert bench_vqvae.peak_rss() == {"peak_rss_gb": 1.02, "peak_rss_unit": "GB"}  # 1.024e9 bytes, not 0.95 GiB
    recorded = json.loads((RESULTS / "suite-vqvae.json").read_text())["result"]["rows"]  # before the fix: GiB
    render_vqvae, render_function_decoder = run_all._RENDERERS["vqvae"], run_all._RENDERERS["function_decoder"]
    assert "peak RSS ref / ours (GiB)" in render_vqvae({"rows": recorded}, {})[0]
    fresh = [{**row, "peak_rss_unit": "GB"} for row in recorded]
    assert "peak RSS ref / ours (GB)" in render_vqvae({"rows": fresh}, {})[0]
    with pytest.raises(ValueError, match="mixes"):
        render_vqvae({"rows": recorded[:2] + fresh[2:]}, {})
    function_rows = json.loads((RESULTS / "suite-function_decoder.json").read_text())["result"]["rows"]
    assert "peak RSS ref / ours (GB)" in render_function_decoder({"rows": function_rows}, {})[0]  # common.py: GB


def _refuse_work(*_: object, **__: object) -> None:
    raise AssertionError("the benchmark started although its output file exists")


@pytest.mark.parametrize(
    ("script", "out_flag", "heavy"),
    [
        ("bench_trunk", "--out", "prepare"),
        ("bench_trunk_grid", "--out", "run_grid"),
        ("bench_function_decoder", "--out", "run_function_decoder"),
        ("bench_vqvae", "--json", "subprocess.run"),
        ("bench_generation", "--out", "write_prompts"),
    ],
)
def test_benchmarks_refuse_to_replace_a_results_file_unless_told(
    script: str, out_flag: str, heavy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Each wrote over an existing --out (bench_generation after its first run, with one run's results), so a
    re-run that crashed or was mistyped lost the recorded figures."""
    import importlib

    module = importlib.import_module(f"benchmarks.{script}")
    owner, _, name = heavy.rpartition(".")
    monkeypatch.setattr(getattr(module, owner) if owner else module, name, _refuse_work)
    out = tmp_path / "recorded.json"
    out.write_text('{"recorded": true}\n')
    device = [] if script == "bench_trunk" else ["--device", "cpu"]  # bench_trunk runs on the CPU only
    monkeypatch.setattr("sys.argv", [f"{script}.py", out_flag, str(out), *device])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--overwrite" in err and str(out) in err
    assert out.read_text() == '{"recorded": true}\n'


def test_bench_generation_keeps_partial_results_beside_the_output(tmp_path: Path) -> None:
    from benchmarks.bench_generation import _write

    out = tmp_path / "generation.json"
    _write(out, {"runs": {"a": 1}}, final=False)
    assert not out.exists() and json.loads((tmp_path / "generation.json.partial").read_text()) == {"runs": {"a": 1}}
    _write(out, {"runs": {"a": 1, "b": 2}}, final=True)
    assert json.loads(out.read_text()) == {"runs": {"a": 1, "b": 2}}
    assert not (tmp_path / "generation.json.partial").exists()


def test_bench_trunk_rejects_an_unknown_part_before_preparing_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--only forwad`` prepared 14 GB of weight files, measured nothing and wrote a results file without figures."""
    from benchmarks import bench_trunk

    monkeypatch.setattr(bench_trunk, "prepare", _refuse_work)
    monkeypatch.setattr("sys.argv", ["bench_trunk.py", "--only", "forwad", "--out", str(tmp_path / "trunk.json")])
    with pytest.raises(SystemExit) as exit_:
        bench_trunk.main()
    assert exit_.value.code == 2
    assert "forwad" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "trunk.json").exists()


def test_scoring_bf16_benchmark_compares_the_three_ways_on_a_real_scan(tmp_path: Path) -> None:
    from benchmarks.bench_scoring_bf16 import SCAN, main

    from tests.conftest import shared_data

    shared_data("dms", "deepsequence", SCAN.name)
    out = tmp_path / "r.json"
    assert main(["--out", str(out), "--limit", "60"]) == 0
    results = json.loads(out.read_text())
    assert results["variants"] == 60 and set(results["results"]) == {"fp32", "bf16", "bf16 logits"}
    fp32, bf16, logits = (results["results"][k] for k in ("fp32", "bf16", "bf16 logits"))
    assert fp32["spearman_vs_fp32"] == 1.0 and fp32["max_abs_diff_vs_fp32"] == 0.0
    assert 0 < bf16["max_abs_diff_vs_fp32"] < 0.1 and bf16["spearman_vs_fp32"] > 0.99
    assert logits["distinct_scores"] <= bf16["distinct_scores"] == fp32["distinct_scores"]


def test_generation_steps_on_a_second_gpu_wait_for_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.cuda.synchronize()`` waits for the current GPU only: timing ``--device cuda:1`` that way measured the
    launch of the kernels, not their run. The clock waits for the benchmarked device, and the peak memory is that
    device's too."""
    import torch
    from benchmarks.bench_generation import StepClock, _gpu_memory

    waited: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2e9 if device == "cuda:1" else 0.0)
    clock = StepClock(lambda x: x + 1, "cuda:1")
    assert clock(1) == 2
    assert waited and all(device == "cuda:1" for device in waited)
    assert _gpu_memory({"device": "cuda:1"}) == {"cuda_max_allocated_gb": 2.0}


def test_scoring_methods_benchmark_counts_the_passes_of_each_method(tmp_path: Path) -> None:
    from benchmarks.bench_scoring_methods import SCAN, main

    from tests.conftest import shared_data

    shared_data("dms", "deepsequence", SCAN.name)
    out = tmp_path / "r.json"
    assert main(["--out", str(out), "--positions", "3", "--d-model", "32", "--n-layers", "1"]) == 0
    results = json.loads(out.read_text())
    wt, masked = results["results"]["wt-marginal"], results["results"]["masked-marginal"]
    assert results["variants"] == wt["variants"] == 4997 and wt["forward_passes"] == 1 and wt["rows_per_pass"] == [1]
    assert masked["positions"] == 3 and masked["forward_passes"] == 1 and masked["rows_per_pass"] == [3]
    assert results["masked_marginal_passes_for_the_full_scan"] == 33  # 263 positions, 8 per pass
    assert 0.0 < results["spearman_wt_vs_masked"]["rho"] <= 1.0


@pytest.mark.parametrize("option", ["--residues", "--repeats"])
def test_coordinate_lists_benchmark_refuses_a_count_below_one(
    option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import bench_coordinate_lists

    monkeypatch.setattr("sys.argv", ["bench_coordinate_lists.py", option, "0"])
    with pytest.raises(SystemExit) as exit_:
        bench_coordinate_lists.main()
    assert exit_.value.code == 2
    assert "--residues and --repeats must be at least 1" in capsys.readouterr().err
