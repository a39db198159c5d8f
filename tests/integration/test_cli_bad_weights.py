"""Weights given with ``--weights`` that cannot be used: each run stops with exit code 2 and one line naming the file
and what is wrong with it (never an internal error, never advice to load the file unsafely), before any output is
written."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR
from openesm3.cli.main import main
from tests.conftest import TEST_DATA

STRUCTURE = TEST_DATA / "structures" / "1PIN.pdb.gz"


def tokenize_with(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """stderr of ``tokenize-structure`` run with ``--weights weights``, which must fail as a user error."""
    out = tmp_path / "tokens.json"
    code = main(["tokenize-structure", str(STRUCTURE), "--weights", str(weights), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err, err
    assert not out.exists()
    return err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"hello, this is not a weight file\n", "neither a zip archive"),  # was an internal error: KeyError: 101
        (bytes(range(256)) * 4, "neither a zip archive"),
        (b"", "empty file"),
        (b"x", "neither a zip archive"),  # one byte: not empty
    ],
)
def test_a_pth_file_that_is_no_pytorch_file_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    weights = tmp_path / "esm3_structure_encoder_v0.pth"
    weights.write_bytes(content)
    err = tokenize_with(weights, tmp_path, capsys)
    assert f"{weights}: not a readable PyTorch state_dict ({problem}" in err, err


def test_a_pth_file_holding_other_objects_says_what_the_safe_loader_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # torch's message was several lines of advice (with terminal escape codes) to load the file unsafely; its
    # first line, all the error showed, did not say what was refused
    weights = tmp_path / "esm3_structure_encoder_v0.pth"
    torch.save({"w": torch.ones(1), "options": argparse.Namespace(a=1)}, weights)
    err = tokenize_with(weights, tmp_path, capsys)
    assert f"{weights}: not a readable PyTorch state_dict (" in err, err
    assert "argparse.Namespace" in err, err
    assert "weights_only" not in err and "\x1b" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def _copy_encoder(tmp_path: Path) -> Path:
    """A weights directory holding a copy of the bundled structure encoder (config.json + model.safetensors)."""
    root = tmp_path / "weights"
    shutil.copytree(BUNDLED_TOKENIZER_DIR / "structure_encoder", root / "structure_encoder")
    return root


def _edit_config(root: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    path = root / "structure_encoder" / "config.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda meta: meta.update(format_version=2), "format_version 2 is not supported (this OpenESM3 reads 1)"),
        (lambda meta: meta.pop("model_type"), "missing key 'model_type'"),
        (lambda meta: meta.update(model_type="esm4"), "unknown model_type 'esm4'; known: ['esm3', "),
        (
            lambda meta: meta["config"].update(d_model=-5),
            "invalid StructureEncoderConfig: StructureEncoderConfig.d_model",
        ),
        (
            lambda meta: meta["config"].update(n_layers="two"),
            "invalid StructureEncoderConfig: StructureEncoderConfig.n_layers must be a positive int, got 'two'",
        ),
        (lambda meta: meta["config"].update(width=3), "unknown StructureEncoderConfig field(s) ['width']"),
    ],
)
def test_a_damaged_config_json_is_named_with_its_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[dict[str, Any]], object], problem: str
) -> None:
    root = _copy_encoder(tmp_path)
    _edit_config(root, edit)
    err = tokenize_with(root, tmp_path, capsys)
    assert f"{root / 'structure_encoder' / 'config.json'}: {problem}" in err, err


def test_a_config_json_that_is_no_object_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_encoder(tmp_path)
    (root / "structure_encoder" / "config.json").write_text("[128, 64]")
    err = tokenize_with(root, tmp_path, capsys)
    assert f"{root / 'structure_encoder' / 'config.json'}: expected a JSON object" in err, err


@pytest.mark.parametrize("size", [0, 100, 100_000])
def test_a_truncated_safetensors_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int) -> None:
    root = _copy_encoder(tmp_path)
    weights = root / "structure_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:size])
    err = tokenize_with(root, tmp_path, capsys)
    assert f"{weights}: unreadable safetensors file (" in err, err


def test_a_truncated_pth_download_is_named_as_a_damaged_zip_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A download cut short is a zip archive without its central directory, which is not is_zipfile: it must not be
    reported as 'neither a zip archive nor a pickle'."""
    weights = tmp_path / "esm3_structure_encoder_v0.pth"
    torch.save({"w": torch.ones(1000)}, weights)
    weights.write_bytes(weights.read_bytes()[:3000])
    err = tokenize_with(weights, tmp_path, capsys)
    assert f"{weights}: not a readable PyTorch state_dict (" in err and "central directory" in err, err


def test_a_pth_file_holding_a_wrapped_state_dict_names_the_entry_that_is_no_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a training checkpoint ({"model": state_dict, "step": n}) was refused as "expected a state_dict (a dict of
    # name -> tensor), got dict": a dict was asked for and a dict was named as the fault
    weights = tmp_path / "esm3_structure_encoder_v0.pth"
    torch.save({"model": {"w": torch.ones(1)}, "step": 3}, weights)
    err = tokenize_with(weights, tmp_path, capsys)
    assert f"{weights}: expected a state_dict (a dict of name -> tensor), but its entry 'model' is a dict" in err, err


@pytest.mark.parametrize("name", ["encoder.safetensors", "esm3_structure_encoder_v0.pth"])
def test_a_safetensors_file_without_its_config_is_named_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # our model.safetensors copied or renamed without its config.json was read as an official .pth and refused as
    # "neither a zip archive, as torch.save writes, nor a pickle": true, but no hint of what the file is or needs
    weights = tmp_path / name
    shutil.copyfile(BUNDLED_TOKENIZER_DIR / "structure_encoder" / "model.safetensors", weights)
    err = tokenize_with(weights, tmp_path, capsys)
    assert f"{weights}: a safetensors file, not an official .pth: OpenESM3 reads one as model.safetensors" in err, err
    assert "config.json" in err and "pickle" not in err, err
