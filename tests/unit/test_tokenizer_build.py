"""Building vocabularies (IDF, hyperplanes, term lists, residue labels) and the build-function-vocab command."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation as FA
from openesm3.cli.main import main
from openesm3.errors import InputError
from openesm3.tokenizers import FunctionTokenizer, FunctionVocabulary, ResidueAnnotationVocabulary, build
from openesm3.tokenizers.vocabulary import FUNCTION_FILES

TERMS = """# my annotation source
term_id\tterm_type\tterm_name\tkeywords
IPR000001\tDomain\tKringle\tkringle,protease,kringle
MY:0002\tFamily\tZinc finger, C2H2 type\t
"""
CORPUS = """protein_id\tlabel\tstart\tend
P1\tIPR000001\t1\t80
P1\tkringle\t5\t40
P2\tMY:0002\t3\t30
P3\tzinc\t1\t10
P4\tMY:0002\t1\t5
"""


def test_keywords_from_text() -> None:
    assert build.keywords_from_text("Zinc finger, C2H2 type") == (
        "zinc", "finger", "c2h2", "type", "zinc finger", "finger c2h2", "c2h2 type",
    )  # fmt: skip
    assert build.keywords_from_text("Domain of unknown function") == (
        "domain", "unknown", "function", "domain of", "of unknown", "unknown function",
    )  # fmt: skip


def test_smooth_idf_formula() -> None:
    idf = build.smooth_idf([{"a", "b"}, {"a"}, set()], ["a", "b", "c"])
    expected = [math.log(4 / 3) + 1, math.log(4 / 2) + 1, math.log(4 / 1) + 1]
    np.testing.assert_allclose(idf, expected, rtol=1e-15)


def test_hyperplanes_are_seeded_standard_normal_float32() -> None:
    a = build.draw_hyperplanes(1000, seed=3)
    assert a.shape == (8, 8, 1000) and a.dtype == np.float32
    np.testing.assert_array_equal(a, build.draw_hyperplanes(1000, seed=3))
    assert not np.array_equal(a, build.draw_hyperplanes(1000, seed=4))
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02


def test_build_write_load_roundtrip_in_official_formats(tmp_path: Path) -> None:
    (tmp_path / "terms.tsv").write_text(TERMS)
    (tmp_path / "corpus.tsv").write_text(CORPUS)
    terms = build.read_terms(tmp_path / "terms.tsv")
    corpus = build.read_annotation_corpus(tmp_path / "corpus.tsv")
    assert corpus == {"P1": ["IPR000001", "kringle"], "P2": ["MY:0002"], "P3": ["zinc"], "P4": ["MY:0002"]}
    vocab = build.build_function_vocabulary(terms, corpus, seed=5)
    assert vocab.interpro_keywords["MY:0002"] == build.keywords_from_text("Zinc finger, C2H2 type")
    assert list(vocab.keywords) == sorted(vocab.keywords) and "kringle" in vocab.keywords
    # df: kringle in P1 only; zinc in P2, P3, P4; "c2h2 type" in P2, P4; protease in P1
    idf = dict(zip(vocab.keywords, vocab.idf))
    assert idf["kringle"] == pytest.approx(math.log(5 / 2) + 1)
    assert idf["zinc"] == pytest.approx(math.log(5 / 4) + 1)
    assert idf["c2h2 type"] == pytest.approx(math.log(5 / 3) + 1)

    build.write_function_vocabulary(vocab, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / C.KEYWORD_VOCABULARY_FILE).read_text().endswith("zinc finger\n")
    assert (out / C.INTERPRO_ENTRY_LIST_FILE).read_text().splitlines()[:2] == [
        "ENTRY_AC\tENTRY_TYPE\tENTRY_NAME", "IPR000001\tDomain\tKringle",
    ]  # fmt: skip
    rows = list(csv.reader((out / C.INTERPRO_TO_KEYWORDS_FILE).open()))
    assert rows[0] == ["interpro_id", "keywords"] and rows[1] == ["IPR000001", "kringle,protease,kringle"]
    with np.load(out / C.LSH_HYPERPLANES_FILE) as npz:
        assert sorted(npz.files) == [str(i) for i in range(8)]
        assert npz["0"].shape == (8, vocab.n_keywords) and npz["0"].dtype == np.float32
    idf_file = np.load(out / C.KEYWORD_IDF_FILE)
    assert idf_file.dtype == np.float64

    loaded = FunctionVocabulary.load(out)
    assert loaded.keywords == vocab.keywords and loaded.interpro_keywords == vocab.interpro_keywords
    np.testing.assert_array_equal(loaded.idf, vocab.idf)
    np.testing.assert_array_equal(loaded.hyperplanes, vocab.hyperplanes)  # type: ignore[arg-type]
    tok = FunctionTokenizer(loaded)
    ids = tok.encode([FA("MY:0002", 1, 2), FA("Kringle (IPR000001)", 2, 3)], 3)
    assert (ids[1:4] >= 4).all()  # custom term ids are accepted by exact match


def test_build_errors_name_the_problem(tmp_path: Path) -> None:
    terms = [build.FunctionTerm("T1", "x", "alpha beta", ("alpha",))]
    with pytest.raises(InputError, match="corpus protein 'P9': label 'gamma' is neither"):
        build.build_function_vocabulary(terms, {"P9": ["gamma"]})
    with pytest.raises(InputError, match="keywords not in the keyword list: \\['alpha'\\]"):
        build.build_function_vocabulary(terms, {}, keywords=["beta"])
    with pytest.raises(InputError, match="defined twice"):
        build.build_function_vocabulary(terms * 2, {})
    with pytest.raises(InputError, match="without commas"):
        build.build_function_vocabulary(terms, {}, keywords=["alpha", "a,b"])
    (tmp_path / "c.tsv").write_text("protein_id\tlabel\nP1\n")
    with pytest.raises(InputError, match="line 2: 1 tab-separated fields, the header has 2"):
        build.read_annotation_corpus(tmp_path / "c.tsv")
    (tmp_path / "c.tsv").write_text("protein\tlabel\nP1\tx\n")
    with pytest.raises(InputError, match="line 1: header lacks the column\\(s\\) protein_id"):
        build.read_annotation_corpus(tmp_path / "c.tsv")


def test_residue_vocabulary_groups_spellings(tmp_path: Path) -> None:
    counts = {"Zinc binding": 700, "zinc-binding;": 400, "ATP binding": 1000, "Heme": 5}
    vocab = build.build_residue_annotation_vocabulary(counts, min_proteins=10)
    assert vocab.labels == ("Zinc binding", "ATP binding")  # 1100 > 1000; Heme dropped
    assert vocab.label_to_clean["zinc-binding;"] == "Zinc binding"
    path = build.write_residue_annotation_vocabulary(vocab, tmp_path)
    assert path.read_text().splitlines()[0] == "label,label_clean,count"
    again = ResidueAnnotationVocabulary.from_csv(path)
    assert again.labels == vocab.labels and again.label_to_clean == vocab.label_to_clean
    assert build.count_label_proteins({"a": ["x", "x", "y"], "b": ["x"]}) == {"x": 2, "y": 1}


def test_cli_builds_a_loadable_vocabulary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "terms.tsv").write_text(TERMS)
    (tmp_path / "corpus.tsv").write_text(CORPUS)
    (tmp_path / "residues.tsv").write_text("protein_id\tlabel\nP1\tActive site\nP2\tactive-site\nP2\tHeme\n")
    out = tmp_path / "vocab"
    args = ["build-function-vocab", str(tmp_path / "corpus.tsv"), str(out), "--terms", str(tmp_path / "terms.tsv")]
    assert main([*args, "--seed", "9", "--residue-corpus", str(tmp_path / "residues.tsv")]) == 0
    assert "4 proteins, 2 terms" in capsys.readouterr().err
    vocab = FunctionVocabulary.load(out)
    np.testing.assert_array_equal(vocab.hyperplanes, build.draw_hyperplanes(vocab.n_keywords, seed=9))  # type: ignore[arg-type]
    assert ResidueAnnotationVocabulary.load(out).labels == ("Active site", "Heme")
    record = tmp_path / "vocab.run.json"
    assert main([*args, "--overwrite", "--record", str(record)]) == 0
    capsys.readouterr()
    # The files are staged and then moved into OUT: the record listed none of them; now each, hashed (not the
    # residue vocabulary of the first run, which this one did not write).
    outputs = json.loads(record.read_text())["outputs"]
    function_files = [f for f in out.iterdir() if "residue_annotations" not in f.name]
    assert len(function_files) == 5 and sorted(o["path"] for o in outputs) == sorted(map(str, function_files))
    assert all(o["sha256"] == hashlib.sha256(Path(o["path"]).read_bytes()).hexdigest() for o in outputs)
    before = record.read_bytes()
    assert main([*args, "--record", str(record)]) == 2  # refuses to overwrite, and keeps the record of the vocabulary
    assert "already holds" in capsys.readouterr().err
    assert record.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0
    assert "removed" not in capsys.readouterr().err  # no residue table was there to remove
    assert main([*args, "--force"]) == 0  # the former name of --overwrite
    (tmp_path / "bad.tsv").write_text("protein_id\tlabel\nP1\tunknown thing\n")
    assert main(["build-function-vocab", str(tmp_path / "bad.tsv"), str(tmp_path / "v2"), "--terms",
                 str(tmp_path / "terms.tsv")]) == 2  # fmt: skip
    assert "bad.tsv: corpus protein 'P1': label 'unknown thing'" in capsys.readouterr().err


def test_cli_record_lists_the_vocabulary_files_where_they_are_for_a_relative_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are staged in OUT/.build-vocab.* and renamed into OUT: given relative paths, the outputs noted as
    written must still be followed to where they end up."""
    monkeypatch.chdir(tmp_path)
    assert main([*_cli_args(tmp_path, Path("vocab")), "--record", "run.json"]) == 0
    outputs = json.loads(Path("run.json").read_text())["outputs"]
    assert sorted(o["path"] for o in outputs) == sorted(str(p) for p in (tmp_path / "vocab").iterdir())
    assert not [o for o in outputs if "at_end" in o]


