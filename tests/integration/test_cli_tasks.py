"""``openesm3 fold / inverse-fold / predict-function / generate`` end to end on tiny random networks saved in our
format (trunk, structure VQ-VAE, function decoder) and a tiny function vocabulary; real structures from
tests/data. Random weights: the outputs are meaningless; these tests check the pipeline, the files, the bookkeeping
(pLDDT in B-factors, recovery, motif kept exactly), determinism and per-item errors."""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openesm3.cli.main import main
from openesm3.generation.design import select_motif
from openesm3.generation.tasks import sequence_recovery
from openesm3.protein import Protein
from openesm3.protein_io import read_fasta
from tests.task_testing import FAST, KEYWORDS, TRP_CAGE, ZIPPER

Refused = Callable[[list[str], dict[str, Path], str], str]


@pytest.fixture
def refused(weights: Path, vocab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Refused:
    """``refused(command, names, task)`` runs ``command`` (its ``{name}`` parts filled from ``names``) with ``task``
    made to fail if it is reached; the command must stop with exit 2. Returns what it printed on stderr."""

    def run(command: list[str], names: dict[str, Path], task: str) -> str:
        module, function = task.rsplit(".", 1)

        def no_work(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError(f"{task} ran although the command should have stopped before any work")

        monkeypatch.setattr(importlib.import_module(f"openesm3.generation.{module}"), function, no_work)
        options = ["--weights", str(weights), "--quiet"]
        if command[0] != "score":
            options += ["--steps", "3"]
        if command[0] == "predict-function":
            options += ["--vocabulary-dir", str(vocab)]
        assert main([part.format(**names) for part in command] + options) == 2
        return capsys.readouterr().err

    return run


def _table(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(), delimiter="\t"))


def _b_factors(path: Path) -> np.ndarray:
    """The B-factor of every CA atom (PDB columns 61-66)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("ATOM") and line[12:16] == " CA "]
    return np.array([float(line[60:66]) for line in lines])


# ------------------------------------------------------------------------------------------------------------ fold
def test_fold_writes_structures_summary_and_pae(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAKQRQISFVKSHFS\n>bad\nMKJT\n>pair chains=H,L\nMKTAYI|GGSAK\n")
    out = tmp_path / "fold"
    args = ["fold", str(fasta), "-o", str(out), "--weights", str(weights), "--pae-plot", *FAST]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "record 'bad': sequence position 3: invalid character 'J'" in err and "1 of 3 protein(s) failed" in err
    rows = {r["id"]: r for r in _table(out / "summary.tsv")}
    assert set(rows) == {"one", "pair"} and rows["one"]["length"] == "20" and rows["pair"]["length"] == "12"
    one = Protein.from_structure(out / "one.pdb", plddt_from_b_factor=True)
    assert one.sequence == "MKTAYIAKQRQISFVKSHFS" and np.isfinite(one.coordinates[:, :3]).all()
    b = _b_factors(out / "one.pdb")
    assert b.shape == (20,) and (0 <= b).all() and (b <= 1).all() and b.std() > 0  # pLDDT, 0-1, per residue
    assert float(rows["one"]["mean_plddt"]) == pytest.approx(b.mean(), abs=0.006)
    assert 0 <= float(rows["one"]["ptm"]) <= 1
    pair = Protein.from_structure(out / "pair.pdb")
    assert pair.chain_ids == ("H", "L") and pair.sequence == "MKTAYI|GGSAK"
    for name in ("one", "pair"):
        assert (out / f"{name}.pae.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("bad*")) and not list(out.glob("*.tmp*"))
    # mmCIF by suffix, one record; greedy folding does not depend on the seed.
    cif = tmp_path / "one.cif"
    one_fasta = tmp_path / "one.fasta"
    one_fasta.write_text(">one\nMKTAYIAKQRQISFVKSHFS\n")
    assert main(["fold", str(one_fasta), "-o", str(cif), "--weights", str(weights), "--seed", "9", *FAST]) == 0
    folded = Protein.from_structure(cif)
    np.testing.assert_allclose(folded.coordinates[:, :3], one.coordinates[:, :3], atol=2e-3)


def test_an_interrupted_fold_keeps_the_structures_done(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fold wrote every file once the whole batch was folded: a run stopped at hour 4.9 of 5 kept nothing."""
    import openesm3.generation.tasks as tasks  # noqa: PLC0415

    real, calls = tasks.generate, []

    def stop_at_the_second_batch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "generate", stop_at_the_second_batch)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">long\nMKTAYIAKQRQISFVKSHFS\n>short\nMKTAYIAK\n")
    out = tmp_path / "fold"
    assert main(["fold", str(fasta), "-o", str(out), "--weights", str(weights), "--batch-size", "1", *FAST]) == 130
    err = capsys.readouterr().err
    assert f"openesm3 fold: kept 1 of 2 structure(s) in {out} (summary {out / 'summary.tsv'})\n" in err
    assert err.endswith("openesm3 fold: interrupted\n")
    assert sorted(p.name for p in out.iterdir()) == ["short.pdb", "summary.tsv"]  # the first batch's; no temporary
    assert Protein.from_structure(out / "short.pdb").sequence == "MKTAYIAK"
    assert [row["id"] for row in _table(out / "summary.tsv")] == ["short"]  # the summary of what was kept


