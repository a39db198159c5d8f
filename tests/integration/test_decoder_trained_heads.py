"""A tokenizer export records which confidence heads its run trained (``trained_heads`` in the decoder's
``config.json``), and the commands that print or write a structure decoder's confidences do not present the outputs
of untrained heads (a stage-1 export's) as measured: ``round-trip`` and ``detokenize`` say "not trained", write
B-factors 0 and null confidences. Trained decoders print their numbers as before."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.cli.main import main
from openesm3.structure.io import load_chain
from openesm3.training.config import IngestConfig, load_config
from openesm3.training.ingest import ingest_structures
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from openesm3.training.tokenizer.export import export_networks
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.training.tokenizer.run import export_checkpoint, trained_heads
from tests.conftest import TEST_DATA
from tests.integration.test_train_tokenizer import FILES, TINY

PROTEIN = TEST_DATA / "1igd.pdb.gz"
NUMBER = re.compile(r"pTM \d|mean pLDDT \d")  # a confidence printed as a number


@pytest.fixture(scope="module")
def stage1_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export of a tiny stage-1 ``train-tokenizer`` run (2 steps)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("heads")
    (root / "pdb").mkdir()
    for name in FILES:
        shutil.copy(TEST_DATA / name, root / "pdb" / Path(name).name)
    ingest_structures(root / "pdb", root / "shards", IngestConfig(), progress=False)
    args = ["train-tokenizer", "--threads", "1", f"data.path={root / 'shards'}", f"out_dir={root / 'run'}", *TINY]
    assert main([*args, "max_steps=2"]) == 0
    return root / "run" / "export"


@pytest.fixture(scope="module")
def stage2_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stage-2 tokenizer (random weights) exported with the record a stage-2 run writes."""
    torch.manual_seed(0)
    config = load_config(TokenizerTrainConfig, None, ["data.path=unused", *TINY, "stage=2", "init_from=unused",
                                                      "decoder.sequence_conditioning=true"])  # fmt: skip
    model = StructureTokenizerModel(config.encoder, config.decoder, stage=2).eval()
    out = tmp_path_factory.mktemp("stage2") / "export"
    export_networks(model, out, trained_heads=trained_heads(config))
    return out


def _config(export: Path) -> dict:
    return json.loads((export / "structure_decoder" / "config.json").read_text())


def test_exports_record_which_heads_were_trained(stage1_export: Path, stage2_export: Path) -> None:
    assert _config(stage1_export)["trained_heads"] == []
    assert _config(stage2_export)["trained_heads"] == ["plddt", "pae"]
    assert "trained_heads" not in json.loads((stage1_export / "structure_encoder" / "config.json").read_text())