def test_cli_refuses_any_file_it_would_write_not_only_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # OUT holding an earlier residue vocabulary (or the hyperplanes alone) was overwritten without a word.
    (tmp_path / "terms.tsv").write_text(TERMS)
    (tmp_path / "corpus.tsv").write_text(CORPUS)
    (tmp_path / "residues.tsv").write_text("protein_id\tlabel\nP1\tActive site\n")
    args = ["build-function-vocab", str(tmp_path / "corpus.tsv"), "--terms", str(tmp_path / "terms.tsv")]
    residue = ["--residue-corpus", str(tmp_path / "residues.tsv")]
    for name, extra in [(C.RESIDUE_ANNOTATION_VOCAB_FILE, residue), (C.LSH_HYPERPLANES_FILE, [])]:
        out = tmp_path / name.split(".")[0]
        out.mkdir()
        (out / name).write_text("earlier\n")
        assert main([*args, str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{out}: already holds {name}; give a new directory, or --overwrite" in err
        assert "then removed" not in err  # this build writes a residue table (first) or finds none to remove
        assert (out / name).read_text() == "earlier\n" and sorted(p.name for p in out.iterdir()) == [name]


def test_cli_leaves_no_residue_table_of_an_earlier_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--overwrite without --residue-corpus kept an earlier build's residue-annotation CSV: the directory then held a
    new keyword vocabulary beside an old residue table, read as its own (and without --overwrite such a table did
    not even stop the build). It is now part of the replace: refused without --overwrite, removed with it."""
    (tmp_path / "residues.tsv").write_text("protein_id\tlabel\nP1\tActive site\n")
    out = tmp_path / "vocab"
    assert main(_cli_args(tmp_path, out, "--residue-corpus", str(tmp_path / "residues.tsv"))) == 0
    residue = out / C.RESIDUE_ANNOTATION_VOCAB_FILE
    assert main(_cli_args(tmp_path, out, "--seed", "3", "--overwrite")) == 0
    assert f"removed {residue}: an earlier build's residue annotations" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(FUNCTION_FILES)
    lone = tmp_path / "lone"  # an earlier residue table alone
    lone.mkdir()
    (lone / C.RESIDUE_ANNOTATION_VOCAB_FILE).write_text("earlier\n")
    assert main(_cli_args(tmp_path, lone)) == 2
    assert (
        f"{lone}: already holds {C.RESIDUE_ANNOTATION_VOCAB_FILE}; give a new directory, or --overwrite to "
        f"replace them ({C.RESIDUE_ANNOTATION_VOCAB_FILE} then removed: no --residue-corpus)" in capsys.readouterr().err
    )
    assert sorted(p.name for p in lone.iterdir()) == [C.RESIDUE_ANNOTATION_VOCAB_FILE]


@pytest.mark.parametrize("residue_corpus", [False, True])
@pytest.mark.parametrize("name", [C.RESIDUE_ANNOTATION_VOCAB_FILE, C.LSH_HYPERPLANES_FILE])
def test_cli_refuses_a_directory_in_the_place_of_a_file_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, residue_corpus: bool
) -> None:
    """A directory named like one of the files (the residue CSV that --overwrite removes without --residue-corpus,
    or one the build writes) stopped the run with an error raised after the new function files were moved in, or
    half-way through moving them: it is refused before any work, by path, and OUT is left as it was."""
    (tmp_path / "residues.tsv").write_text("protein_id\tlabel\nP1\tActive site\n")
    out = tmp_path / "vocab"
    assert main(_cli_args(tmp_path, out, "--seed", "1")) == 0
    (out / name).unlink(missing_ok=True)
    (out / name).mkdir()
    (out / name / "kept.txt").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    extra = ["--residue-corpus", str(tmp_path / "residues.tsv")] if residue_corpus else []
    args = _cli_args(tmp_path, out, "--seed", "2", "--overwrite", *extra)
    (tmp_path / "corpus.tsv").write_text(CORPUS + "P5\tzinc\t1\t3\n")  # a different IDF: no file may change
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {out / name}: is a directory, where the vocabulary has a file of that name (written, or removed " \
           "as an earlier build's); move the directory away or give another output directory" in err  # fmt: skip
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert (out / name / "kept.txt").read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == sorted({*before, name})  # no staging folder left
    vocabulary = build.build_function_vocabulary(build.read_terms(tmp_path / "terms.tsv"), {})
    with pytest.raises(InputError, match="is a directory, where the vocabulary has a file of that name"):
        build.write_vocabulary_directory(out, vocabulary)  # the library function, the same
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_cli_names_a_directory_in_the_place_of_a_file_before_reading_the_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vocab"
    (out / C.LSH_HYPERPLANES_FILE).mkdir(parents=True)
    args = _cli_args(tmp_path, out)
    (tmp_path / "corpus.tsv").write_text("not a corpus\n")  # would be refused too, but only once read
    assert main(args) == 2
    assert f"error: {out / C.LSH_HYPERPLANES_FILE}: is a directory" in capsys.readouterr().err


def test_a_link_to_a_directory_in_the_place_of_a_file_is_replaced_not_refused(tmp_path: Path) -> None:
    # Only a real directory blocks a file: a link is replaced by the new file, and what it points to is left alone.
    out, elsewhere = tmp_path / "vocab", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "kept.txt").write_text("mine\n")
    (out / C.LSH_HYPERPLANES_FILE).symlink_to(elsewhere, target_is_directory=True)
    build.check_vocabulary_directory(out)
    assert main(_cli_args(tmp_path, out, "--overwrite")) == 0
    assert (out / C.LSH_HYPERPLANES_FILE).is_file() and not (out / C.LSH_HYPERPLANES_FILE).is_symlink()
    assert [p.name for p in elsewhere.iterdir()] == ["kept.txt"]


def test_cli_reuses_a_base_vocabulary(tmp_path: Path) -> None:
    (tmp_path / "terms.tsv").write_text(TERMS)
    (tmp_path / "corpus.tsv").write_text(CORPUS)
    base = tmp_path / "base"
    build.write_function_vocabulary(
        build.build_function_vocabulary(build.read_terms(tmp_path / "terms.tsv"), {}, seed=1), base
    )
    corpus = tmp_path / "c2.tsv"
    corpus.write_text("protein_id\tlabel\nA\tIPR000001\nB\tzinc\n")
    out = tmp_path / "new"
    assert main(["build-function-vocab", str(corpus), str(out), "--base-vocab", str(base), "--seed", "2"]) == 0
    old, new = FunctionVocabulary.load(base), FunctionVocabulary.load(out)
    assert new.keywords == old.keywords and new.interpro_keywords == old.interpro_keywords
    assert not np.array_equal(new.idf, old.idf)


def test_term_names_with_quotes_round_trip(tmp_path: Path) -> None:
    """A term name starting with a double quote used to be written raw: the TSV readers (ours and pandas)
    took it for a quoted field and swallowed the following entries."""
    terms = [
        build.FunctionTerm("IPR000001", "Domain", '"Winged helix" domain', ("helix",)),
        build.FunctionTerm("IPR000002", "Family", '"odd quote', ("odd",)),
        build.FunctionTerm("IPR000003", "Family", 'plain "inner" name', ("plain",)),
    ]
    vocab = build.build_function_vocabulary(terms, {"p": ["IPR000001"]})
    build.write_function_vocabulary(vocab, tmp_path)
    loaded = FunctionVocabulary.load(tmp_path)
    assert [(e.id, e.name) for e in loaded.entries] == [(t.id, t.name) for t in terms]


def _cli_args(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    (tmp_path / "terms.tsv").write_text(TERMS)
    (tmp_path / "corpus.tsv").write_text(CORPUS)
    terms = str(tmp_path / "terms.tsv")
    return ["build-function-vocab", str(tmp_path / "corpus.tsv"), str(out), "--terms", terms, *extra]


@pytest.mark.parametrize(
    ("residues", "extra", "match"),
    [
        ("protein_id\tlbl\nP1\tActive site\n", (), "header lacks the column"),
        ("protein_id\tlabel\nP1\tActive site\n", ("--residue-min-proteins", "5"), "no residue label is seen in >= 5"),
    ],
)
def test_cli_bad_residue_corpus_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], residues: str, extra: tuple[str, ...], match: str
) -> None:
    """The function files used to be written before the residue corpus was read: a bad residue corpus left a
    half-built directory that the next run refused to overwrite."""
    (tmp_path / "residues.tsv").write_text(residues)
    out = tmp_path / "vocab"
    args = _cli_args(tmp_path, out, "--residue-corpus", str(tmp_path / "residues.tsv"), *extra)
    assert main(args) == 2
    assert match in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_cli_force_keeps_the_old_vocabulary_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --force the files used to be replaced one by one: a failure at the hyperplanes (disk full) left the
    new IDF beside the old hyperplanes, a mixed vocabulary that loads without a word."""
    out = tmp_path / "vocab"
    assert main(_cli_args(tmp_path, out, "--seed", "1")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "corpus.tsv").write_text(CORPUS + "P5\tzinc\t1\t3\n")  # a different IDF

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(out / C.LSH_HYPERPLANES_FILE))

    monkeypatch.setattr(build, "write_hyperplanes", disk_full)
    args = ["build-function-vocab", str(tmp_path / "corpus.tsv"), str(out), "--terms", str(tmp_path / "terms.tsv")]
    record = tmp_path / "failed.run.json"
    monkeypatch.chdir(tmp_path)  # OUT relative: the staged files are noted by relative paths, the removal too
    relative = ["build-function-vocab", "corpus.tsv", "vocab", "--terms", "terms.tsv"]
    assert main([*relative, "--seed", "2", "--force", "--record", str(record)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary left, nothing replaced
    assert json.loads(record.read_text())["outputs"] == []  # not the staged files, removed with the staging folder
    monkeypatch.undo()
    assert main([*args, "--seed", "2", "--force"]) == 0
    assert {p.name for p in out.iterdir()} == set(before)
    assert FunctionVocabulary.load(out).n_keywords == FunctionVocabulary.load(out, with_hyperplanes=False).n_keywords
    assert (out / C.KEYWORD_IDF_FILE).read_bytes() != before[C.KEYWORD_IDF_FILE]


def test_cli_output_that_is_a_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a_file"
    out.write_text("keep me")
    assert main(_cli_args(tmp_path, out)) == 2
    assert f"{out}: exists and is not a directory" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    # OUT under that file was met only when the vocabulary, built, was written: "<OUT>: Not a directory"
    assert main(_cli_args(tmp_path, out / "vocab")) == 2
    assert f"OUT {out / 'vocab'}: {out} is not a directory" in capsys.readouterr().err
    assert out.read_text() == "keep me"


@pytest.mark.parametrize(
    ("option", "content", "match"),
    [
        ("--keywords", "kringle\nprotease\nzinc,finger\n", "kw.txt: line 3: keyword 'zinc,finger'"),
        ("--keywords", "kringle\n\nprotease\n", "kw.txt: line 2: keyword ''"),
        ("--keywords", "kringle\nprotease\nkringle\n", "kw.txt: line 3: keyword 'kringle' appears more than once"),
        ("--terms", TERMS + "IPR000001\tDomain\tAgain\t\n", "kw.txt: line 5: term 'IPR000001' is defined twice"),
        ("--terms", TERMS + "A,B\tDomain\tComma\t\n", "kw.txt: line 5: term id 'A,B'"),
    ],
)
def test_cli_errors_name_the_file_at_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, content: str, match: str
) -> None:
    """Errors in the keyword or terms file used to be reported as errors of the corpus file."""
    args = _cli_args(tmp_path, tmp_path / "vocab")
    (tmp_path / "kw.txt").write_text(content)
    if option == "--terms":
        args[args.index("--terms") + 1] = str(tmp_path / "kw.txt")
    else:
        args += ["--keywords", str(tmp_path / "kw.txt")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err and "corpus.tsv" not in err


def test_cli_negative_seed_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A negative --seed used to end as "internal error: ValueError: expected non-negative integer"."""
    assert main(_cli_args(tmp_path, tmp_path / "vocab", "--seed", "-1")) == 2
    assert "--seed must be an int in [0, 2**64), got -1" in capsys.readouterr().err
    assert not (tmp_path / "vocab").exists()


@pytest.mark.parametrize("label", ["NA", "null", "None", "N/A", "nan"])
def test_residue_labels_that_pandas_reads_as_missing_are_refused(label: str) -> None:
    """The official tokenizer reads the residue CSV with pandas, which turns such labels into NaN and drops them:
    a built vocabulary holding one used to give every later label a different id there than in ours."""
    with pytest.raises(InputError, match=f"residue label {label!r}: pandas"):
        build.build_residue_annotation_vocabulary({"Active site": 50, label: 40, "Binding": 30})
    assert build.build_residue_annotation_vocabulary({f"{label} site": 40}).labels == (f"{label} site",)
