"""Long commands stopped part way (Ctrl-C, SIGTERM, an error in a later batch) keep every result finished before:
each batch's files are written as it finishes and the files gathering all results (FASTA, tables) are rewritten,
complete, with every result so far. Tiny random networks, as in test_cli_tasks.py; a model call is made to raise
on the batch after the first."""

from __future__ import annotations

import importlib
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from openesm3.cli.main import main
from openesm3.protein_io import read_fasta
from tests.task_testing import FAST, TRP_CAGE, ZIPPER


def stop_at_call(monkeypatch: pytest.MonkeyPatch, target: str, call: int, stop: BaseException) -> None:
    """Make the function ``target`` (``module.function``) raise ``stop`` when it is called for the ``call``-th time."""
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real, calls = getattr(module, name), []

    def stopping(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise stop
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, stopping)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# -------------------------------------------------------------------------------------------------------- generate
GENERATE_PROMPTS = ">long\nMK____IAKQ___SFVK\n>short\nGS____\n>full\nMKTAYIAK\n"


def test_generate_gives_the_same_files_with_any_batch_size(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A batch now goes through every track before the next starts; the designs must not depend on how prompts are
    batched (one prompt has no sequence to generate, so the batches of each track differ)."""
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(GENERATE_PROMPTS)
    outputs = []
    for batch_size in ("1", "8"):
        out = tmp_path / batch_size
        assert main(["generate", "--prompt", str(prompts), "-o", str(out), "--batch-size", batch_size,
                     "--weights", str(weights), *FAST]) == 0  # fmt: skip
        outputs.append(_files(out))
    capsys.readouterr()
    assert len(outputs[0]) == 3 + 2 and outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("stop", "status", "said"),
    [(KeyboardInterrupt(), 130, "interrupted"), (RuntimeError("out of memory"), 1, "internal error")],
)
def test_an_interrupted_generate_keeps_the_designs_done(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    stop: BaseException, status: int, said: str,
) -> None:  # fmt: skip
    """generate wrote every file once all designs were done: a night's run stopped at 95 % kept nothing."""
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">long\nMK____IAKQ___SFVK\n>short\nGS____\n")
    full = tmp_path / "full"
    args = ["generate", "--prompt", str(prompts), "--batch-size", "1", "--weights", str(weights), *FAST]
    assert main([*args, "-o", str(full)]) == 0
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.tasks.generate", 3, stop)  # two tracks per batch
    out = tmp_path / "stopped"
    assert main([*args, "-o", str(out)]) == status
    err = capsys.readouterr().err
    assert f"openesm3 generate: kept 1 of 2 design(s) in {out} (designs.fasta, summary.tsv, <id>.pdb)" in err
    assert f"openesm3 generate: {said}" in err
    kept, done = _files(out), _files(full)
    assert sorted(kept) == ["designs.fasta", "short_1.pdb", "summary.tsv"]  # no temporary file either
    assert kept["short_1.pdb"] == done["short_1.pdb"]
    assert [(r.id, r.sequence) for r in read_fasta(out / "designs.fasta")] == [
        (r.id, r.sequence) for r in read_fasta(full / "designs.fasta") if r.id == "short_1"
    ]
    summary = _lines(full / "summary.tsv")
    assert _lines(out / "summary.tsv") == [summary[0], *(line for line in summary if line.startswith("short_1\t"))]


