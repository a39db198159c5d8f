"""``openesm3 embed`` end to end with a tiny random trunk saved in our format: files, formats, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from openesm3.checkpoints.loading import load_model, resolve_weights
from openesm3.cli.main import main
from openesm3.generation.embedding import embed_batch
from openesm3.generation.encoding import encode_protein
from openesm3.protein import Protein
from openesm3.protein_io import write_json
from tests.conftest import TEST_DATA
from tests.protein_testing import save_tiny_weights

FASTA = """\
>sp|P1|ONE first
MNLTELKNTPVSELITLGENMGLENLARMRKQ
>dup
GGSSAAKKLL|MKTAYIA
>dup
mktay_iakqr
>broken
MKTAJIAK
"""


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights"), seed=3)


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text(FASTA)
    return path


def test_npy_output_per_record_with_a_bad_record_reported(weights: Path, fasta: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "emb"
    code = main(
        ["embed", str(fasta), "-o", str(out), "--weights", str(weights), "--batch-size", "2", "--device", "cpu"]
    )
    err = capsys.readouterr().err
    assert code == 1  # some records failed, the others were written
    assert "in.fasta:8: record 'broken': sequence position 5: invalid character 'J'" in err
    assert "1 of 4 protein(s) failed" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dup.mean.npy", "dup.npy", "dup_2.mean.npy", "dup_2.npy", "index.tsv",
                     "sp_P1_ONE.mean.npy", "sp_P1_ONE.npy"]  # fmt: skip
    index = (out / "index.tsv").read_text()
    assert "sp|P1|ONE\tsp_P1_ONE\t32\t64" in index and "dup\tdup_2\t11\t64" in index
    # The same numbers as the library on the same weights.
    model, _ = load_model(weights, "esm3")
    (expected,) = embed_batch(model, [encode_protein(Protein(sequence="GGSSAAKKLL|MKTAYIA"))])
    np.testing.assert_allclose(np.load(out / "dup.npy"), expected.per_residue, atol=1e-5)
    np.testing.assert_allclose(np.load(out / "dup.mean.npy"), expected.mean, atol=1e-5)
    assert np.load(out / "dup.npy").shape == (18, 64)  # rows line up with the sequence, break included


@pytest.mark.parametrize("output", ["emb", "emb.safetensors"])
def test_records_with_the_same_id_are_named_in_input_order(weights: Path, tmp_path: Path, output: str) -> None:
    """Names went to records in length order: of two records 'x', the longer took x.npy even when it came second, so
    adding a longer record 'x' to the input moved x.npy to another protein."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">x\nMKTAY\n>x\nMKTAYIAKQRQISF\n")
    out = tmp_path / output
    assert main(["embed", str(fasta), "-o", str(out), "--weights", str(weights), "--quiet"]) == 0
    tensors = load_file(str(out)) if output.endswith(".safetensors") else {n: np.load(out / f"{n}.npy") for n in "x"}
    assert tensors["x"].shape == (5, 64)


