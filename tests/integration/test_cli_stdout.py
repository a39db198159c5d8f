"""An output option given as ``-`` means standard output, as Unix tools read it: text results (tables, FASTA, JSON,
PDB/mmCIF) are printed there, once, at the end, with progress and messages kept on stderr so that stdout parses;
binary or directory outputs are refused naming the option. Before, ``-o -`` wrote a file named ``-`` in the current
directory. Tiny random networks (tests/task_testing.py): the values are meaningless, the plumbing is checked."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from openesm3.cli.main import main
from openesm3.protein import Protein
from openesm3.structure import load_structure
from tests.conftest import TEST_DATA
from tests.task_testing import FAST, TRP_CAGE, ZIPPER

STRUCTURE = TEST_DATA / "structures" / "1PIN.pdb.gz"
SEQ = "MKTAYIAKQRQISFVKSHFS"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run every command in an empty directory: a file named ``-`` appearing there is the old defect."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / "-").exists(), "a file or directory named '-' was written"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _tsv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def _structure(text: str, tmp_path: Path, suffix: str = ".pdb") -> Protein:
    path = tmp_path / f"stdout{suffix}"
    path.write_text(text)
    return Protein.from_structure(path)


# ------------------------------------------------------------------------------------------------- text to stdout
def test_score_dash_prints_the_table_as_without_o_and_ignores_a_file_named_dash(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n>two\nGGSSAK\n")
    base = ["score", str(fasta), "--weights", str(weights), "--quiet"]
    code, plain, _ = _run(base, capsys)
    assert code == 0
    code, out, err = _run([*base, "-o", "-"], capsys)
    assert code == 0, err
    assert out == plain and [r["id"] for r in _tsv(out)] == ["one", "two"]
    # A file named '-' (left by the old behaviour) is neither an earlier run's output nor replaced.
    (tmp_path / "-").write_text("mine\n")
    code, out, err = _run([*base, "-o", "-", "--record", "run.json"], capsys)
    assert code == 0, err
    assert out == plain and (tmp_path / "-").read_text() == "mine\n"
    (tmp_path / "-").unlink()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["options"]["output"] == "-" and record["outputs"] == []  # as for a table without -o


def test_score_variants_dash(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">wt\n{SEQ}\n")
    args = ["score", str(fasta), "--mutations", "K2A", "T3G", "-o", "-", "--weights", str(weights), "--quiet"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    assert [r["mutant"] for r in _tsv(out)] == ["K2A", "T3G"] and "2 of 2 variant(s)" in err


def test_predict_function_dash(weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n")
    args = ["predict-function", str(fasta), "-o", "-", "--weights", str(weights), "--vocabulary-dir", str(vocab)]
    code, out, err = _run([*args, *FAST], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "id\tlabel\tstart\tend" and all(r["id"] == "one" for r in _tsv(out))


def test_inverse_fold_dash_prints_only_the_fasta(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["inverse-fold", str(TRP_CAGE), "-n", "2", "--weights", str(weights), *FAST]
    args = [*base, "-o", "-"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    headers = [line for line in out.splitlines() if line.startswith(">")]
    assert len(headers) == 2 and all(" recovery=" in h for h in headers)
    assert all(line.isalpha() for line in out.splitlines() if not line.startswith(">"))  # no summary table
    assert "-> standard output" in err
    code, out, err = _run([*args, "--summary", "s.tsv"], capsys)  # the summary still goes to a file
    assert code == 0, err
    assert out.count(">") == 2 and len(_tsv((tmp_path / "s.tsv").read_text())) == 3
    fasta = tmp_path / "d.fasta"
    code, out, err = _run([*base, "-o", str(fasta), "--summary", "-"], capsys)
    assert code == 0, err
    assert fasta.read_text().count(">") == 2 and [r["sample"] for r in _tsv(out)] == ["1", "2", "mean"]


def test_inverse_fold_refuses_both_outputs_on_stdout(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["inverse-fold", str(TRP_CAGE), "-o", "-", "--summary", "-", "--weights", str(weights), *FAST]
    code, out, err = _run(args, capsys)
    assert code == 2 and out == ""
    assert "--summary -: -o also goes to standard output; give one of them a file" in err


def test_fold_dash_prints_one_structure(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n")
    base = ["fold", str(fasta), "--weights", str(weights), *FAST]
    code, out, err = _run([*base, "-o", "-"], capsys)
    assert code == 0, err
    assert _structure(out, tmp_path).sequence == SEQ
    assert "summary none" in err and list(tmp_path.iterdir()) == [fasta, tmp_path / "stdout.pdb"]
    code, out, err = _run([*base, "-o", "-", "--format", "cif", "--summary", "s.json"], capsys)
    assert code == 0, err
    assert _structure(out, tmp_path, ".cif").sequence == SEQ
    assert json.loads((tmp_path / "s.json").read_text())[0]["id"] == "one"
    code, out, err = _run([*base, "-o", "dir", "--summary", "-"], capsys)
    assert code == 0, err
    assert [r["file"] for r in _tsv(out)] == ["one.pdb"] and (tmp_path / "dir" / "one.pdb").exists()


def test_fold_summary_dot_slash_dash_is_a_file(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``./-`` names a file called ``-``, not standard output. Before, fold read --summary through pathlib, which
    drops the ``./``: the table was printed on stdout and no file written (with -o -, the run was refused as two
    outputs on stdout), and an existing ``-`` was not protected by the check for an earlier run's files."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n")
    base = ["fold", str(fasta), "--weights", str(weights), *FAST, "--summary", "./-"]
    code, out, err = _run([*base, "-o", "dir"], capsys)
    assert code == 0, err
    assert out == "" and [r["id"] for r in _tsv((tmp_path / "-").read_text())] == ["one"]
    assert "summary ./-" in err
    code, out, err = _run([*base, "-o", "other"], capsys)  # an earlier run's file is not replaced unasked
    assert code == 2 and out == "" and "--summary ./-: 1 file already exists" in err
    (tmp_path / "-").unlink()
    code, out, err = _run([*base, "-o", "-"], capsys)  # the structure on stdout, the table in the file
    assert code == 0, err
    assert _structure(out, tmp_path).sequence == SEQ and len(_tsv((tmp_path / "-").read_text())) == 1
    (tmp_path / "-").unlink()


def test_a_stopped_run_prints_nothing_on_stdout_and_claims_no_summary_file(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a table printed without -o: what goes to stdout comes at the end only; a stop prints nothing there."""
    import openesm3.generation.tasks as tasks

    real, calls = tasks.generate, []

    def stopping(*args: object, **kwargs: object) -> object:  # the second batch is stopped by Ctrl-C
        calls.append(1)
        if len(calls) % 2 == 0:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tasks, "generate", stopping)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n>two\nGGSSAKMK\n")
    args = ["fold", str(fasta), "-o", "dir", "--summary", "-", "--batch-size", "1", "--weights", str(weights), *FAST]
    code, out, err = _run(args, capsys)
    assert code == 130 and out == "" and len(list((tmp_path / "dir").glob("*.pdb"))) == 1
    assert "kept 1 of 2 structure(s) in dir (summary none: --summary - prints it at the end only)" in err
    args = ["inverse-fold", str(ZIPPER), str(TRP_CAGE), "--chains", "A", "--batch-size", "1", "-o", "-"]
    code, out, err = _run([*args, "--weights", str(weights), *FAST], capsys)
    assert code == 130 and out == "" and "kept" not in err
    # A --summary file beside -o - keeps the table of the structures done, and is said to hold no sequences (before:
    # "kept 1 sequence(s) ... in s.tsv", which holds none).
    code, out, err = _run([*args, "--summary", "s.tsv", "--weights", str(weights), *FAST], capsys)
    assert code == 130 and out == "" and len(_tsv((tmp_path / "s.tsv").read_text())) == 2  # the design, its mean
    assert (
        "kept the summary of 1 design(s) for 1 of 2 structure(s) in s.tsv (no FASTA: -o - prints it at the end" in err
    )