@pytest.mark.parametrize("fails", [False, True])
def test_a_generate_stopped_between_a_designs_file_and_designs_fasta_brings_designs_fasta_up_to_date(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """The stop comes after the first design's .pdb is written but before designs.fasta: the files gathering every
    design are written then, so that they list every structure kept; a write that fails then is said, not hidden."""
    stop_at_call(monkeypatch, "openesm3.protein_io.write_fasta", 1, KeyboardInterrupt())
    if fails:
        stop_at_call(monkeypatch, "openesm3.protein_io.write_fasta", 2, OSError(28, "No space left on device"))
    out = tmp_path / "stopped"
    args = ["generate", "--length", "8", "-n", "2", "--batch-size", "1", "--weights", str(weights), *FAST]
    assert main([*args, "-o", str(out)]) == 130
    err = capsys.readouterr().err
    if fails:
        assert "openesm3 generate: error: writing the results done failed: [Errno 28] No space left on device" in err
        assert "kept" not in err and sorted(p.name for p in out.iterdir()) == ["design_1.pdb"]
    else:
        assert "openesm3 generate: kept 1 of 2 design(s)" in err
        assert sorted(p.name for p in out.iterdir()) == ["design_1.pdb", "designs.fasta", "summary.tsv"]
        assert [r.id for r in read_fasta(out / "designs.fasta")] == ["design_1"]
    assert err.endswith("openesm3 generate: interrupted\n")


def test_a_terminated_generate_says_so_and_keeps_nothing_when_nothing_was_done(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from openesm3.cli.main import _Terminated  # noqa: PLC0415

    stop_at_call(monkeypatch, "openesm3.generation.tasks.generate", 1, _Terminated(signal.SIGTERM))
    out = tmp_path / "stopped"
    assert main(["generate", "--length", "8", "-o", str(out), "--weights", str(weights), *FAST]) == 143
    err = capsys.readouterr().err
    assert "kept" not in err and err.endswith("openesm3 generate: terminated\n")
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- inverse-fold
def test_an_interrupted_inverse_fold_keeps_the_structures_done(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """inverse-fold wrote the FASTA and the summary once every structure was done: a stopped run kept nothing."""
    args = ["inverse-fold", str(ZIPPER), str(TRP_CAGE), "--chains", "A", "-n", "2", "--batch-size", "2",
            "--weights", str(weights), *FAST]  # fmt: skip
    full = tmp_path / "full"
    assert main([*args, "-o", f"{full}.fasta", "--summary", f"{full}.tsv"]) == 0
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.tasks.generate", 2, KeyboardInterrupt())  # one batch: trp-cage's
    out = tmp_path / "stopped"
    assert main([*args, "-o", f"{out}.fasta", "--summary", f"{out}.tsv"]) == 130
    err = capsys.readouterr().err
    assert f"inverse-fold: kept 2 sequence(s) for 1 of 2 structure(s) in {out}.fasta and {out}.tsv\n" in err
    assert err.endswith("openesm3 inverse-fold: interrupted\n")
    fasta = _lines(full.with_suffix(".fasta"))
    start = next(n for n, line in enumerate(fasta) if line.startswith(">localunfolding"))
    assert _lines(out.with_suffix(".fasta")) == fasta[start:]  # the second structure's records, all of them
    summary = _lines(full.with_suffix(".tsv"))
    assert _lines(out.with_suffix(".tsv")) == [summary[0], *(s for s in summary if s.startswith("localunfolding"))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.fasta", "full.tsv", "stopped.fasta", "stopped.tsv"]


# ------------------------------------------------------------------------------------------------ predict-function
@pytest.mark.parametrize("suffix", [".json", ".tsv"])
def test_an_interrupted_predict_function_keeps_the_proteins_done(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    suffix: str,
) -> None:  # fmt: skip
    """predict-function wrote its table once every protein was done: a stopped run kept nothing."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">long\nMKTAYIAKQRQISF\n>short\nMKTAYIAK\n")
    args = ["predict-function", str(fasta), "--batch-size", "1", "--vocabulary-dir", str(vocab),
            "--temperature", "1", "--weights", str(weights), *FAST]  # fmt: skip
    full, out = tmp_path / f"full{suffix}", tmp_path / f"stopped{suffix}"
    assert main([*args, "-o", str(full)]) == 0
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.tasks.generate", 2, KeyboardInterrupt())
    assert main([*args, "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"predict-function: kept the predictions for 1 of 2 protein(s) in {out}\n" in err
    if suffix == ".json":
        done = json.loads(full.read_text())
        assert json.loads(out.read_text()) == [p for p in done if p["id"] == "short"] and done[1]["annotations"]
    else:
        table = _lines(full)
        assert _lines(out) == [table[0], *(row for row in table if row.startswith("short\t"))] and len(table) > 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.fasta", full.name, out.name])


# ----------------------------------------------------------------------------------------------------------- embed
@pytest.mark.parametrize("output", ["emb", "emb.safetensors"])
def test_an_interrupted_embed_keeps_an_index_or_file_of_the_embeddings_done(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """embed wrote index.tsv, and a .safetensors file, only at the end: a stopped run left .npy files that no index
    named, or nothing at all."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">short\nMKTAYIAK\n>long\nMKTAYIAKQRQISF\n")  # batches go longest first
    args = ["embed", str(fasta), "--batch-size", "1", "--weights", str(weights), "--quiet"]
    full, out = tmp_path / "full" / output, tmp_path / "stopped" / output
    assert main([*args, "-o", str(full)]) == 0
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.embedding.embed_batch", 2, KeyboardInterrupt())
    assert main([*args, "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"openesm3 embed: kept 1 of 2 protein(s) in {out}\n" in err and err.endswith("embed: interrupted\n")
    if output.endswith(".safetensors"):
        assert sorted(p.name for p in out.parent.iterdir()) == [output]
        kept, done = load_file(str(out)), load_file(str(full))
        assert sorted(kept) == ["long", "long.mean"] and all((kept[k] == done[k]).all() for k in kept)
    else:
        assert sorted(p.name for p in out.iterdir()) == ["index.tsv", "long.mean.npy", "long.npy"]
        index = _lines(full / "index.tsv")
        assert _lines(out / "index.tsv") == index[:-1] and index[-1].startswith("short\t")
        assert all((out / name).read_bytes() == (full / name).read_bytes() for name in ("long.npy", "long.mean.npy"))


# ----------------------------------------------------------------------------------------------------------- score
@pytest.mark.parametrize(
    ("inputs", "options", "kept"),
    [
        # PLL: one pass per protein (batch >= length); the first protein's row is kept.
        (">one\nMNLTELKNTP\n>two\nGGSSAKMKTA\n", ["--batch-size", "16"], ["one"]),
        # Variants: one pass per position set; A3G (wrong wild type) and WT need no pass, so they are final at once.
        (">wt\nMNLTELKNTP\n", ["--batch-size", "1", "--mutations", "L3G", "A3G", "T4A", "WT", "N2A"],
         ["L3G", "A3G", "WT"]),
    ],
)  # fmt: skip
def test_an_interrupted_score_keeps_the_scores_done(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    inputs: str, options: list[str], kept: list[str],
) -> None:  # fmt: skip
    """score wrote its table once everything was scored: a stopped PLL run or DMS scan kept nothing."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(inputs)
    args = ["score", str(fasta), *options, "--weights", str(weights), "--quiet"]
    full, out = tmp_path / "full.tsv", tmp_path / "stopped.tsv"
    assert main([*args, "-o", str(full)]) in (0, 1)
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.scoring.sequence_log_probs", 2, KeyboardInterrupt())
    assert main([*args, "-o", str(out)]) == 130
    err = capsys.readouterr().err
    what = "the scores of 1 of 2 protein(s)" if len(kept) == 1 else "3 of 5 variant(s)"
    assert f"openesm3 score: kept {what} in {out}\n" in err and err.endswith("openesm3 score: interrupted\n")
    table = _lines(full)
    assert _lines(out) == [table[0], *(row for row in table if row.split("\t")[0] in kept)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.tsv", "in.fasta", "stopped.tsv"]
