"""A rerun of a command that writes its results as it goes (generate, score, fold, ...) into the outputs of an earlier
run: it replaced them file by file, so stopped part way it left a partial designs.fasta or table where a complete one
was, beside a mix of new and old files. It now refuses before any work, naming the files, unless --overwrite; files
it would not write are no reason to refuse. Tiny random networks, as in test_cli_tasks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from openesm3.cli.main import main
from tests.integration.test_cli_interrupted import stop_at_call
from tests.task_testing import FAST, TRP_CAGE


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_stopped_rerun_of_generate_leaves_the_earlier_designs_whole(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">long\nMK____IAKQ___SFVK\n>short\nGS____\n")
    out = tmp_path / "designs"
    args = ["generate", "--prompt", str(prompts), "-o", str(out), "--batch-size", "1", "--weights", str(weights), *FAST]
    assert main(args) == 0
    before = _files(out)
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.tasks.generate", 3, KeyboardInterrupt())  # in the second batch
    assert main([*args, "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"openesm3 generate: error: -o {out}: 4 files already exist that this run would write ({out}/long_1.pdb, "
        f"{out}/short_1.pdb, {out}/designs.fasta and 1 more); give a new directory, or --overwrite to replace them (a "
        "stopped run would leave them part replaced)\n"
    )
    assert _files(out) == before
    # --overwrite: the earlier behaviour, files replaced as the run goes (here stopped in its second batch).
    assert main([*args, "--seed", "5", "--overwrite"]) == 130
    after = _files(out)
    assert sorted(after) == sorted(before) and after["long_1.pdb"] == before["long_1.pdb"]
    assert after["short_1.pdb"] != before["short_1.pdb"] and after["designs.fasta"].count(b">") == 1


@pytest.mark.parametrize("options", [["--batch-size", "16"], ["--batch-size", "1", "--mutations", "L3G", "T4A"]])
def test_a_stopped_rerun_of_score_leaves_the_earlier_table_whole(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    options: list[str],
) -> None:  # fmt: skip
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMNLTELKNTP\n" + ("" if "--mutations" in options else ">two\nGGSSAKMKTA\n"))
    table = tmp_path / "scores.tsv"
    args = ["score", str(fasta), *options, "-o", str(table), "--weights", str(weights), "--quiet"]
    assert main(args) == 0
    before = table.read_bytes()
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.scoring.sequence_log_probs", 2, KeyboardInterrupt())
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"openesm3 score: error: -o {table}: 1 file already exists that this run would write ({table}); give a new "
        "file, or --overwrite to replace it (a stopped run would leave it part replaced)\n"
    )
    assert table.read_bytes() == before
    assert main([*args, "--overwrite"]) == 130  # stopped at the second pass: the table holds the first
    assert len(table.read_text().splitlines()) < len(before.decode().splitlines())


def test_generate_refuses_only_for_the_files_it_would_write(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check names exactly this run's files: ids made safe (a/b -> a_b), made unique, with --format's suffix."""
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">a/b\nMK____\n>a/b\nGS____\n")  # designs a/b_1 and a/b_2_1: files a_b_1, a_b_2_1
    out = tmp_path / "designs"
    out.mkdir()
    for name in ("a_b_2_1.cif", "a_b_2.pdb", "a_b_1.pdb.bak", "notes.txt"):
        (out / name).write_text("mine\n")
    args = ["generate", "--prompt", str(prompts), "-o", str(out), "--weights", str(weights), *FAST]
    assert main([*args, "--format", "cif"]) == 2
    assert f"-o {out}: 1 file already exists that this run would write ({out}/a_b_2_1.cif); give a new directory, " \
        "or --overwrite to replace it" in capsys.readouterr().err  # fmt: skip
    assert main(args) == 0  # .pdb files: none of them there yet
    assert sorted(_files(out)) == ["a_b_1.pdb", "a_b_1.pdb.bak", "a_b_2.pdb", "a_b_2_1.cif", "a_b_2_1.pdb",
                                   "designs.fasta", "notes.txt", "summary.tsv"]  # fmt: skip
    assert all((out / name).read_text() == "mine\n" for name in ("a_b_2_1.cif", "a_b_2.pdb", "notes.txt"))


