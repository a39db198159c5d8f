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


# ------------------------------------------------------------------------------------------- input order is kept
# Batches go shortest first; the files gathering every result list them in input order all the same.
LONG_FIRST = ">long\nMKTAYIAKQRQISFVK\n>short\nGSAKMK\n>mid\nMKTAYIAKQR\n"


def _ids(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in _lines(path)[1:]]


def test_generate_lists_the_designs_in_input_order(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">long\nMK____IAKQ___SFVK\n>short\nGS____\n>mid\nMKTA____IA\n")
    out = tmp_path / "out"
    assert main(["generate", "--prompt", str(prompts), "-o", str(out), "--batch-size", "1",
                 "--weights", str(weights), *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    assert [r.id for r in read_fasta(out / "designs.fasta")] == ["long_1", "short_1", "mid_1"]
    assert _ids(out / "summary.tsv") == ["long_1", "short_1", "mid_1"]


def test_fold_and_predict_function_list_the_proteins_in_input_order(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(LONG_FIRST)
    common = [str(fasta), "--batch-size", "1", "--weights", str(weights), *FAST]
    assert main(["fold", *common, "-o", str(tmp_path / "fold")]) == 0
    assert _ids(tmp_path / "fold" / "summary.tsv") == ["long", "short", "mid"]
    out = tmp_path / "f.json"
    assert main(["predict-function", *common, "--vocabulary-dir", str(vocab), "-o", str(out)]) == 0
    assert [p["id"] for p in json.loads(out.read_text())] == ["long", "short", "mid"]
    capsys.readouterr()


def test_inverse_fold_lists_the_structures_in_input_order(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """ZIPPER (31 residues) before TRP_CAGE (20): the shorter one is designed first, written second."""
    out = tmp_path / "out"
    assert main(["inverse-fold", str(ZIPPER), str(TRP_CAGE), "--chains", "A", "--batch-size", "1",
                 "-o", f"{out}.fasta", "--summary", f"{out}.tsv", "--weights", str(weights), *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    structures = [r.id.rsplit("_", 1)[0] for r in read_fasta(out.with_suffix(".fasta"))]
    assert structures == ["2ZTA", "localunfolding__trp-cage-cage__2JOF_A"]
    assert list(dict.fromkeys(_ids(out.with_suffix(".tsv")))) == structures


# ------------------------------------------------------------------------------- stops inside the writes; stdout
def test_an_inverse_fold_stopped_between_its_fasta_and_its_summary_writes_the_summary(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes once the FASTA of the first structure is written, as its summary is: the summary of what the
    FASTA holds is written then, as the kept line says."""
    stop_at_call(monkeypatch, "openesm3.cli.common.write_table", 1, KeyboardInterrupt())
    out = tmp_path / "stopped"
    assert main(["inverse-fold", str(ZIPPER), str(TRP_CAGE), "--chains", "A", "--batch-size", "1", "-o",
                 f"{out}.fasta", "--summary", f"{out}.tsv", "--weights", str(weights), *FAST]) == 130  # fmt: skip
    assert "kept 1 sequence(s) for 1 of 2 structure(s)" in capsys.readouterr().err
    names = [r.id for r in read_fasta(out.with_suffix(".fasta"))]
    assert names == ["localunfolding__trp-cage-cage__2JOF_A_1"]
    assert [line.split("\t")[:2] for line in _lines(out.with_suffix(".tsv"))[1:]] == [
        ["localunfolding__trp-cage-cage__2JOF_A", "1"],
        ["localunfolding__trp-cage-cage__2JOF_A", "mean"],
    ]


def test_a_predict_function_stopped_while_writing_keeps_every_protein_done(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes while the second batch's -o file is written: the file is written then with both proteins done,
    as the kept line says, not left with the first only."""
    stop_at_call(monkeypatch, "openesm3.utils.atomic.write_text_output", 2, KeyboardInterrupt())
    fasta = tmp_path / "in.fasta"
    fasta.write_text(LONG_FIRST)
    out = tmp_path / "f.json"
    assert main(["predict-function", str(fasta), "--batch-size", "1", "--vocabulary-dir", str(vocab), "-o", str(out),
                 "--weights", str(weights), *FAST]) == 130  # fmt: skip
    assert "kept the predictions for 2 of 3 protein(s)" in capsys.readouterr().err
    assert [p["id"] for p in json.loads(out.read_text())] == ["short", "mid"]


def test_tables_on_standard_output_come_at_the_end_and_a_stop_keeps_no_file(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """inverse-fold without --summary and predict-function without -o print their table on stdout once done; a
    stopped predict-function without -o has kept nothing (no file, no 'kept' line)."""
    assert main(["inverse-fold", str(TRP_CAGE), "-n", "2", "-o", str(tmp_path / "d.fasta"),
                 "--weights", str(weights), *FAST]) == 0  # fmt: skip
    rows = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()]
    name = "localunfolding__trp-cage-cage__2JOF_A"
    assert rows == [["id", "sample"], [name, "1"], [name, "2"], [name, "mean"]]
    fasta = tmp_path / "in.fasta"
    fasta.write_text(LONG_FIRST)
    args = ["predict-function", str(fasta), "--batch-size", "1", "--vocabulary-dir", str(vocab),
            "--weights", str(weights), *FAST]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["id", "label", "start", "end"] and len(lines) > 1
    stop_at_call(monkeypatch, "openesm3.generation.tasks.generate", 2, KeyboardInterrupt())
    assert main(args) == 130
    captured = capsys.readouterr()
    assert "kept" not in captured.err and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.fasta", "in.fasta"]


def test_a_scan_stopped_before_any_variant_was_scored_keeps_nothing(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "L3" is no variant: its error is final before any pass, but it is no score; a stop at the first pass has kept
    nothing."""
    stop_at_call(monkeypatch, "openesm3.generation.scoring.sequence_log_probs", 1, KeyboardInterrupt())
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">wt\nMNLTELKNTP\n")
    out = tmp_path / "s.tsv"
    assert main(["score", str(fasta), "--mutations", "L3", "L3G", "-o", str(out), "--weights", str(weights),
                 "--quiet"]) == 130  # fmt: skip
    err = capsys.readouterr().err
    assert "kept" not in err and err.endswith("openesm3 score: interrupted\n") and not out.exists()


def test_an_interrupted_wt_marginal_scan_keeps_what_needed_no_pass(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--method wt-marginal scores a scan in one pass: a stop there keeps the variants final before it (a wrong wild
    type, the wild type itself), as a masked-marginal scan does."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">wt\nMNLTELKNTP\n")
    args = ["score", str(fasta), "--method", "wt-marginal", "--mutations", "L3G", "A3G", "T4A", "WT", "N2A",
            "--weights", str(weights), "--quiet"]  # fmt: skip
    full, out = tmp_path / "full.tsv", tmp_path / "stopped.tsv"
    assert main([*args, "-o", str(full)]) == 1
    capsys.readouterr()
    stop_at_call(monkeypatch, "openesm3.generation.scoring.sequence_log_probs", 1, KeyboardInterrupt())
    assert main([*args, "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"openesm3 score: kept 2 of 5 variant(s) in {out}\n" in err and err.endswith("openesm3 score: interrupted\n")
    table = _lines(full)
    assert _lines(out) == [table[0], *(row for row in table if row.split("\t")[0] in ("A3G", "WT"))]


def test_fold_and_embed_bring_their_index_up_to_date_after_every_batch(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed outright (no chance to write anything more) still has a summary / index.tsv that lists every
    file written before: each batch's files are followed by the table of all of them so far, in input order."""
    import openesm3.generation.embedding as embedding  # noqa: PLC0415
    import openesm3.generation.tasks as tasks  # noqa: PLC0415

    fasta = tmp_path / "in.fasta"
    fasta.write_text(LONG_FIRST)  # batches: short, mid, long
    seen: list[list[str] | None] = []

    def watching(real: Any, table: Path) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.append(_ids(table) if table.exists() else None)
            return real(*args, **kwargs)

        return call

    out = tmp_path / "fold"
    monkeypatch.setattr(tasks, "generate", watching(tasks.generate, out / "summary.tsv"))
    assert main(["fold", str(fasta), "-o", str(out), "--batch-size", "1", "--weights", str(weights), *FAST]) == 0
    assert seen == [None, ["short"], ["short", "mid"]] and _ids(out / "summary.tsv") == ["long", "short", "mid"]
    seen.clear()
    emb = tmp_path / "emb"
    monkeypatch.setattr(embedding, "embed_batch", watching(embedding.embed_batch, emb / "index.tsv"))
    assert main(["embed", str(fasta), "-o", str(emb), "--batch-size", "1", "--weights", str(weights), "--quiet"]) == 0
    assert seen[0] is None and seen[1] is not None and seen[1][-1] == "long"  # embed goes longest first
    capsys.readouterr()


@pytest.mark.parametrize(
    ("command", "target", "output"),
    [
        ("fold", "openesm3.generation.tasks.generate", "fold"),
        ("embed", "openesm3.generation.embedding.embed_batch", "emb"),
        ("score", "openesm3.generation.scoring.sequence_log_probs", "s.tsv"),
    ],
)
def test_a_run_stopped_in_its_first_batch_says_nothing_was_kept(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: str, target: str, output: str,
) -> None:  # fmt: skip
    """No 'kept 0 of 2' line: a stop before the first result is only 'interrupted'."""
    stop_at_call(monkeypatch, target, 1, KeyboardInterrupt())
    fasta = tmp_path / "in.fasta"
    fasta.write_text(LONG_FIRST)
    options = [*FAST] if command == "fold" else ["--quiet"]
    argv = [command, str(fasta), "-o", str(tmp_path / output), "--batch-size", "1", "--weights", str(weights)]
    assert main([*argv, *options]) == 130
    assert capsys.readouterr().err == f"openesm3 {command}: interrupted\n"


@pytest.mark.parametrize("command", ["generate", "predict-function", "inverse-fold"])
def test_a_batch_whose_last_item_failed_still_writes_the_others(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:  # fmt: skip
    """One batch whose last item fails after its generation (generate, predict-function: short, mid, long;
    inverse-fold: the structures in input order): the files gathering the results are written with the others."""
    import openesm3.generation.design as design_module  # noqa: PLC0415
    import openesm3.generation.tasks as tasks  # noqa: PLC0415
    from openesm3.errors import InputError  # noqa: PLC0415

    # _finish(bundle, prompt, ...), _annotated(bundle, vocabulary, protein, ...), _inverse_folded(bundle, protein, ...)
    module, name, place, last = {
        "generate": (design_module, "_finish", 1, "long"),
        "predict-function": (tasks, "_annotated", 2, "long"),
        "inverse-fold": (tasks, "_inverse_folded", 1, "localunfolding"),
    }[command]
    real = getattr(module, name)

    def failing_long(*args: Any) -> Any:
        protein = args[place]
        return InputError("protein 'long': made to fail") if protein.name.startswith(last) else real(*args)

    monkeypatch.setattr(module, name, failing_long)
    inputs = tmp_path / "in.fasta"
    if command == "generate":
        inputs.write_text(">long\nMK____IAKQ___SFVK\n>short\nGS____\n>mid\nMKTA____IA\n")
        argv = ["generate", "--prompt", str(inputs), "-o", str(tmp_path / "o")]
    elif command == "predict-function":
        inputs.write_text(LONG_FIRST)
        argv = ["predict-function", str(inputs), "--vocabulary-dir", str(vocab), "-o", str(tmp_path / "f.json")]
    else:
        argv = ["inverse-fold", str(ZIPPER), str(TRP_CAGE), "--chains", "A", "-o", str(tmp_path / "d.fasta"),
                "--summary", str(tmp_path / "d.tsv")]  # fmt: skip
    assert main([*argv, "--weights", str(weights), *FAST]) == 1
    assert "protein 'long': made to fail" in capsys.readouterr().err
    if command == "generate":
        assert [r.id for r in read_fasta(tmp_path / "o" / "designs.fasta")] == ["short_1", "mid_1"]
    elif command == "predict-function":
        assert [p["id"] for p in json.loads((tmp_path / "f.json").read_text())] == ["short", "mid"]
    else:
        assert [r.id for r in read_fasta(tmp_path / "d.fasta")] == ["2ZTA_1"]
        assert {line.split("\t")[0] for line in _lines(tmp_path / "d.tsv")[1:]} == {"2ZTA"}


def test_a_long_scan_rewrites_its_table_as_it_goes(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A variant scan rewrites -o with the scores so far once the rewrite interval has passed, not only at the end
    (a run killed outright keeps them): a clock that moves 11 s per reading makes every pass due for a rewrite."""
    import types  # noqa: PLC0415

    import openesm3.cli.score as score  # noqa: PLC0415
    import openesm3.generation.scoring as scoring  # noqa: PLC0415

    clock = iter(range(0, 10**6, 11))
    monkeypatch.setattr(score, "time", types.SimpleNamespace(monotonic=lambda: float(next(clock))))
    out, seen = tmp_path / "s.tsv", []
    real = scoring.sequence_log_probs

    def watching(*args: Any, **kwargs: Any) -> Any:
        seen.append(len(_lines(out)) - 1 if out.exists() else None)  # rows in the table before this pass
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "sequence_log_probs", watching)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">wt\nMNLTELKNTP\n")
    assert main(["score", str(fasta), "--mutations", "L3G", "T4A", "N2A", "--batch-size", "1", "-o", str(out),
                 "--weights", str(weights), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert seen == [None, 1, 2] and len(_lines(out)) == 4
