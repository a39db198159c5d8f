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


def test_a_stage1_export_gets_null_for_its_untrained_heads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stage-1 export records no trained confidence head: its pLDDT / pTM figures (random weights) are null."""
    import json

    import torch

    from openesm3.checkpoints.format import save_pretrained
    from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
    from openesm3.models.structure_decoder import StructureDecoder
    from openesm3.models.structure_encoder import StructureEncoder

    torch.manual_seed(0)
    encoder = StructureEncoder(StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16))
    decoder = StructureDecoder(StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1, pairwise_dim=8))
    decoder.trained_heads = ()
    save_pretrained(encoder, encoder.config, tmp_path / "w" / "structure_encoder", model_type="structure_encoder")
    save_pretrained(decoder, decoder.config, tmp_path / "w" / "structure_decoder", model_type="structure_decoder")
    src = tmp_path / "pdb"
    src.mkdir()
    shutil.copy(TEST_DATA / "1igd.pdb.gz", src)
    (src / "manifest.tsv").write_text("file\tcluster40\tsuggested_split\n1igd.pdb.gz\t1igd\tvalid\n")
    ingest_structures(src, tmp_path / "ds", IngestConfig(manifest=str(src / "manifest.tsv")), progress=False)
    out = tmp_path / "report.json"
    args = ["--weights", str(tmp_path / "w"), "--data", str(tmp_path / "ds"), "--threads", "1", "--out", str(out)]
    assert _script().main(args) == 0
    assert "pLDDT not trained pTM not trained" in capsys.readouterr().err
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert report["untrained_heads"] == ["plddt", "pae"]
    assert report["proteins"][0]["ptm"] is None and report["proteins"][0]["mean_plddt"] is None
    summary = report["summary"]
    assert summary["ptm_mean"] is None and summary["plddt_lddt_pearson"] is None and summary["plddt_mean"] is None
    assert summary["lddt_ca_mean"] is not None  # the geometry is measured all the same
