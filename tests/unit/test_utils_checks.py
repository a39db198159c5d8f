"""Argument checks shared by the Python API and the CLI: one message for one mistake, and a bool is not a number."""

from __future__ import annotations

from pathlib import Path

import pytest

from openesm3.cli.main import main
from openesm3.errors import InputError
from openesm3.utils.checks import check_batch_size, check_seed


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "8", None])
def test_batch_size_must_be_an_int_of_at_least_one(bad: object) -> None:
    with pytest.raises(InputError, match=r"batch_size must be an integer >= 1, got"):
        check_batch_size(bad)


def test_batch_size_accepts_ints_and_none_where_allowed() -> None:
    check_batch_size(1)
    check_batch_size(None, allow_none=True)
    with pytest.raises(InputError, match=r">= 1 or None, got False"):
        check_batch_size(False, allow_none=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["embed", "in.fasta", "-o", "out"],
        ["fold", "in.fasta", "-o", "out"],
        ["generate", "--length", "8", "-o", "out"],
        ["inverse-fold", "in.pdb", "-o", "out.fasta"],
        ["predict-function", "in.fasta"],
        ["score", "in.fasta", "--mutations", "M1A"],
        ["tokenize-structure", "in.pdb"],
        ["detokenize", "tokens.json", "--out", "out"],
    ],
)
def test_the_cli_names_its_batch_size_option_with_the_apis_rule(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the files named need not exist: the option is checked before any is read
    # One check for the API and every command: only the name shown differs (--batch-size, not batch_size).
    assert main([*argv, "--batch-size", "0"]) == 2
    assert "error: --batch-size must be an integer >= 1, got 0\n" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"^--batch-size must be an integer >= 1, got -3$"):
        check_batch_size(-3, "--batch-size")


@pytest.mark.parametrize("seed", [-1, 2**64])
@pytest.mark.parametrize(
    "argv",
    [
        ["embed", "in.fasta", "-o", "out"],
        ["fold", "in.fasta", "-o", "out"],
        ["generate", "--prompt", "prompts.fasta", "-o", "out"],
        ["inverse-fold", "in.pdb", "-o", "out.fasta"],
        ["predict-function", "in.fasta"],
        ["score", "in.fasta", "--mutations", "M1A"],
        ["build-function-vocab", "corpus.tsv", "vocab"],
        ["calibrate-tokenizer", "in.pdb", "--out", "calibrated"],
    ],
)
def test_the_cli_names_its_seed_option_with_the_apis_rule(
    argv: list[str], seed: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the files named need not exist: the option is checked before any is read
    # One check for the API and every command with --seed (the commands had "--seed must lie in 0..2**64-1",
    # build-function-vocab "--seed must be >= 0" with no upper bound, calibrate-tokenizer no check before its fits).
    assert main([*argv, "--seed", str(seed)]) == 2
    assert f"error: --seed must be an int in [0, 2**64), got {seed}\n" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("bad", [-1, 2**64, False, 1.0])
def test_seed_must_fit_64_bits(bad: object) -> None:
    with pytest.raises(InputError, match=r"my_seed must be an int in \[0, 2\*\*64\)"):
        check_seed(bad, "my_seed")


def test_seed_bounds_are_inclusive_of_zero_and_2_to_the_64_minus_1() -> None:
    check_seed(0)
    check_seed(2**64 - 1)
