"""An output that could not be written stops a command before any work (docs/usage.md): here for the structure
token commands, whose outputs used to be found unwritable only after encoding or decoding everything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import openesm3.checkpoints.vqvae_weights as vqvae_weights
from openesm3.cli.main import main
from openesm3.generation.structure_tokens import ChainTokens, StructureTokens, tokens_to_json
from tests.conftest import TEST_DATA

STRUCTURE = str(TEST_DATA / "structures" / "2HPR.pdb.gz")


@pytest.fixture(autouse=True)
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command loaded weights before refusing its output")

    monkeypatch.setattr(vqvae_weights, "load_vqvae_network", load)


NOT_A_DIRECTORY = "{tmp}/notes.txt is not a directory"
IS_A_DIRECTORY = "is a directory; give a file name"


@pytest.mark.parametrize(
    ("command", "out", "reason"),
    [
        (["round-trip", STRUCTURE], "out_dir", IS_A_DIRECTORY),
        (["round-trip", STRUCTURE], "notes.txt/x.pdb", NOT_A_DIRECTORY),
        (["round-trip", STRUCTURE], "x.txt", "the suffix names no structure format; use .pdb, .cif or .bcif "
         "(optionally + .gz)"),
        (["tokenize-structure", STRUCTURE], "out_dir", IS_A_DIRECTORY),
        (["tokenize-structure", STRUCTURE], "notes.txt/t.json", NOT_A_DIRECTORY),
    ],
)  # fmt: skip
def test_an_unwritable_output_stops_the_command_before_any_work(
    command: list[str], out: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out_dir").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert main([*command, "--out", str(tmp_path / out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    message = f"--out {tmp_path / out}: {reason.format(tmp=tmp_path)}"
    assert captured.err == f"openesm3 {command[0]}: error: {message}\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--out", "{tmp}/x.pdb", "--confidence", "{tmp}/out_dir"], f"--confidence {{tmp}}/out_dir: {IS_A_DIRECTORY}"),
        (["--out", "{tmp}/x.pdb", "--confidence", "{tmp}/notes.txt/c.json"],
         f"--confidence {{tmp}}/notes.txt/c.json: {NOT_A_DIRECTORY}"),
        (["--out", "{tmp}/notes.txt/x.pdb"], f"--out {{tmp}}/notes.txt/x.pdb: {NOT_A_DIRECTORY}"),
        (["--out", "{tmp}/notes.txt"], "--out {tmp}/notes.txt: exists and is not a directory; give a directory"),
        # one structure to a name ending in '/': was written as the file x.pdb, the '/' dropped by Path()
        (["--out", "{tmp}/x.pdb/"], "--out {tmp}/x.pdb/: ends with '/', a directory; give a file name"),
        (["--out", "{tmp}/out_dir/x.pdb/deeper"], None),  # a directory, created: the check lets it through
    ],
)  # fmt: skip
def test_detokenize_refuses_unwritable_outputs_before_decoding(
    options: list[str], message: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out_dir").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    n = 3
    chain = ChainTokens("A", np.arange(n), np.arange(1, n + 1), np.full(n, ""), "MKT", np.ones(n, dtype=bool))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(tokens_to_json([StructureTokens((chain,), "t")])))
    argv = ["detokenize", str(tokens), *(option.format(tmp=tmp_path) for option in options)]
    if message is None:
        with pytest.raises(AssertionError, match="loaded weights"):
            main([*argv, "--debug"])
        return
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"openesm3 detokenize: error: {message.format(tmp=tmp_path)}\n"


@pytest.mark.parametrize(
    ("command", "out", "place"),
    [
        (["tokenize-structure", STRUCTURE], "ro/t.json", "ro"),  # a file in a read-only directory
        (["tokenize-structure", STRUCTURE], "ro/new/t.json", "ro"),  # ... or under one, to be created
        (["round-trip", STRUCTURE], "ro/x.pdb", "ro"),
        (["detokenize", "{tokens}"], "ro", "ro"),  # an existing read-only output directory
        (["detokenize", "{tokens}"], "ro/new_dir", "ro"),
    ],
)
def test_a_read_only_output_place_stops_the_command_before_any_work(
    command: list[str],
    out: str,
    place: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read-only output directory (another user's, a read-only mount) was found only when the results were
    written, after all the work. Tests run as root, to whom every directory is writable: os.access is stubbed."""
    import os  # noqa: PLC0415

    read_only = tmp_path / place
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    n = 3
    chain = ChainTokens("A", np.arange(n), np.arange(1, n + 1), np.full(n, ""), "MKT", np.ones(n, dtype=bool))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(tokens_to_json([StructureTokens((chain,), "t")])))
    argv = [part.format(tokens=tokens) for part in command]
    assert main([*argv, "--out", str(tmp_path / out)]) == 2
    message = f"--out {tmp_path / out}: cannot write in {read_only} (permission denied or read-only)"
    assert capsys.readouterr().err == f"openesm3 {command[0]}: error: {message}\n"
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["round-trip", STRUCTURE, "--out"],
        ["tokenize-structure", STRUCTURE, "--out"],
        ["featurize", STRUCTURE, "--json"],
    ],
)
@pytest.mark.parametrize("name", ["new_dir/", "x.pdb/"])
def test_an_output_file_named_as_a_directory_stops_the_command(
    command: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file output given with a trailing '/' (a directory, as the shell completes one) was written as a file of
    that name without the '/': `--out results/` left a file `results`, where a directory was meant."""
    out = f"{tmp_path}/{name}"
    assert main([*command, out]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    message = f"{command[-1]} {out}: ends with '/', a directory; give a file name"
    assert captured.err == f"openesm3 {command[0]}: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["tokens.pdb", "tokens.cif.gz", "tokens.bcif"])
def test_tokenize_structure_refuses_to_write_its_json_under_a_structure_name(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out x.pdb` (round-trip's option, typed for tokenize-structure) wrote the JSON token file as x.pdb: a file
    that every structure reader then refused, and detokenize read only by its content."""
    out = tmp_path / name
    assert main(["tokenize-structure", STRUCTURE, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.startswith(f"openesm3 tokenize-structure: error: --out {out}: names a structure file ("), (
        captured.err
    )
    assert "the tokens are written as JSON" in captured.err


@pytest.mark.parametrize("out", ["x.pdb", "notes.txt", "x.pdb/"])  # named as given, its '/' kept
def test_detokenize_of_several_structures_to_one_file_names_the_token_file_that_holds_them(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error read '<tmp>/x.pdb: the file holds 2 structures; give a directory for --out', as if the output (an
    existing notes.txt too) held them."""
    (tmp_path / "notes.txt").write_text("x")
    n = 3
    chain = ChainTokens("A", np.arange(n), np.arange(1, n + 1), np.full(n, ""), "MKT", np.ones(n, dtype=bool))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(tokens_to_json([StructureTokens((chain,), "a"), StructureTokens((chain,), "b")])))
    target = f"{tmp_path}/{out}"
    assert main(["detokenize", str(tokens), "--out", target]) == 2
    message = f"--out {target}: {tokens} holds 2 structures, one file takes one; give a directory"
    assert capsys.readouterr().err == f"openesm3 detokenize: error: {message}\n"
    assert (tmp_path / "notes.txt").read_text() == "x" and not (tmp_path / "x.pdb").exists()