def test_a_record_too_long_for_the_model_keeps_its_name(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Names come from the ids of the readable records, before any model work (an earlier run's files are refused
    then): a record that cannot be encoded leaves its name unused, so the next record 'x' is x_2 whether or not the
    first fits; an unreadable record takes none."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">bad\nMKJ\n>x\n" + "A" * 2100 + "\n>x\nMKTAY\n")
    out = tmp_path / "emb"
    assert main(["embed", str(fasta), "-o", str(out), "--weights", str(weights), "--quiet"]) == 1
    assert "protein 'x': 2100 residues do not fit" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["index.tsv", "x_2.mean.npy", "x_2.npy"]
    assert "\nx\tx_2\t5\t64\n" in (out / "index.tsv").read_text()


def test_safetensors_layers_and_json_input(weights: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file  # noqa: PLC0415

    write_json(tmp_path / "in.json", [Protein(sequence="MKTAYIAKQR", name="a"), Protein(sequence="GGS", name="b")])
    out = tmp_path / "all.safetensors"
    args = ["embed", str(tmp_path / "in.json"), "-o", str(out), "--weights", str(weights), "--quiet"]
    assert main(args) == 0
    tensors = load_file(str(out))
    assert sorted(tensors) == ["a", "a.mean", "b", "b.mean"] and tensors["a"].shape == (10, 64)
    assert main([*args[:3], str(tmp_path / "l0.safetensors"), *args[4:], "--layer", "0", "--mean-only"]) == 0
    layer0 = load_file(str(tmp_path / "l0.safetensors"))
    assert sorted(layer0) == ["a.mean", "b.mean"]
    assert not np.allclose(layer0["a.mean"], tensors["a.mean"])


def test_bf16_runs_and_stays_close_to_fp32(weights: Path, tmp_path: Path) -> None:
    (tmp_path / "x.fasta").write_text(">x\nMNLTELKNTPVSELITLGENMGLENLARMRKQ\n")
    for dtype in ("fp32", "bf16"):
        out = tmp_path / dtype
        assert (
            main(["embed", str(tmp_path / "x.fasta"), "-o", str(out), "--weights", str(weights), "--dtype", dtype]) == 0
        )
    a, b = np.load(tmp_path / "fp32" / "x.npy"), np.load(tmp_path / "bf16" / "x.npy")
    assert b.dtype == np.float32
    cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cosine.min() > 0.99


def test_errors(weights: Path, fasta: Path, tmp_path: Path, capsys) -> None:
    code = main(["embed", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2
    for name in ("esm3_sm_open_v1.pth", "esm3_structure_encoder_v0.pth", "esm3_structure_decoder_v0.pth",
                 "esm3_function_decoder_v0.pth", "--weights", "OPENESM3_WEIGHTS", "openesm3 convert"):  # fmt: skip
        assert name in err
    assert main(["embed", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), "--layer", "7"]) == 2
    assert "--layer 7: this model has layers -3..2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before the output directory is made
    assert main(["embed", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), "--batch-size", "0"]) == 2
    only_bad = tmp_path / "bad.fasta"
    only_bad.write_text(">x\nMKJ\n")
    assert main(["embed", str(only_bad), "-o", str(tmp_path / "o2"), "--weights", str(weights)]) == 2
    assert not (tmp_path / "o2").exists()
    # A structure input needs the structure encoder, whose weights are not there: named in the message.
    pdb = str(TEST_DATA / "structures" / "1a62.pdb.gz")
    assert main(["embed", pdb, "-o", str(tmp_path / "o3"), "--weights", str(weights)]) == 2
    assert "esm3_structure_encoder_v0.pth" in capsys.readouterr().err


def test_npy_format_with_a_safetensors_name_is_an_error(weights: Path, fasta: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "all.safetensors"
    assert main(["embed", str(fasta), "-o", str(out), "--format", "npy", "--weights", str(weights)]) == 2
    assert f"-o {out} names a .safetensors file, but --format npy writes a directory" in capsys.readouterr().err
    assert not out.exists()


def test_a_safetensors_output_that_is_an_input_or_a_directory_is_refused_before_any_work(
    weights: Path, fasta: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o naming the input FASTA with --format safetensors --overwrite replaced the user's FASTA with the embeddings;
    -o naming a directory was refused only once the trunk was loaded. Both now stop before any work (a directory
    even with weights that do not exist: their error would come first)."""
    before = fasta.read_bytes()
    argv = ["embed", str(fasta), "-o", str(fasta), "--format", "safetensors", "--overwrite", "--weights", str(weights)]
    assert main([*argv, "--quiet"]) == 2
    assert f"-o {fasta}: is the input file {fasta}; writing there would replace it" in capsys.readouterr().err
    assert fasta.read_bytes() == before
    directory = tmp_path / "e.safetensors"
    directory.mkdir()
    nowhere = str(tmp_path / "nowhere")
    for extra in ([], ["--overwrite"]):
        assert main(["embed", str(fasta), "-o", str(directory), "--weights", nowhere, *extra]) == 2
        assert f"-o {directory}: is a directory; give a file name" in capsys.readouterr().err
    assert list(directory.iterdir()) == []


def test_an_npy_output_where_a_file_is_is_refused_before_any_model_is_loaded(
    fasta: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o naming a file (or a path through one) for npy output was refused only once the trunk was loaded and the
    structures encoded; now before (the weights here do not exist: their error would come first)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    for out, problem in [(notes, "exists and is not a directory"), (notes / "emb", f"{notes} is not a directory")]:
        assert main(["embed", str(fasta), "-o", str(out), "--weights", str(tmp_path / "nowhere")]) == 2
        assert f"-o {out}: {problem}" in capsys.readouterr().err
    assert notes.read_text() == "mine\n"


def test_the_index_names_the_weights_also_when_they_come_from_the_environment(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """index.tsv (and the safetensors metadata) said ``weights=default`` for weights found through $OPENESM3_WEIGHTS,
    so the file did not say which model made it."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAK\n")
    monkeypatch.setenv("OPENESM3_WEIGHTS", str(weights))
    assert main(["embed", str(fasta), "-o", str(tmp_path / "emb"), "--quiet"]) == 0
    assert main(["embed", str(fasta), "-o", str(tmp_path / "e.safetensors"), "--quiet"]) == 0
    expected = str(resolve_weights(weights, "esm3"))
    assert f"# weights={expected}\n" in (tmp_path / "emb" / "index.tsv").read_text()
    with safe_open(str(tmp_path / "e.safetensors"), "pt") as handle:
        assert handle.metadata()["weights"] == expected
