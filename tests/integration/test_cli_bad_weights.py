"""Weights given with ``--weights`` that cannot be used: each run stops with exit code 2 and one line naming the file
and what is wrong with it (never an internal error, never advice to load the file unsafely), before any output is
written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

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