@pytest.mark.parametrize(
    ("command", "existing", "option"),
    [
        (["inverse-fold", str(TRP_CAGE), "-o", "{tmp}/d.fasta", "--summary", "{tmp}/d.tsv"], ["d.tsv"], "--summary"),
        (["inverse-fold", str(TRP_CAGE), "-o", "{tmp}/d.fasta", "--summary", "{tmp}/d.tsv"], ["d.fasta"], "-o"),
        (["predict-function", "{fasta}", "-o", "{tmp}/f.json", "--vocabulary-dir", "{vocab}"], ["f.json"], "-o"),
        (["embed", "{fasta}", "-o", "{tmp}/emb"], ["emb/two.npy", "emb/two.mean.npy"], "-o"),
        (["embed", "{fasta}", "-o", "{tmp}/emb", "--mean-only"], ["emb/one.mean.npy"], "-o"),
        (["embed", "{fasta}", "-o", "{tmp}/e.safetensors"], ["e.safetensors"], "-o"),
        (["fold", "{fasta}", "-o", "{tmp}/fold"], ["fold/summary.tsv"], "-o"),
        (["fold", "{fasta}", "-o", "{tmp}/fold", "--pae-plot", "--summary", "{tmp}/s.json"], ["fold/one.pae.png"],
         "-o"),
        (["fold", "{fasta}", "-o", "{tmp}/fold", "--summary", "{tmp}/s.json"], ["s.json"], "--summary"),
    ],
)  # fmt: skip
def test_the_other_progressive_commands_refuse_an_earlier_runs_files(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: list[str], existing: list[str], option: str,
) -> None:  # fmt: skip
    """Refused before any network is loaded (embed too: its .npy files were refused only once the trunk was loaded
    and every input encoded, since their names depended on which inputs encode); other files are no reason to
    refuse."""
    import openesm3.generation.bundle as bundle_module  # noqa: PLC0415

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was used")

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAK\n>two\nGSAKMKTA\n")
    argv = [a.format(tmp=tmp_path, fasta=fasta, vocab=vocab) for a in command]
    for name in existing:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("earlier\n")
    (tmp_path / "other.txt").write_text("earlier\n")
    for directory in ("emb", "fold"):  # another file in the output directory
        (tmp_path / directory).mkdir(exist_ok=True)
        (tmp_path / directory / "three.npy").write_text("earlier\n")
    monkeypatch.setattr(bundle_module.ModelBundle, "_get", no_model)
    assert main([*argv, "--weights", str(weights), *(["--quiet"] if "embed" in argv else FAST)]) == 2
    err = capsys.readouterr().err
    given = argv[argv.index(option) + 1]
    shown = ", ".join(str(tmp_path / name) for name in existing)
    what = "1 file already exists" if len(existing) == 1 else f"{len(existing)} files already exist"
    assert f": error: {option} {given}: {what} that this run would write ({shown}); give a new " in err
    assert "--overwrite to replace" in err
    assert all((tmp_path / name).read_text() == "earlier\n" for name in existing)


def test_fold_into_one_file_refuses_it_and_its_summary(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">one\nMKTAYIAK\n")
    out = tmp_path / "one.pdb"
    args = ["fold", str(fasta), "-o", str(out), "--weights", str(weights), *FAST]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert f"-o {out}: 2 files already exist that this run would write ({out}, {tmp_path}/one.summary.tsv); give a " \
        "new file, or --overwrite" in capsys.readouterr().err  # fmt: skip
    assert main([*args, "--overwrite"]) == 0


def test_a_refused_rerun_keeps_the_record_of_the_earlier_run(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal kept the earlier table but replaced its --record (the sizes and SHA-256 saying how the table was
    made) with the record of a run that wrote nothing. A new record file still gets the refused run's record."""
    import json  # noqa: PLC0415

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMNLTELKNTP\n")
    table, record = tmp_path / "scores.tsv", tmp_path / "run.json"
    args = ["score", str(fasta), "--mutations", "L3G", "-o", str(table), "--weights", str(weights), "--quiet"]
    assert main([*args, "--record", str(record)]) == 0
    before = record.read_bytes()
    assert json.loads(before)["outputs"][0]["path"] == str(table)
    capsys.readouterr()
    assert main([*args, "--record", str(record)]) == 2
    err = capsys.readouterr().err
    assert "1 file already exists that this run would write" in err
    assert f"openesm3 score: --record {record}: kept as it was (the record of the earlier run); this refused run " \
        "wrote nothing\n" in err  # fmt: skip
    assert record.read_bytes() == before
    other = tmp_path / "refused.json"
    assert main([*args, "--record", str(other)]) == 2
    written = json.loads(other.read_text())
    assert written["status"] == "error" and "already exists" in written["error"] and written["exit_code"] == 2
    assert written["outputs"] == []  # the earlier run's table, there, is not this run's


@pytest.mark.parametrize("output", ["emb", "e.safetensors"])
def test_an_embed_rerun_is_refused_before_the_trunk_is_loaded(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """A rerun of embed into the same OUT loaded the trunk (1.4B weights) and encoded every structure with the
    VQ-VAE before saying that its files were there; they are now all checked first."""
    import openesm3.generation.bundle as bundle_module  # noqa: PLC0415

    out = tmp_path / output
    args = ["embed", str(TRP_CAGE), "-o", str(out), "--weights", str(weights), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network was loaded")

    monkeypatch.setattr(bundle_module.ModelBundle, "_get", no_model)
    assert main(args) == 2
    stem = out / "localunfolding__trp-cage-cage__2JOF_A"
    written = [f"{stem}.npy", f"{stem}.mean.npy", f"{out}/index.tsv"] if output == "emb" else [str(out)]
    what = "1 file already exists" if output != "emb" else "3 files already exist"
    assert f"error: -o {out}: {what} that this run would write ({', '.join(written)}); give a new " in (
        capsys.readouterr().err
    )
