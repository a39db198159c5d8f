"""``openesm3 featurize`` end to end: real files, JSON output, errors, and a sample of the dev set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from openesm3.cli.main import main
from tests.conftest import REPO, TEST_DATA, shared_data

STRUCTURES = TEST_DATA / "structures"


def test_featurize_prints_every_chain_and_writes_per_residue_json(tmp_path, capsys) -> None:
    out = tmp_path / "features.json"
    assert main(["featurize", str(STRUCTURES / "2ctc.pdb.gz"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chain A\tlength 307" in text and "dssp" in text
    data = json.loads(out.read_text())
    chain = data["chains"][0]
    assert chain["length"] == len(chain["sequence"]) == len(chain["ss8"]) == len(chain["residues"]) == 307
    assert set(chain["ss8"]) <= set("GHITEBSC")
    rsa = [r["relative_sasa"] for r in chain["residues"] if r["relative_sasa"] is not None]
    assert np.isclose(np.mean(rsa), chain["mean_relative_sasa"], atol=1e-3)
    assert 0.05 < chain["mean_relative_sasa"] < 0.6
    expected_keys = {"residue", "insertion_code", "aa", "ss8", "sasa", "relative_sasa", "chain_break"}
    assert expected_keys <= set(chain["residues"][0])


def test_featurize_multi_chain_and_chain_selection(tmp_path) -> None:
    out = tmp_path / "f.json"
    assert main(["featurize", str(STRUCTURES / "1TEN.pdb.gz"), "--quiet", "--json", str(out)]) == 0
    all_chains = [c["chain_id"] for c in json.loads(out.read_text())["chains"]]
    assert len(all_chains) >= 1
    assert (
        main(["featurize", str(STRUCTURES / "1TEN.pdb.gz"), "--quiet", "--chain", all_chains[0], "--json", str(out)])
        == 0
    )
    assert [c["chain_id"] for c in json.loads(out.read_text())["chains"]] == all_chains[:1]


def test_featurize_reports_chain_breaks_at_numbering_gaps(tmp_path) -> None:
    from openesm3.structure.io import load_structure

    # find a test structure with a real chain break and check the CLI lists it
    for path in sorted(STRUCTURES.glob("*.pdb.gz")):
        structure = load_structure(path)
        if structure.chain_breaks()[1:].any() and len(structure.chains) == 1:
            break
    else:
        pytest.fail("no single-chain test structure with a chain break in tests/data/structures")
    out = tmp_path / "f.json"
    assert main(["featurize", str(path), "--quiet", "--json", str(out)]) == 0
    chain = json.loads(out.read_text())["chains"][0]
    flagged = [r for r in chain["residues"] if r["chain_break"]]
    assert flagged and chain["chain_breaks"] == [f"{r['residue']}{r['insertion_code']}" for r in flagged]


def test_featurize_errors_are_one_line_and_nonzero(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    bad = tmp_path / "empty.pdb"
    bad.write_text("")
    for args, needle in (
        ([str(tmp_path / "missing.pdb")], "missing.pdb"),
        ([str(bad)], "empty.pdb"),
        ([str(STRUCTURES / "1a62.pdb.gz"), "--chain", "Z"], "chain 'Z'"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "openesm3", "featurize", *args], capture_output=True, text=True, env=env, check=False
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_featurize_batch_keeps_going_past_a_bad_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pdb"
    bad.write_text("ATOM      1  N   ALA A   1      12.3x5   1.000   2.000  1.00  0.00           N\n")
    out = tmp_path / "f.json"
    code = main(["featurize", str(STRUCTURES / "1a62.pdb.gz"), str(bad), "--quiet", "--json", str(out)])
    assert code == 1
    assert "bad.pdb" in capsys.readouterr().err
    assert [d["file"] for d in json.loads(out.read_text())] == [str(STRUCTURES / "1a62.pdb.gz")]
    # a run in which every file fails writes nothing: the last run's features are not replaced by []
    again = tmp_path / "bad2.pdb"
    again.write_bytes(bad.read_bytes())
    before = out.read_bytes()
    assert main(["featurize", str(bad), str(again), "--quiet", "--json", str(out)]) == 2
    assert "2 of 2 file(s) failed" in capsys.readouterr().err and out.read_bytes() == before


def test_featurize_quiet_has_no_progress_bar_and_a_file_given_twice_is_featurized_twice(tmp_path, capsys) -> None:
    out = tmp_path / "f.json"
    files = [str(STRUCTURES / "1a62.pdb.gz"), str(STRUCTURES / "2ZTA.pdb.gz"), str(STRUCTURES / "1a62.pdb.gz")]
    assert main(["featurize", *files, "--quiet", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert [d["file"] for d in json.loads(out.read_text())] == files


def test_featurize_json_into_a_directory_is_an_error_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    import openesm3.structure.features  # noqa: PLC0415

    def no_work(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("featurized although --json cannot be written")

    monkeypatch.setattr(openesm3.structure.features, "featurize", no_work)
    assert main(["featurize", str(STRUCTURES / "1a62.pdb.gz"), "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--json {tmp_path}: is a directory" in err and "Errno" not in err


@pytest.mark.dataset
def test_featurize_on_a_sample_of_the_dev_set(tmp_path) -> None:
    dev = shared_data("dev")
    files = sorted(dev.glob("*/*.pdb.gz"))
    rng = np.random.default_rng(0)
    sample = [str(files[i]) for i in rng.choice(len(files), size=12, replace=False)]
    out = tmp_path / "f.json"
    assert main(["featurize", *sample, "--quiet", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [d["file"] for d in data] == sample
    for d in data:
        for chain in d["chains"]:
            assert chain["length"] == len(chain["ss8"]) > 0
