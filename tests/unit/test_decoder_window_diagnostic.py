"""scripts/decoder_window_diagnostic.py: windows over a long chain's tokens, decoded alone and within the whole
chain, scored on the same residues."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from openesm3.training.data import write_dataset
from tests.script_testing import load_script
from tests.training_fixtures import synthetic_record


def _module() -> ModuleType:
    return load_script("decoder_window_diagnostic")


@pytest.mark.parametrize(("length", "window", "starts"), [
    (60, 16, [0, 8, 16, 24, 32, 40, 44]),  # the last window is moved back to end at the chain's end
    (64, 16, [0, 8, 16, 24, 32, 40, 48]),
    (10, 16, [0]),
    (512, 256, [0, 128, 256]),
])  # fmt: skip
def test_window_starts_cover_the_chain(length: int, window: int, starts: list[int]) -> None:
    got = _module().window_starts(length, window)
    assert got == starts
    covered = np.zeros(length, dtype=bool)
    for s in got:
        covered[s : s + window] = True
    assert covered.all() and got[-1] + min(window, length) == length


def test_diagnostic_on_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    records = [
        synthetic_record(rng, "long", (60,), split="valid"),
        synthetic_record(rng, "short", (20,), split="valid"),  # not longer than window + min-excess: left out
        synthetic_record(rng, "train_long", (70,), split="train"),  # other split: left out
    ]
    write_dataset(records, tmp_path / "ds")
    out = tmp_path / "window.json"
    module = _module()
    args = ["--data", str(tmp_path / "ds"), "--window", "16", "--min-excess", "8", "--threads", "1"]
    assert module.main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["window"] == 16 and result["split"] == "valid" and result["with_sequence"] is True
    [protein] = result["proteins"]
    assert protein["name"] == "long" and protein["length"] == 60 and protein["windows"] == 7
    for key in ("window_lddt_ca", "whole_lddt_ca"):
        assert 0.0 <= protein[key] <= 1.0
    summary = result["summary"]
    diff = summary["lddt_ca_window_minus_whole"]
    assert diff["mean_difference"] == pytest.approx(protein["window_lddt_ca"] - protein["whole_lddt_ca"])
    rmsd = summary["ca_rmsd_window_minus_whole"]["mean_difference"]
    assert rmsd == pytest.approx(protein["window_ca_rmsd"] - protein["whole_ca_rmsd"])
    # a window as long as the chain is the whole token row again (same BOS/EOS and sequence): identical scores
    assert module.main([*args[:2], "--window", "60", "--min-excess", "-1", "--out", str(out)]) == 0
    [same] = json.loads(out.read_text())["proteins"]
    assert same["windows"] == 1
    assert same["window_lddt_ca"] == same["whole_lddt_ca"] and same["window_ca_rmsd"] == same["whole_ca_rmsd"]
    with pytest.raises(SystemExit, match="no valid chain is longer than 80"):
        module.main([*args[:2], "--window", "64", "--min-excess", "16"])
    capsys.readouterr()