@pytest.mark.parametrize(
    ("extra", "records", "message"),
    [
        ([], 2, "-o -: standard output takes one structure, not 2; give a directory"),
        (["--pae-plot"], 1, "--pae-plot: with -o - there is no place for <id>.pae.png"),
        (["--format", "bcif"], 1, "-o -: BinaryCIF is binary, not for standard output"),
    ],
)
def test_fold_dash_refusals(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], records: int, message: str
) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text("".join(f">r{k}\n{SEQ}\n" for k in range(records)))
    code, out, err = _run(["fold", str(fasta), "-o", "-", "--weights", str(weights), *FAST, *extra], capsys)
    assert code == 2 and out == "" and message in err


def test_tokenize_detokenize_round_trip_dash(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["tokenize-structure", str(STRUCTURE), "--weights", str(weights), "--out", "-"], capsys)
    assert code == 0, err
    tokens = json.loads(out)
    assert len(tokens["structures"]) == 1
    (tmp_path / "tokens.json").write_text(out)
    dash = tmp_path / "-"  # a directory named '-' is not where '--out -' writes: its files are no reason to refuse
    dash.mkdir()
    (dash / f"{tokens['structures'][0]['name']}.pdb").write_text("another file\n")
    code, out, err = _run(["detokenize", "tokens.json", "--weights", str(weights), "--out", "-"], capsys)
    assert code == 0, err
    assert [p.read_text() for p in dash.iterdir()] == ["another file\n"]
    shutil.rmtree(dash)  # (the fixture checks that nothing named '-' is written)
    assert len(_structure(out, tmp_path)) > 0 and "-> standard output" in err
    code, out, err = _run(["round-trip", str(STRUCTURE), "--weights", str(weights), "--out", "-"], capsys)
    assert code == 0, err
    assert len(_structure(out, tmp_path)) > 0 and "backbone RMSD" in err


