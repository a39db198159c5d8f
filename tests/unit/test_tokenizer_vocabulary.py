"""Finding and loading vocabulary files: explicit path > $OPENESM3_VOCAB_DIR > installed esm package."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation as FA
from openesm3.errors import VocabularyError
from openesm3.tokenizers import FunctionTokenizer, FunctionVocabulary, ResidueAnnotationVocabulary, build
from openesm3.tokenizers import vocabulary as V
from tests.conftest import shared_data

_REAL_PACKAGE_DATA_DIR = V.esm_package_data_dir


def _tiny(seed: int = 0) -> FunctionVocabulary:
    terms = [
        build.FunctionTerm("IPR000001", "Domain", "Kringle", ("kringle", "protease", "kringle")),
        build.FunctionTerm("IPR000002", "Family", "Zinc finger", ("zinc", "finger", "zinc finger")),
    ]
    corpus = {"p1": ["IPR000001"], "p2": ["IPR000002", "zinc"], "p3": ["zinc"]}
    return build.build_function_vocabulary(terms, corpus, seed=seed)


@pytest.fixture(autouse=True)
def _no_outside_vocabularies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests control every search place: no env var, no installed esm package unless a test sets one."""
    monkeypatch.delenv(V.VOCAB_DIR_ENV, raising=False)
    monkeypatch.setattr(V, "esm_package_data_dir", lambda: None)


def test_explicit_path_and_its_data_folder(tmp_path: Path) -> None:
    build.write_function_vocabulary(_tiny(), tmp_path / "flat")
    build.write_function_vocabulary(_tiny(), tmp_path / "release" / "data")
    for root in (tmp_path / "flat", tmp_path / "release"):
        vocab = FunctionVocabulary.load(root)
        assert vocab.n_keywords == 5 and vocab.interpro_ids == ("IPR000001", "IPR000002")


def test_missing_files_name_every_file_and_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build.write_function_vocabulary(_tiny(), tmp_path)
    (tmp_path / C.LSH_HYPERPLANES_FILE).unlink()
    (tmp_path / C.KEYWORD_IDF_FILE).unlink()
    with pytest.raises(VocabularyError) as err:
        FunctionVocabulary.load(tmp_path)
    message = str(err.value)
    assert f"missing {C.KEYWORD_IDF_FILE}, {C.LSH_HYPERPLANES_FILE}" in message
    assert f"{tmp_path} (given path)" in message and f"{tmp_path / 'data'} (given path)" in message
    # decoding does not need the hyperplanes
    (tmp_path / C.KEYWORD_IDF_FILE).write_bytes(b"")
    with pytest.raises(VocabularyError, match=r"not a NumPy \.npy file \(empty file\)"):
        FunctionVocabulary.load(tmp_path, with_hyperplanes=False)
    # nothing configured at all
    with pytest.raises(VocabularyError, match=r"looked in: nowhere\. pass the directory explicitly, set \$OPENESM3"):
        ResidueAnnotationVocabulary.load()
    monkeypatch.setenv(V.VOCAB_DIR_ENV, str(tmp_path / "env"))
    monkeypatch.setattr(V, "esm_package_data_dir", lambda: tmp_path / "pkg")
    with pytest.raises(VocabularyError) as err:
        ResidueAnnotationVocabulary.load()
    assert f"{tmp_path / 'env'} ($OPENESM3_VOCAB_DIR)" in str(err.value)
    assert f"{tmp_path / 'pkg'} (installed esm package)" in str(err.value)