def test_fold_without_matplotlib_or_weights(weights: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAK\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), "--pae-plot"]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
    trunk_only = tmp_path / "trunk"
    (trunk_only / "esm3").mkdir(parents=True)
    for f in (weights / "esm3").iterdir():
        (trunk_only / "esm3" / f.name).write_bytes(f.read_bytes())
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(trunk_only)]) == 2
    err = capsys.readouterr().err
    assert "esm3_structure_decoder_v0.pth" in err and "<- needed here" in err


def test_fold_to_one_gzipped_file_and_a_format_that_contradicts_the_name(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">one\nMKTAYIAKQR\n")
    out = tmp_path / "one.pdb.gz"  # one compressed file, not a directory of that name
    assert main(["fold", str(fasta), "-o", str(out), "--weights", str(weights), "--pae-plot", *FAST]) == 0
    assert out.is_file() and Protein.from_structure(out).sequence == "MKTAYIAKQR"
    assert (tmp_path / "one.summary.tsv").is_file() and (tmp_path / "one.pae.png").is_file()
    capsys.readouterr()
    assert main(["fold", str(fasta), "-o", str(tmp_path / "x.cif"), "--format", "pdb", "--weights", str(weights)]) == 2
    assert f"-o {tmp_path / 'x.cif'} names a cif file, but --format is pdb" in capsys.readouterr().err
    assert not (tmp_path / "x.cif").exists()


@pytest.mark.parametrize(
    ("name", "magic"),
    [("one.bcif", b"\x83"), ("one.ent", b"REMARK   6\nREMARK   6 openesm3"), ("one.mmcif.gz", b"\x1f")],
)
def test_fold_to_every_structure_suffix_the_writer_knows(
    weights: Path, tmp_path: Path, name: str, magic: bytes
) -> None:
    """``-o one.bcif`` (and ``.ent``, ``.mmcif``) made a directory of that name holding one/one.pdb: fold knew only
    .pdb and .cif of the suffixes the structure writer and readers take."""
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">one\nMKTAYIAKQR\n")
    out = tmp_path / name
    assert main(["fold", str(fasta), "-o", str(out), "--weights", str(weights), *FAST]) == 0
    assert out.is_file() and out.read_bytes().startswith(magic)
    assert Protein.from_structure(out).sequence == "MKTAYIAKQR"
    assert (tmp_path / "one.summary.tsv").is_file()
    folder = tmp_path / "dir"
    assert main(["fold", str(fasta), "-o", str(folder), "--format", "bcif", "--weights", str(weights), *FAST]) == 0
    assert Protein.from_structure(folder / "one.bcif").sequence == "MKTAYIAKQR"


def test_fold_progress_counts_a_protein_too_long_for_the_model(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A record refused for its length is done with as far as the progress bar goes: the bar ended at 50% 1/2, as if
    the work had stopped halfway."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAKQR\n>long\n" + "A" * 2047 + "\n")
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), "--steps", "3"]) == 1
    err = capsys.readouterr().err
    assert "protein 'long': 2047 residues do not fit the model's 2046-residue limit" in err
    assert [line for line in err.splitlines() if line.startswith("fold:")][-1].startswith("fold: 100% 2/2 ["), err


