"""scripts/tokens_alone_input_probe.py: the bundled decoder from tokens alone with the training row (the default)
and with <mask> everywhere (the old default), on a small dataset of real chains."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.training.data import write_dataset
from openesm3.training.tokenizer.evaluate import round_trip
from tests.script_testing import load_script
from tests.unit.test_tokenizer_model import _record


def test_the_probe_compares_the_default_row_with_mask_everywhere(tmp_path: Path) -> None:
    records = [dataclasses.replace(_record(n), split="valid") for n in ("1igd.pdb.gz", "structures/1fxd.pdb.gz")]
    write_dataset(records, tmp_path / "ds")
    out = tmp_path / "probe.json"
    module = load_script("tokens_alone_input_probe")
    assert module.main(["--data", str(tmp_path / "ds"), "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["training_row"]["n"] == 2 and report["mask_everywhere"]["n"] == 2
    encoder, decoder = load_structure_tokenizer()
    for record, row in zip(records, report["proteins"]):
        default = round_trip(encoder, decoder, record, with_sequence=False)  # what detokenize decodes
        assert default is not None and row["backbone_rmsd"] == pytest.approx(default.backbone_rmsd, abs=1e-4)
        assert row["ptm"] == pytest.approx(default.ptm, abs=1e-4)
    assert any(row["mask_everywhere_ptm"] != row["ptm"] for row in report["proteins"])  # another input, another output
    change = report["mask_everywhere_minus_training_row"]
    diffs = [r["mask_everywhere_backbone_rmsd"] - r["backbone_rmsd"] for r in report["proteins"]]
    assert change["backbone_rmsd_mean"] == pytest.approx(sum(diffs) / 2, abs=1e-3)