def test_a_structure_pdb_cannot_hold_says_how_to_get_mmcif_on_stdout(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Standard output defaults to PDB; a chain id of two characters does not fit it. Before, the error said only
    "write mmCIF (.cif)", which no file name given as '-' can do: it now names the way (--format cif, or for
    round-trip, which prints PDB only, a .cif file)."""
    chain = load_structure(TRP_CAGE).chains[0]
    dataclasses.replace(chain, chain_id="AA").write(tmp_path / "aa.cif")
    code, out, err = _run(["round-trip", "aa.cif", "--weights", str(weights), "--out", "-"], capsys)
    assert code == 2 and out == "" and "(on standard output: round-trip prints PDB only; give --out FILE.cif)" in err
    assert main(["tokenize-structure", "aa.cif", "--weights", str(weights), "--out", "aa.json"]) == 0
    code, out, err = _run(["detokenize", "aa.json", "--weights", str(weights), "--out", "-"], capsys)
    assert code == 2 and out == "" and "(on standard output: give --format cif)" in err
    code, out, err = _run(["detokenize", "aa.json", "--weights", str(weights), "--out", "-", "--format", "cif"], capsys)
    assert code == 0 and [c for c, _, _ in _structure(out, tmp_path, ".cif").chain_segments()] == ["AA"]
    (tmp_path / "in.fasta").write_text(f">x chains=AA\n{SEQ}\n")
    code, out, err = _run(["fold", "in.fasta", "--weights", str(weights), *FAST, "-o", "-"], capsys)
    assert code == 2 and out == "" and "(on standard output: give --format cif)" in err


def test_detokenize_dash_refusals(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(STRUCTURE), str(TRP_CAGE)]
    assert main(["tokenize-structure", *files, "--weights", str(weights), "--out", "two.json", "--quiet"]) == 0
    code, out, err = _run(["detokenize", "two.json", "--weights", str(weights), "--out", "-"], capsys)
    assert code == 2 and out == "" and "--out -: two.json holds 2 structures; standard output takes one" in err
    args = ["detokenize", "two.json", "--weights", str(weights), "--out", "dir", "--confidence", "-"]
    code, out, err = _run(args, capsys)
    assert code == 2 and "--confidence -: detokenize writes the confidence JSON" in err and "give a path" in err


def test_featurize_json_dash_moves_the_summary_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["featurize", str(ZIPPER), "--json", "-"], capsys)
    assert code == 0, err
    assert [c["chain_id"] for c in json.loads(out)["chains"]] == ["A", "B"] and "dssp" in err


# --------------------------------------------------------------------------------------------- refused, named
@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["embed", "{fasta}", "-o", "-"], "-o -: embed writes a directory of .npy files or a .safetensors file"),
        (["generate", "--length", "8", "-o", "-"], "-o -: generate writes a directory"),
        (["convert", "{fasta}", "-"], "OUT -: convert writes a directory of weights"),
        (["calibrate-tokenizer", "{fasta}", "--out", "-"], "--out -: calibrate-tokenizer writes a tokenizer directory"),
        (["build-function-vocab", "{fasta}", "-"], "OUT -: build-function-vocab writes a vocabulary directory"),
    ],
)
def test_binary_and_directory_outputs_refuse_dash(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n")
    args = [part.format(fasta=fasta) for part in command]
    if command[0] in ("embed", "generate"):
        args += ["--weights", str(weights), "--quiet"]
    code, out, err = _run(args, capsys)
    assert code == 2 and out == ""
    assert message in err and "give a path (standard output takes text results only)" in err


@pytest.mark.parametrize("command", ["convert", "build-function-vocab"])
def test_dot_slash_dash_is_a_directory_not_refused_as_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """``./-`` names a directory called ``-``. Before, these commands read OUT through pathlib, which drops the ``./``,
    and refused it as standard output; now the run goes on (here to the missing input, named)."""
    code, out, err = _run([command, "missing.pth", "./-"], capsys)
    assert code == 2 and out == "" and "standard output" not in err and "missing.pth" in err


def test_dash_with_standard_output_closed_is_one_line(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started with standard output closed (``>&-``: Python's sys.stdout is None), a result for '-' ended in
    "internal error: AttributeError ... please report it"; it is now an error saying so, exit status 2."""
    monkeypatch.setattr("sys.stdout", None)
    code, _, err = _run(["featurize", str(ZIPPER), "--json", "-", "--quiet"], capsys)
    assert code == 2 and "openesm3 featurize: error: standard output is closed" in err
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n")
    code, _, err = _run(["score", str(fasta), "--weights", str(weights), "--quiet"], capsys)  # a table without -o
    assert code == 2 and "openesm3 score: error: standard output is closed" in err