def test_fold_counts_the_chain_breaks_of_a_complex_over_the_length_limit(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Two chains of 1023 residues make 2046 residues, under the limit, but the chain break takes a position too; the
    error said '2047 residues', more than the record has."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">pair\n" + "A" * 1023 + "|" + "G" * 1023 + "\n")
    assert main(["fold", str(fasta), "-o", str(tmp_path / "p"), "--weights", str(weights), *FAST]) == 2
    assert (
        "protein 'pair': 2047 positions (2046 residues and 1 chain break(s)) do not fit the model's 2046-position "
        "limit (2048 tokens with BOS/EOS)" in capsys.readouterr().err
    )


def test_generate_progress_counts_a_track_with_nothing_to_generate(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Prompts with their whole sequence given have no sequence to generate: that track is done with at once; the bar
    ended at '50% 2/4'."""
    prompts = tmp_path / "full.fasta"
    prompts.write_text(">p\nMKTAYIAKQR\n>q\nMKTAYIAKQRGG\n")
    assert main(["generate", "--prompt", str(prompts), "-o", str(tmp_path / "o"), "--weights", str(weights),
                 "--steps", "3"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    bars = [line for line in err.splitlines() if line.startswith("generate:")]
    assert bars[-1].startswith("generate: 100% 4/4 ["), err


def test_generate_reports_prompts_too_long_for_the_model_in_input_order(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Prompts refused for their length never reach a batch: each is reported (in input order), counted done on the
    bar for every track, and a run where none could be designed ends with 2."""
    prompts = tmp_path / "in.fasta"
    prompts.write_text(">big\n" + "A" * 2047 + "\n>ok\nMK____\n>huge\n" + "G" * 2048 + "\n")
    args = ["generate", "--prompt", str(prompts), "--weights", str(weights), "--steps", "3"]
    assert main([*args, "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if "do not fit the model" in line]
    assert len(refused) == 2 and "'big_1'" in refused[0] and "'huge_1'" in refused[1], err
    assert "2 of 3 design(s) failed" in err
    assert [line for line in err.splitlines() if line.startswith("generate:")][-1].startswith("generate: 100% 6/6 [")
    assert [r.id for r in read_fasta(tmp_path / "o" / "designs.fasta")] == ["ok_1"]
    prompts.write_text(">big\n" + "A" * 2047 + "\n")
    assert main([*args, "-o", str(tmp_path / "none")]) == 2
    assert "do not fit the model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- inverse-fold
def test_inverse_fold_recovery_and_bad_item(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    no_xyz = tmp_path / "noxyz.json"
    Protein(sequence="MKTAYIAK", name="noxyz").save(no_xyz)
    out = tmp_path / "designs.fasta"
    summary = tmp_path / "rec.tsv"
    args = ["inverse-fold", str(TRP_CAGE), str(no_xyz), str(ZIPPER), "--chains", "A", "-n", "2", "-o", str(out),
            "--summary", str(summary), "--weights", str(weights), *FAST]  # fmt: skip
    assert main(args) == 1
    assert "protein 'noxyz': has no coordinates" in capsys.readouterr().err
    records = read_fasta(out)
    natives = {"localunfolding__trp-cage-cage__2JOF_A": Protein.from_structure(TRP_CAGE),
               "2ZTA": Protein.from_structure(ZIPPER, chains=["A"])}  # fmt: skip
    assert [r.id for r in records] == [f"{n}_{k}" for n in natives for k in (1, 2)]
    rows = _table(summary)
    for record in records:
        native = natives[record.id.rsplit("_", 1)[0]]
        assert len(record.sequence) == len(native) and set(record.sequence) <= set("LAGVSERTIDPKQNFYMHWC")
        header = dict(field.split("=", 1) for field in record.description.split())
        expected = sequence_recovery(record.sequence, native.sequence)
        assert float(header["recovery"]) == pytest.approx(expected, abs=5e-5)
        assert header["chains"] == "A"
    zipper_rows = [r for r in rows if r["id"] == "2ZTA"]
    mean = np.mean([float(r["recovery"]) for r in zipper_rows if r["sample"] != "mean"])
    assert float(next(r for r in zipper_rows if r["sample"] == "mean")["recovery"]) == pytest.approx(mean, abs=1e-5)
    # Same seed, same sequences (prompt i's stream comes from the seed and i); another seed, other sequences.
    again = tmp_path / "again.fasta"
    args[args.index("-o") + 1] = str(again)
    args.append("--overwrite")  # the --summary file of the first run
    assert main(args) == 1
    assert again.read_text() == out.read_text()
    assert main([*args, "--seed", "1"]) == 1
    assert [r.sequence for r in read_fasta(again)] != [r.sequence for r in records]
    capsys.readouterr()
    assert main(["inverse-fold", str(ZIPPER), "-o", str(tmp_path / "q.fasta"), "--chains", "Q", "--weights",
                 str(weights)]) == 2  # fmt: skip
    assert "'Q'" in capsys.readouterr().err


def test_chains_of_a_json_complex_are_not_silently_ignored(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    # --chains selects chains of structure files; a JSON complex is not cut, so it must not be designed whole.
    complex_json = tmp_path / "zipper.json"
    Protein.from_structure(ZIPPER).save(complex_json)
    out = tmp_path / "designs.fasta"
    args = ["inverse-fold", str(complex_json), str(ZIPPER), "--chains", "A", "-o", str(out), "--weights", str(weights),
            *FAST]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "protein '2ZTA' has chain(s) A, B; --chains A selects chains of structure files only" in err
    assert [r.description.split()[-1] for r in read_fasta(out)] == ["chains=A"]  # the structure file's chain A
    # The JSON's own chains: nothing to select (into the same file: --overwrite).
    assert main([*args[:2], "--chains", "A,B", *args[5:], "--overwrite"]) == 0


def test_inverse_fold_of_a_ca_only_model_is_an_error_not_an_unconditional_sample(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_only = Protein.from_structure(TRP_CAGE)
    assert ca_only.coordinates is not None
    coordinates = np.full_like(ca_only.coordinates, np.nan)
    coordinates[:, 1] = ca_only.coordinates[:, 1]  # CA only: no residue has the N, CA, C frame the model reads
    ca_json = tmp_path / "ca.json"
    ca_only.replace(coordinates=coordinates, name="ca").save(ca_json)
    out = tmp_path / "designs.fasta"
    assert main(["inverse-fold", str(ca_json), "-o", str(out), "--weights", str(weights), *FAST]) == 2
    assert "protein 'ca': no residue has all of N, CA and C" in capsys.readouterr().err
    assert not out.exists()


def test_structures_with_the_same_name_get_distinct_design_ids(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    # e.g. ranked_0.pdb of two prediction runs: the FASTA ids and the table must tell them apart.
    for folder, source in (("run1", ZIPPER), ("run2", TRP_CAGE)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ranked_0.pdb.gz").write_bytes(source.read_bytes())
    out = tmp_path / "designs.fasta"
    summary = tmp_path / "rec.tsv"
    args = ["inverse-fold", str(tmp_path / "run1" / "ranked_0.pdb.gz"), str(tmp_path / "run2" / "ranked_0.pdb.gz"),
            "-n", "2", "-o", str(out), "--summary", str(summary), "--weights", str(weights), *FAST]  # fmt: skip
    assert main(args) == 0
    records = read_fasta(out)
    assert [r.id for r in records] == ["ranked_0_1", "ranked_0_2", "ranked_0_2_1", "ranked_0_2_2"]
    assert [len(r.sequence) for r in records] == [63, 63, 20, 20]
    means = [(r["id"], r["length"]) for r in _table(summary) if r["sample"] == "mean"]
    assert means == [("ranked_0", "63"), ("ranked_0_2", "20")]
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">p\nMK____\n>p\nGG____\n")
    gen = tmp_path / "gen"
    assert main(["generate", "--prompt", str(prompts), "-o", str(gen), "--weights", str(weights), *FAST]) == 0
    designs = read_fasta(gen / "designs.fasta")
    assert [(r.id, r.sequence[:2]) for r in designs] == [("p_1", "MK"), ("p_2_1", "GG")]


# ------------------------------------------------------------------------------------------------ predict-function
def test_predict_function_json_tsv_and_missing_resources(weights: Path, vocab: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAKQRQISFVKSHFS\n>bad\nMK1\n")
    out = tmp_path / "f.json"
    base = ["--weights", str(weights), "--vocabulary-dir", str(vocab), *FAST]
    mismatch = tmp_path / "mismatch.json"
    mismatch.write_text('{"format": "openesm3.protein", "version": 1, "name": "mm", "sequence": "MKTAY", '
                        '"secondary_structure": "HHH"}')  # fmt: skip
    assert main(["predict-function", str(fasta), str(mismatch), str(TRP_CAGE), "-o", str(out), *base]) == 1
    err = capsys.readouterr().err
    assert "record 'bad'" in err and "2 of 4 protein(s) failed" in err
    assert "protein 'mm': tracks disagree in length: sequence has 5, secondary_structure has 3" in err
    data = json.loads(out.read_text())
    assert [d["id"] for d in data] == ["one", "localunfolding__trp-cage-cage__2JOF_A"]
    labels = set(KEYWORDS) | {f"Entry {i} (IPR{i:06d})" for i in range(1, 6)}
    for entry in data:
        assert entry["annotations"], "random decoder: some annotation expected"
        for a in entry["annotations"]:
            assert a["label"] in labels and 1 <= a["start"] <= a["end"] <= entry["length"]
    tsv = tmp_path / "f.tsv"
    assert main(["predict-function", str(fasta), "-o", str(tsv), *base]) == 1
    rows = _table(tsv)
    assert [(r["label"], int(r["start"]), int(r["end"])) for r in rows] == [
        (a["label"], a["start"], a["end"]) for a in data[0]["annotations"]
    ]
    capsys.readouterr()
    empty = tmp_path / "empty_vocab"
    empty.mkdir()
    assert main(["predict-function", str(fasta), "--weights", str(weights), "--vocabulary-dir", str(empty)]) == 2
    assert "function vocabulary" in capsys.readouterr().err
    no_decoder = tmp_path / "nodec"
    (no_decoder / "esm3").mkdir(parents=True)
    for f in (weights / "esm3").iterdir():
        (no_decoder / "esm3" / f.name).write_bytes(f.read_bytes())
    assert main(["predict-function", str(fasta), "--weights", str(no_decoder), "--vocabulary-dir", str(vocab)]) == 2
    assert "esm3_function_decoder_v0.pth" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "task"), [
    (["predict-function", str(TRP_CAGE)], "tasks.predict_function"),
    (["generate", "--length", "8", "--track-order", "function,sequence"], "design.design"),
])  # fmt: skip
def test_a_function_vocabulary_of_another_decoder_stops_before_any_work(
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    task: str,
) -> None:
    """A vocabulary whose InterPro entries or keywords are not the function decoder's outputs (e.g. one made by
    build-function-vocab, given to the official decoder) is named up front, not as a shape error for each protein
    after the trunk has run."""
    from openesm3.tokenizers import FunctionVocabulary  # noqa: PLC0415
    from openesm3.tokenizers.build import write_function_vocabulary  # noqa: PLC0415
    from openesm3.tokenizers.vocabulary import InterProEntry  # noqa: PLC0415

    module, function = task.rsplit(".", 1)

    def no_work(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError(f"{task} ran although the command should have stopped before any work")

    monkeypatch.setattr(importlib.import_module(f"openesm3.generation.{module}"), function, no_work)
    for n_entries, n_keywords in [(3, 30), (5, 28)]:  # the decoder has 5 InterPro entries and 30 keywords
        keywords = KEYWORDS[:n_keywords]
        entries = tuple(InterProEntry(f"IPR{i:06d}", "Domain", f"Entry {i}") for i in range(1, n_entries + 1))
        other = FunctionVocabulary(keywords, np.full(n_keywords, 5.0), entries, {e.id: keywords[:2] for e in entries},
                                   np.ones((8, 8, n_keywords), np.float32))  # fmt: skip
        directory = tmp_path / f"other_{n_entries}_{n_keywords}"
        write_function_vocabulary(other, directory)
        argv = [*command, "-o", str(tmp_path / "out"), "--vocabulary-dir", str(directory), "--weights", str(weights)]
        assert main([*argv, *FAST]) == 2
        err = capsys.readouterr().err
        assert not (tmp_path / "out").exists()
        assert "the function decoder" in err and "predicts 5 InterPro entries and 30 keywords" in err
        assert f"{directory}" in err and f"has {n_entries} InterPro entries and {n_keywords} keywords" in err


# -------------------------------------------------------------------------------------------------------- generate
def test_generate_motif_scaffolding_keeps_the_motif(weights: Path, vocab: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "gen"
    args = ["generate", "-o", str(out), "--length", "30", "--motif", str(ZIPPER), "--motif-residues", "B5-12",
            "--motif-positions", "10", "--ss8", "HHHHH" + "_" * 25, "--keywords", "zinc,binding",
            "--track-order", "ss8,structure,sequence", "-n", "3", "--weights", str(weights),
            "--vocabulary-dir", str(vocab), *FAST]  # fmt: skip
    assert main(args) == 0
    motif = select_motif(Protein.from_structure(ZIPPER), "B5-12")
    designs = read_fasta(out / "designs.fasta")
    assert [d.id for d in designs] == ["design_1", "design_2", "design_3"]
    rows = _table(out / "summary.tsv")
    for record, row in zip(designs, rows):
        assert len(record.sequence) == 30 and record.sequence[9:17] == motif.sequence
        structure = Protein.from_structure(out / f"{record.id}.pdb")
        assert structure.sequence == record.sequence == row["sequence"]
        present = np.isfinite(motif.coordinates)
        np.testing.assert_allclose(structure.coordinates[9:17][present], motif.coordinates[present], atol=1e-3)
        assert np.isfinite(structure.coordinates[:, :3]).all() and float(row["motif_rmsd"]) >= 0
    # Deterministic by seed.
    again = tmp_path / "again"
    assert main([*args[:2], str(again), *args[3:]]) == 0
    assert (again / "designs.fasta").read_text() == (out / "designs.fasta").read_text()
    assert (again / "design_2.pdb").read_text() == (out / "design_2.pdb").read_text()
    assert main([*args[:2], str(again), *args[3:], "--seed", "3", "--overwrite"]) == 0
    assert (again / "designs.fasta").read_text() != (out / "designs.fasta").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--motif-positions", "25"], "8 residues at position 25 do not fit a design of length 30"),
        (["--motif-residues", "Z5-12"], "chain 'Z' is not in the file"),
        (["--motif-residues", "A30-40"], "chain A has no residue 32"),
        (["--ss8", "HHH"], "--ss8: 3 letters for a design of length 30"),
        (["--keywords", "zinc,flying"], "flying"),
    ],
)
def test_generate_bad_prompts(weights: Path, vocab: Path, tmp_path: Path, capsys, extra, message) -> None:  # noqa: ANN001
    args = ["generate", "-o", str(tmp_path / "g"), "--length", "30", "--motif", str(ZIPPER), "--motif-residues",
            "A5-12", "--weights", str(weights), "--vocabulary-dir", str(vocab), *FAST]  # fmt: skip
    for i in range(0, len(extra), 2):  # the option replaces the default one
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i : i + 2]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "g" / "designs.fasta").exists()


def test_generate_from_prompt_file_with_a_bad_record(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">masked\nMK____AY____GG\n>broken\nMK__J_\n>unconditional\n____________\n")
    out = tmp_path / "gen"
    args = ["generate", "--prompt", str(prompts), "-o", str(out), "-n", "2", "--weights", str(weights), *FAST]
    assert main(args) == 1
    assert "record 'broken'" in capsys.readouterr().err
    designs = {r.id: r.sequence for r in read_fasta(out / "designs.fasta")}
    assert sorted(designs) == ["masked_1", "masked_2", "unconditional_1", "unconditional_2"]
    for name in ("masked_1", "masked_2"):
        assert all(a == b for a, b in zip(designs[name], "MK____AY____GG") if b != "_")
        assert "_" not in designs[name] and (out / f"{name}.pdb").is_file()
    assert main([*args, "--length", "10"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    for ignored in (["--motif-positions", "3"], ["--name", "x"]):  # options of a prompt built from options
        assert main([*args, *ignored]) == 2
        assert "cannot be combined" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["fold", "generate"])
def test_help_names_the_summary_columns_that_are_written(
    command: str, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` lists summary.tsv's columns: the same ones, in the same order, as the file written."""
    fasta = tmp_path / "p.fasta"
    fasta.write_text(">p\nMK____AY\n")
    inputs = [str(fasta)] if command == "fold" else ["--prompt", str(fasta)]
    out = tmp_path / "out"
    assert main([command, *inputs, "-o", str(out), "--weights", str(weights), *FAST]) == 0
    header = (out / "summary.tsv").read_text().splitlines()[0].split("\t")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"summary.tsv ({', '.join(header)}" in text


def test_generate_a_function_track_without_the_vocabulary_stops_before_any_work(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import openesm3.generation.design  # noqa: PLC0415

    def no_work(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("designed although the function track cannot be decoded")

    monkeypatch.setattr(openesm3.generation.design, "design", no_work)
    (tmp_path / "empty").mkdir()
    args = ["generate", "--length", "8", "--track-order", "function,sequence", "-o", str(tmp_path / "g"),
            "--vocabulary-dir", str(tmp_path / "empty"), "--weights", str(weights), *FAST]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--track-order function needs the function vocabulary: function vocabulary: missing" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--length", "3000"], "--length 3000: 3000 residues do not fit the model's 2046-residue limit (2048 tokens"),
     (["--length", "3000", "--track-order", "function,sequence"], "--length 3000: 3000 residues do not fit"),
     (["--length", "8", "--keywords", "zinc,flying", "--track-order", "function,sequence"], "'flying'")],
)  # fmt: skip
def test_generate_checks_a_prompt_from_options_before_loading_any_model(
    weights: Path,
    vocab: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    extra,
    message,  # noqa: ANN001
) -> None:
    # the trunk is 5.6 GB: a design longer than its limit, or an unknown keyword, must stop before any load
    import openesm3.checkpoints.loading  # noqa: PLC0415

    def no_load(place, model_type, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise AssertionError(f"{model_type} loaded although the prompt is refused")

    monkeypatch.setattr(openesm3.checkpoints.loading, "load_model", no_load)
    args = ["generate", "-o", str(tmp_path / "g"), "--weights", str(weights), "--vocabulary-dir", str(vocab), *FAST]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err, err
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--temperature", "-1", "--temperature must be a finite number >= 0, got -1.0"),
     ("--temperature", "inf", "--temperature must be a finite number >= 0, got inf"),
     ("--top-p", "0", "--top-p must lie in (0, 1], got 0.0"),
     ("--top-p", "nan", "--top-p must lie in (0, 1], got nan")],
)  # fmt: skip
def test_bad_decoding_options_are_named_as_typed(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    out = tmp_path / "gen"
    assert main(["generate", "--length", "8", "-o", str(out), option, value, "--weights", str(weights), *FAST]) == 2
    assert f"openesm3 generate: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_out_of_range_is_a_one_line_error(weights: Path, tmp_path: Path, capsys, seed: str) -> None:  # noqa: ANN001
    out = tmp_path / "gen"
    assert main(["generate", "--length", "8", "-o", str(out), "--seed", seed, "--weights", str(weights), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"--seed must be an int in [0, 2**64), got {seed}" in err and "internal error" not in err


def test_generate_motif_positions_without_a_motif_is_an_error(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "gen"
    args = ["generate", "--length", "12", "--motif-positions", "5", "-o", str(out), "--weights", str(weights), *FAST]
    assert main(args) == 2
    assert "--motif-positions places a motif: give --motif FILE --motif-residues RANGE too" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------- output paths
@pytest.mark.parametrize(
    ("command", "task", "message"),
    [
        (["fold", "{fasta}", "-o", "{tmp}/two.pdb"], "tasks.fold", "-o {tmp}/two.pdb: one output file for 2 proteins"),
        (["fold", "{fasta}", "-o", "{file}"], "tasks.fold", "-o {file}: exists and is not a directory"),
        (["fold", "{fasta}", "-o", "{tmp}/f", "--summary", "{dir}"], "tasks.fold", "--summary {dir}: is a directory"),
        (["fold", "{fasta}", "-o", "{file}/f"], "tasks.fold", "-o {file}/f: {file} is not a directory"),
        (["inverse-fold", "{zipper}", "-o", "{dir}"], "tasks.inverse_fold", "-o {dir}: is a directory"),
        (["inverse-fold", "{zipper}", "-o", "{tmp}/x.fasta", "--summary", "{dir}"], "tasks.inverse_fold",
         "--summary {dir}: is a directory"),
        (["predict-function", "{fasta}", "-o", "{dir}"], "tasks.predict_function", "-o {dir}: is a directory"),
        (["generate", "--length", "10", "-o", "{file}"], "design.design", "-o {file}: exists and is not a directory"),
        (["score", "{fasta}", "-o", "{dir}"], "scoring.pseudo_log_likelihood", "-o {dir}: is a directory"),
        (["score", "{fasta}", "-o", "{file}/s.tsv"], "scoring.pseudo_log_likelihood", "{file} is not a directory"),
    ],
)  # fmt: skip
def test_an_unwritable_output_is_an_error_before_any_work(
    refused: Refused, tmp_path: Path, command: list[str], task: str, message: str
) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAKQR\n>two\nGGSAKLV\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("keep me\n")
    names = {"fasta": fasta, "tmp": tmp_path, "dir": tmp_path / "dir", "file": tmp_path / "file", "zipper": ZIPPER}
    err = refused(command, names, task)
    assert message.format(**names) in err and "Errno" not in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "keep me\n" and not any((tmp_path / "dir").iterdir())
    assert not (tmp_path / "f").exists()  # fold made its -o directory, then refused the --summary, leaving it empty


@pytest.mark.parametrize(
    ("command", "task", "message"),
    [
        (["fold", "{structs}/trp.pdb", "-o", "{structs}"], "tasks.fold", "-o {structs}/trp.pdb: is the input file"),
        (["fold", "{fasta}", "-o", "{tmp}/f", "--summary", "{fasta}"], "tasks.fold", "--summary {fasta}: is the input"),
        (["inverse-fold", "{structs}/trp.pdb", "-o", "{structs}/trp.pdb"], "tasks.inverse_fold",
         "-o {structs}/trp.pdb: is the input file"),
        (["predict-function", "{json}", "-o", "{json}"], "tasks.predict_function", "-o {json}: is the input file"),
        (["generate", "--prompt", "{structs}/designs.fasta", "-o", "{structs}"], "design.design",
         "-o {structs}/designs.fasta: is the input file"),
        (["score", "{fasta}", "--dms", "{dms}", "-o", "{dms}"], "scoring.masked_marginal_scores",
         "-o {dms}: is the input"),
        # Two outputs that are one file: the later one written replaced the other.
        (["fold", "{fasta}", "-o", "{tmp}/one.pdb", "--summary", "{tmp}/one.pdb"], "tasks.fold",
         "--summary {tmp}/one.pdb: is also the file of -o; give each output its own file"),
        (["fold", "{fasta}", "-o", "{tmp}/f", "--summary", "{tmp}/f/../f/one.pdb"], "tasks.fold",
         "--summary {tmp}/f/../f/one.pdb: is also the file of -o"),
        (["inverse-fold", "{structs}/trp.pdb", "-o", "{tmp}/d.fasta", "--summary", "{tmp}/d.fasta"],
         "tasks.inverse_fold", "--summary {tmp}/d.fasta: is also the file of -o"),
    ],
)  # fmt: skip
def test_an_output_that_is_an_input_is_an_error_before_any_work(
    refused: Refused, tmp_path: Path, command: list[str], task: str, message: str
) -> None:
    """``fold structures/*.pdb -o structures`` wrote the predictions over the experimental structures it read, and
    ``score wt.fasta --dms scan.csv -o scan.csv`` the scores over the scan: the user's files were lost."""
    structs = tmp_path / "structs"
    structs.mkdir()
    (structs / "trp.pdb").write_bytes(gzip.decompress(TRP_CAGE.read_bytes()))
    (structs / "designs.fasta").write_text(">p\nMK____AY\n")
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">one\nMKTAYIAKQR\n")
    json_file = tmp_path / "proteins.json"
    json_file.write_text(json.dumps([{"name": "one", "sequence": "MKTAYIAKQR"}]))
    dms = tmp_path / "scan.csv"
    dms.write_text("mutant,DMS_score\nM1A,0.5\nK2G,-1.0\n")
    names = {"structs": structs, "fasta": fasta, "json": json_file, "dms": dms, "tmp": tmp_path}
    before = {p: p.read_bytes() for p in (structs / "trp.pdb", structs / "designs.fasta", fasta, json_file, dms)}
    err = refused(command, names, task)
    assert message.format(**names) in err and len(err.splitlines()) == 1, err
    assert all(path.read_bytes() == data for path, data in before.items())


# ---------------------------------------------------------------------------------------------------- random streams
SAMPLED = ["--temperature", "1", "--strategy", "random"]


@pytest.mark.parametrize(
    ("command", "record", "result"),
    [
        (["fold", "{fasta}", "-o", "{out}", *SAMPLED], "MKTAYIAKQRQISF", "x.pdb"),
        (["predict-function", "{fasta}", "-o", "{out}.json", "--vocabulary-dir", "{vocab}", *SAMPLED],
         "MKTAYIAKQRQISF", None),
        (["generate", "--prompt", "{fasta}", "-o", "{out}"], "MKTA__AKQ_QISF", "designs.fasta"),
    ],
)  # fmt: skip
def test_fixing_a_bad_record_does_not_change_the_others_results(
    weights: Path, vocab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], record: str,
    result: str | None,
) -> None:  # fmt: skip
    """A protein's random stream was chosen by its place among the readable records only: with an unreadable record
    before it, it drew from another stream, so fixing that record changed every later protein's result."""
    results = []
    for first in ("MKJT", "MKAT"):  # 'J' is not an amino acid: the record cannot be read
        fasta = tmp_path / f"{first}.fasta"
        fasta.write_text(f">first\n{first}\n>x\n{record}\n")
        out = tmp_path / first
        main([part.format(fasta=fasta, out=out, vocab=vocab) for part in command] + ["--weights", str(weights), *FAST])
        if result is None:
            results.append([p for p in json.loads(Path(f"{out}.json").read_text()) if p["id"] == "x"])
        elif result.endswith(".fasta"):
            results.append([r.sequence for r in read_fasta(out / result) if r.id == "x_1"])
        else:
            results.append((out / result).read_text())
    capsys.readouterr()
    assert results[0] and results[0] == results[1]


def test_inverse_fold_of_a_structure_does_not_depend_on_an_unreadable_file_before_it(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.pdb"
    broken.write_text("not a structure\n")
    designs = []
    for inputs in ([str(broken), str(TRP_CAGE)], [str(ZIPPER), str(TRP_CAGE)]):
        out = tmp_path / f"{len(designs)}.fasta"
        main(["inverse-fold", *inputs, "--chains", "A", "-n", "2", "-o", str(out), "--weights", str(weights), *FAST])
        designs.append([r.sequence for r in read_fasta(out) if r.id.startswith("localunfolding")])
    capsys.readouterr()
    assert len(designs[0]) == 2 and designs[0] == designs[1]


def test_a_design_does_not_change_when_more_designs_are_asked(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Designs were numbered through the whole run (design k of prompt p drew from stream p * n + k - 1): asking -n 3
    instead of -n 2 changed every design of the second and later prompts, so a published design could not be rerun
    with more samples around it."""
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">p\nMK____IAKQ___SFVK\n>q\nGS______DPAFQ\n")
    designs = []
    for n in ("2", "3"):
        out = tmp_path / n
        assert (
            main(["generate", "--prompt", str(prompts), "-o", str(out), "-n", n, "--weights", str(weights), *FAST]) == 0
        )
        designs.append({r.id: r.sequence for r in read_fasta(out / "designs.fasta")})
    capsys.readouterr()
    assert all(designs[1][name] == sequence for name, sequence in designs[0].items())
    assert len(set(designs[1].values())) > 1  # the designs are not one stream repeated


@pytest.mark.parametrize(
    "command",
    [["fold", "{input}", "-o", "{out}"], ["inverse-fold", "{input}", "-o", "{out}.fasta"], ["generate", "--prompt",
     "{input}", "-o", "{out}"]],
)  # fmt: skip
def test_a_json_input_holding_no_protein_is_named(weights: Path, tmp_path: Path, capsys, command) -> None:  # noqa: ANN001
    """A JSON file of an empty list ended the run with exit code 2 and not a word on stderr; beside other inputs it
    was skipped in silence. It is reported as an empty FASTA file is."""
    empty = tmp_path / "empty.json"
    empty.write_text("[]\n")
    fill = {"input": str(empty), "out": str(tmp_path / "out")}
    code = main([part.format(**fill) for part in command] + ["--weights", str(weights), *FAST])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: {empty}: no proteins (an empty JSON list)" in err, err
    assert "1 of 1 " in err, err
    if command[0] == "fold":  # beside a readable input: that one is done, the empty file counted as failed
        code = main(["fold", str(empty), str(TRP_CAGE), "-o", str(tmp_path / "two"), "--weights", str(weights), *FAST])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"error: {empty}: no proteins" in err and "1 of 2 " in err, err