def test_round_trip_prints_no_confidence_of_a_stage1_export(
    stage1_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "decoded.pdb"
    assert main(["round-trip", str(PROTEIN), "--weights", str(stage1_export), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "decoder confidence: pTM not trained  mean pLDDT not trained" in printed
    assert "never trained" in printed and "stage-1" in printed
    assert not NUMBER.search(printed), printed
    assert np.all(np.nan_to_num(load_chain(out).b_factor) == 0)  # no random-head pLDDT in the file


def test_round_trip_prints_the_confidence_of_a_stage2_export(
    stage2_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["round-trip", str(PROTEIN), "--weights", str(stage2_export)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"decoder confidence: pTM \d\.\d{3}  mean pLDDT \d\.\d{3}\n", printed), printed
    assert "not trained" not in printed


def test_detokenize_withholds_untrained_confidences(
    stage1_export: Path, stage2_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, export in (("stage1", stage1_export), ("stage2", stage2_export)):
        tokens = tmp_path / f"{name}.json"
        assert main(["tokenize-structure", str(PROTEIN), "--weights", str(export), "--out", str(tokens)]) == 0
        capsys.readouterr()
        pdb, confidence = tmp_path / f"{name}.pdb", tmp_path / f"{name}_confidence.json"
        assert main(["detokenize", str(tokens), "--weights", str(export), "--out", str(pdb), "--confidence",
                     str(confidence), "--quiet"]) == 0  # fmt: skip
        captured = capsys.readouterr()
        (entry,) = json.loads(confidence.read_text()).values()
        b_factors = np.nan_to_num(load_chain(pdb).b_factor)
        if name == "stage1":
            assert "pTM not trained\tmean pLDDT not trained" in captured.out
            assert not NUMBER.search(captured.out), captured.out
            assert "never trained" in captured.err and "B-factor column holds 0" in captured.err
            assert entry == {"ptm": None, "plddt": None, "pae": None, "untrained_heads": ["plddt", "pae"]}
            assert np.all(b_factors == 0)
        else:
            assert re.search(r"pTM 0\.\d{4}\tmean pLDDT 0\.\d{4}", captured.out), captured.out
            assert "never trained" not in captured.err
            assert set(entry) == {"ptm", "plddt", "pae"} and 0 < entry["ptm"] < 1
            assert b_factors.max() > 0


def _one_head(export: Path, trained: list[str], root: Path) -> Path:
    """A copy of ``export`` whose decoder records only ``trained`` as trained."""
    copy = root / f"only_{'_'.join(trained) or 'none'}"
    shutil.copytree(export, copy)
    path = copy / "structure_decoder" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "trained_heads": trained}))
    return copy


def test_one_untrained_head_withholds_only_its_own_outputs(
    stage2_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pTM comes from the PAE head: a decoder whose PAE head alone is untrained prints its pLDDT and no pTM, and the
    other way round; the note names the one head (no stage-1 export has one), and says B-factors 0 only for a file."""
    no_pae = _one_head(stage2_export, ["plddt"], tmp_path)
    assert main(["round-trip", str(PROTEIN), "--weights", str(no_pae)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"decoder confidence: pTM not trained  mean pLDDT \d\.\d{3}\n", printed), printed
    assert "their PAE/pTM head as never trained" in printed and "stage-1" not in printed, printed
    no_plddt = _one_head(stage2_export, ["pae"], tmp_path)
    assert main(["round-trip", str(PROTEIN), "--weights", str(no_plddt)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"decoder confidence: pTM \d\.\d{3}  mean pLDDT not trained\n", printed), printed
    assert "their pLDDT head as never trained" in printed and "B-factors 0" not in printed, printed
    assert main(["round-trip", str(PROTEIN), "--weights", str(no_plddt), "--out", str(tmp_path / "x.pdb")]) == 0
    assert "the decoded file holds B-factors 0" in capsys.readouterr().out
    for export, trained in ((no_pae, "plddt"), (no_plddt, "pae")):
        tokens, confidence = tmp_path / f"{trained}.json", tmp_path / f"{trained}_confidence.json"
        assert main(["tokenize-structure", str(PROTEIN), "--weights", str(export), "--out", str(tokens)]) == 0
        capsys.readouterr()
        assert main(["detokenize", str(tokens), "--weights", str(export), "--out", str(tmp_path / f"{trained}.pdb"),
                     "--confidence", str(confidence), "--quiet"]) == 0  # fmt: skip
        line = capsys.readouterr().out
        (entry,) = json.loads(confidence.read_text()).values()
        if trained == "plddt":
            assert re.search(r"pTM not trained\tmean pLDDT 0\.\d{4}", line), line
            assert entry["ptm"] is None and entry["pae"] is None and len(entry["plddt"]) > 0
            assert entry["untrained_heads"] == ["pae"]
        else:
            assert re.search(r"pTM 0\.\d{4}\tmean pLDDT not trained", line), line
            assert entry["plddt"] is None and 0 < entry["ptm"] < 1 and len(entry["pae"]) > 0
            assert entry["untrained_heads"] == ["plddt"]


def test_export_checkpoint_records_the_heads_too(stage1_export: Path, tmp_path: Path) -> None:
    """``export-tokenizer`` (export_checkpoint) of a stage-1 run writes the same record as the run's own export."""
    run = stage1_export.parent
    shards = run.parent / "shards"
    config = load_config(TokenizerTrainConfig, None, [f"data.path={shards}", f"out_dir={tmp_path / 'again'}", *TINY])
    _, _, decoder = export_checkpoint(config, run)
    assert json.loads((decoder / "config.json").read_text())["trained_heads"] == []
