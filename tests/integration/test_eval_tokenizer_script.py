"""``benchmarks/eval_tokenizer.py`` with bad inputs: one line naming the problem and exit code 2, not a traceback."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from openesm3.training.config import IngestConfig
from openesm3.training.ingest import ingest_structures
from tests.conftest import TEST_DATA

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_tokenizer.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_tokenizer_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_weights_data_and_empty_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _script().main
    assert main(["--weights", str(tmp_path / "nowhere"), "--data", str(tmp_path), "--threads", "1"]) == 2
    assert "nowhere" in _one_line_error(capsys)
    assert main(["--data", str(tmp_path / "nodata"), "--threads", "1"]) == 2
    assert "nodata: no such file or directory" in _one_line_error(capsys)
    src = tmp_path / "pdb"
    src.mkdir()
    shutil.copy(TEST_DATA / "1igd.pdb.gz", src)
    (src / "manifest.tsv").write_text("file\tcluster40\tsuggested_split\n1igd.pdb.gz\t1igd\ttrain\n")
    ingest_structures(src, tmp_path / "ds", IngestConfig(manifest=str(src / "manifest.tsv")), progress=False)
    assert main(["--data", str(tmp_path / "ds"), "--split", "calibration", "--threads", "1"]) == 2
    assert "split 'calibration' holds no records" in _one_line_error(capsys)


def test_bad_numbers_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--threads 0 ended in a RuntimeError traceback; --max-proteins -1 silently left out the last protein."""
    main = _script().main
    for option, value in (("--threads", "0"), ("--max-proteins", "-1")):
        with pytest.raises(SystemExit) as exit_:
            main(["--data", str(tmp_path), option, value])
        assert exit_.value.code == 2
        assert f"{option} must be >=" in capsys.readouterr().err