def test_env_var_before_package_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Official layout: the HF download (env var) has the hyperplanes, the package has the rest."""
    package, release = tmp_path / "esm" / "data", tmp_path / "hf"
    paths = build.write_function_vocabulary(_tiny(seed=1), package)
    (package / C.LSH_HYPERPLANES_FILE).unlink()
    (release / "data").mkdir(parents=True)
    build.write_hyperplanes(_tiny(seed=2).hyperplanes, release / "data" / C.LSH_HYPERPLANES_FILE)  # type: ignore[arg-type]
    monkeypatch.setattr(V, "esm_package_data_dir", lambda: package)
    with pytest.raises(VocabularyError, match=C.LSH_HYPERPLANES_FILE):
        FunctionVocabulary.load()
    monkeypatch.setenv(V.VOCAB_DIR_ENV, str(release))
    vocab = FunctionVocabulary.load()
    np.testing.assert_array_equal(vocab.hyperplanes, _tiny(seed=2).hyperplanes)  # type: ignore[arg-type]
    # a file in the env dir wins over the package's copy
    shutil.copy(paths[0], release / C.KEYWORD_VOCABULARY_FILE)
    (release / C.KEYWORD_VOCABULARY_FILE).write_text("only\n")
    with pytest.raises(VocabularyError, match="IDF"):
        FunctionVocabulary.load()


def test_installed_package_is_found_without_importing_it() -> None:
    if importlib.util.find_spec("esm") is None:
        pytest.skip("the official esm package is not installed here")
    was_imported = "esm" in sys.modules
    data = _REAL_PACKAGE_DATA_DIR()
    assert data is not None and (data / C.KEYWORD_VOCABULARY_FILE).is_file()
    assert ("esm" in sys.modules) == was_imported


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        (C.INTERPRO_ENTRY_LIST_FILE, "ID\tTYPE\tNAME\n", "line 1: expected the header ENTRY_AC,ENTRY_TYPE,ENTRY_NAME"),
        (C.INTERPRO_TO_KEYWORDS_FILE, "interpro_id,keywords\nIPR000001,nonsense\n", "keywords of IPR000001 not in"),
        (C.INTERPRO_TO_KEYWORDS_FILE, "interpro_id,keywords\nIPR000009,zinc\n", "not in the entry list"),
        (C.INTERPRO_TO_KEYWORDS_FILE, "interpro_id,keywords\nIPR000001,zinc,extra\n", "line 2: expected 2 columns"),
        (C.KEYWORD_VOCABULARY_FILE, "a\nb\na\nc\nd\n", "keyword 'a' appears more than once"),
    ],
)
def test_malformed_files_are_named(tmp_path: Path, name: str, content: str, match: str) -> None:
    build.write_function_vocabulary(_tiny(), tmp_path)
    (tmp_path / name).write_text(content)
    with pytest.raises(VocabularyError, match=match):
        FunctionVocabulary.load(tmp_path)


def test_hyperplanes_and_idf_shapes_are_checked(tmp_path: Path) -> None:
    build.write_function_vocabulary(_tiny(), tmp_path)
    np.savez(tmp_path / C.LSH_HYPERPLANES_FILE, **{str(i): np.zeros((8, 4), np.float32) for i in range(8)})
    with pytest.raises(VocabularyError, match=r"shape \(8, 4\), expected \(8, 5\): one per keyword of .*\(5 keywords"):
        FunctionVocabulary.load(tmp_path)
    np.savez(tmp_path / C.LSH_HYPERPLANES_FILE, **{str(i): np.zeros((8, 5), np.float32) for i in range(7)})
    with pytest.raises(VocabularyError, match="expected the keys"):
        FunctionVocabulary.load(tmp_path)
    np.save(tmp_path / C.KEYWORD_IDF_FILE, np.ones(4))
    with pytest.raises(VocabularyError, match=r"shape \(5,\)"):
        FunctionVocabulary.load(tmp_path, with_hyperplanes=False)


def test_official_function_vocabulary_files(tmp_path: Path) -> None:
    """The real four files of the official release, with generated hyperplanes."""
    source = shared_data("annotations", "esm3_function_vocab")
    for name in V.FUNCTION_FILES[:-1]:
        (tmp_path / name).symlink_to(source / name)
    build.write_hyperplanes(build.draw_hyperplanes(C.N_KEYWORDS, seed=0), tmp_path / C.LSH_HYPERPLANES_FILE)
    vocab = FunctionVocabulary.load(tmp_path)
    assert vocab.n_keywords == C.N_KEYWORDS and vocab.n_interpro == C.N_INTERPRO
    assert vocab.idf.min() == pytest.approx(4.507, abs=1e-3) and vocab.idf.max() == pytest.approx(10.773, abs=1e-3)
    assert vocab.keywords[34611] == "null"  # a keyword that pandas would read as NaN
    assert vocab.interpro_keywords["IPR006563"] == ()  # the one entry without keywords
    assert vocab.interpro_ids == tuple(sorted(vocab.interpro_ids))
    tok = FunctionTokenizer(vocab)
    assert tok.interpro_id("Kringle (IPR000001)") == "IPR000001"
    from openesm3.annotations import FunctionAnnotation as FA

    out = tok.encode([FA("IPR000001", 1, 3), FA("null", 2, 4)], 5)
    assert (out[1:5] >= 4).all() and (out[5] == C.FUNCTION_NONE).all()


def test_float64_hyperplanes_keep_their_precision(tmp_path: Path) -> None:
    """float64 hyperplanes (what the official LSH code draws) used to be rounded to float32 on loading, which
    flips the bits whose projection is within float32 rounding of zero; the official tokenizer uses them as stored."""
    terms = [build.FunctionTerm("IPR000001", "Domain", "Pair", ("alpha", "beta"))]
    build.write_function_vocabulary(build.build_function_vocabulary(terms, {"p": ["IPR000001"]}), tmp_path)
    planes = np.random.default_rng(0).standard_normal((8, 8, 2))
    planes[0, 0] = (1.0, -(1.0 + 1e-9))  # h . (a, a) = -1e-9 a < 0 in float64; exactly 0 (bit set) in float32
    np.savez(tmp_path / C.LSH_HYPERPLANES_FILE, **{str(d): planes[d] for d in range(8)})
    vocab = FunctionVocabulary.load(tmp_path)
    tokens = FunctionTokenizer(vocab).encode([FA("IPR000001", 1, 1)], 1)
    v = np.full(2, 1 / np.sqrt(2))  # equal IDF: the normalised TF-IDF of (alpha, beta)
    expected = 4 + ((np.einsum("dbk,k->db", planes, v) >= 0) * (1 << np.arange(8))).sum(axis=1)
    assert tokens[1, 0] % 2 == 0
    np.testing.assert_array_equal(tokens[1], expected)
    assert vocab.hyperplanes is not None and vocab.hyperplanes.dtype == np.float64


def test_bad_hyperplane_files_are_named(tmp_path: Path) -> None:
    build.write_function_vocabulary(_tiny(), tmp_path)
    path = tmp_path / C.LSH_HYPERPLANES_FILE
    np.savez(path, **{str(i): np.full((8, 5), np.nan, np.float32) for i in range(8)})
    with pytest.raises(VocabularyError, match=f"{C.LSH_HYPERPLANES_FILE}: hyperplanes '0' hold non-finite"):
        FunctionVocabulary.load(tmp_path)
    with path.open("wb") as handle:  # a .npy array under the .npz name
        np.save(handle, np.zeros((8, 8, 5), np.float32))
    with pytest.raises(VocabularyError, match=f"{C.LSH_HYPERPLANES_FILE}: .*npz archive"):
        FunctionVocabulary.load(tmp_path)


def test_truncated_keyword_list_is_named(tmp_path: Path) -> None:
    """A keyword list that lost lines used to be reported as a bad IDF file, without naming the keyword list."""
    build.write_function_vocabulary(_tiny(), tmp_path)
    keywords = tmp_path / C.KEYWORD_VOCABULARY_FILE
    keywords.write_text("".join(keywords.read_text().splitlines(keepends=True)[:-1]))
    for with_hyperplanes in (False, True):
        with pytest.raises(VocabularyError, match=f"one per keyword of {keywords} \\(4 keywords\\)"):
            FunctionVocabulary.load(tmp_path, with_hyperplanes=with_hyperplanes)
    np.save(tmp_path / C.KEYWORD_IDF_FILE, np.ones(4))  # the IDF fits the list: the hyperplanes are named next
    with pytest.raises(VocabularyError, match=f"{C.LSH_HYPERPLANES_FILE}: .*one per keyword of {keywords}"):
        FunctionVocabulary.load(tmp_path)


@pytest.mark.parametrize("name", [C.KEYWORD_IDF_FILE, C.LSH_HYPERPLANES_FILE])
@pytest.mark.parametrize("content", [b"keyword\tidf\nzinc\t4.5\n", b""])
def test_a_numpy_file_that_is_not_one_is_named_as_such(tmp_path: Path, name: str, content: bytes) -> None:
    """A text (or empty) file under the .npy / .npz name read as 'This file contains pickled (object) data. If you
    trust the file you can load it unsafely ...': it holds no pickle, and nothing should be loaded unsafely."""
    build.write_function_vocabulary(_tiny(), tmp_path)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(VocabularyError) as info:
        FunctionVocabulary.load(tmp_path)
    kind = ".npy file" if name == C.KEYWORD_IDF_FILE else ".npz archive"
    assert str(info.value).startswith(f"{tmp_path / name}: not a NumPy {kind}"), info.value
    assert "pickle" not in str(info.value), info.value


def test_an_npz_archive_under_the_idf_name_is_named(tmp_path: Path) -> None:
    """np.load gives an archive, not an array, for a .npz under the .npy name: reading its shape was an
    AttributeError, which the CLI reports as an internal error."""
    build.write_function_vocabulary(_tiny(), tmp_path)
    with (tmp_path / C.KEYWORD_IDF_FILE).open("wb") as handle:
        np.savez(handle, idf=np.ones(5))
    with pytest.raises(VocabularyError, match=f"{C.KEYWORD_IDF_FILE}: expected a single array .*got an npz archive"):
        FunctionVocabulary.load(tmp_path, with_hyperplanes=False)


def test_an_unreadable_numpy_file_is_named(tmp_path: Path) -> None:
    # a directory: open() fails with an OSError that is no FileNotFoundError, named with the file, not a traceback
    with pytest.raises(VocabularyError, match=f"^{tmp_path}: cannot read \\(.+\\)$"):
        V.read_idf(tmp_path, 5)
