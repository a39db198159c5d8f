"""Embeddings: equal to the trunk's hidden states, independent of batching, written safely to npy / safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.errors import InputError
from openesm3.generation.embedding import (
    EmbeddingWriter,
    ProteinEmbedding,
    embed_batch,
    embed_proteins,
    embedding_files,
    embedding_names,
    length_batches,
    safe_name,
)
from openesm3.generation.encoding import encode_protein
from openesm3.generation.protein_tensor import model_inputs, stack
from openesm3.protein import Protein
from tests.protein_testing import tiny_esm3

SEQUENCES = ("MNLTELKNTPVSELITLGENMGLENL", "ARMRKQDIIF|AILKQHAKSG", "EDIFGDGVLEILQDGFGFLRSADSSYLAGPDD")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_esm3(seed=2)


def test_embeddings_are_the_hidden_states_without_bos_eos(model: torch.nn.Module) -> None:
    tensor = encode_protein(Protein(sequence=SEQUENCES[1]))
    (last,) = embed_batch(model, [tensor])
    (first,) = embed_batch(model, [tensor], layer=0)
    with torch.no_grad():
        out = model(**model_inputs(stack([tensor]), condition_on_coordinates=False), output_hidden_states=True)
    n = len(SEQUENCES[1])
    assert last.per_residue.shape == (n, 64) and last.per_residue.dtype == np.float32
    np.testing.assert_allclose(last.per_residue, out.embeddings[0, 1:-1].numpy(), atol=1e-5)
    np.testing.assert_allclose(first.per_residue, out.hidden_states[0][0, 1:-1].numpy(), atol=1e-5)
    assert last.layer == 2 and first.layer == 0
    residues = [i for i, ch in enumerate(SEQUENCES[1]) if ch != "|"]
    np.testing.assert_allclose(last.mean, last.per_residue[residues].mean(0), atol=1e-6)  # the break is left out
    assert not np.allclose(last.mean, last.per_residue.mean(0), atol=1e-4)


def test_batching_does_not_change_embeddings_and_order_is_kept(model: torch.nn.Module) -> None:
    tensors = [encode_protein(Protein(sequence=s)) for s in SEQUENCES]
    seen: list[int] = []
    batched = embed_proteins(model, tensors, batch_size=3, on_result=lambda i, e: seen.append(i))
    alone = [embed_batch(model, [t])[0] for t in tensors]
    assert sorted(seen) == [0, 1, 2]
    for a, b, s in zip(batched, alone, SEQUENCES):
        assert a.per_residue.shape[0] == len(s)
        np.testing.assert_allclose(a.per_residue, b.per_residue, atol=1e-5)
    assert length_batches([5, 9, 7], 2) == [[1, 2], [0]]
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        length_batches([1], 0)


def test_what_is_not_a_list_of_protein_tensors_or_a_layer_number_is_named(model: torch.nn.Module) -> None:
    """A Protein (not yet encoded) used to fail deep inside with "'Protein' object has no attribute 'filled'"."""
    tensor = encode_protein(Protein(sequence=SEQUENCES[0]))
    for embed in (embed_batch, embed_proteins):
        with pytest.raises(InputError, match=r"proteins\[1\] is a Protein, not a ProteinTensor: encode it first"):
            embed(model, [tensor, Protein(sequence=SEQUENCES[0])])
        with pytest.raises(InputError, match=r"for one protein pass \[tensor\]"):
            embed(model, tensor)  # type: ignore[arg-type]
    # A bool passed the trunk's range check as 0 or 1 and silently gave that layer; numpy ints are fine.
    for layer in (True, 1.0):
        with pytest.raises(InputError, match="layer must be an int"):
            embed_batch(model, [tensor], layer=layer)  # type: ignore[arg-type]
    (one,) = embed_batch(model, [tensor], layer=np.int64(1))  # type: ignore[arg-type]
    assert one.layer == 1


def test_safe_names() -> None:
    used: set[str] = set()
    assert safe_name("sp|P12345|ABC_HUMAN", used) == "sp_P12345_ABC_HUMAN"
    assert safe_name("a/b", used) == "a_b"
    assert safe_name("A/B", used) == "A_B_2"  # collides case-insensitively with a_b
    assert safe_name("a_b", used) == "a_b_3"
    assert safe_name("..", used) == "record" and safe_name("", used) == "record_2"
    assert len(safe_name("x" * 400, used)) == 150


def _emb(n: int, seed: int) -> ProteinEmbedding:
    rng = np.random.default_rng(seed)
    per = rng.normal(size=(n, 8)).astype(np.float32)
    return ProteinEmbedding(per, per.mean(0), -1)


def test_npy_writer(tmp_path: Path) -> None:
    out = tmp_path / "emb"
    writer = EmbeddingWriter(out, "npy", metadata={"layer": "-1"})
    files = writer.add("p/1", _emb(5, 0)) + writer.add("P/1", _emb(3, 1))
    files += writer.close()
    assert sorted(f.name for f in files) == ["P_1_2.mean.npy", "P_1_2.npy", "index.tsv", "p_1.mean.npy", "p_1.npy"]
    np.testing.assert_array_equal(np.load(out / "p_1.npy"), _emb(5, 0).per_residue)
    np.testing.assert_array_equal(np.load(out / "P_1_2.mean.npy"), _emb(3, 1).mean)
    index = (out / "index.tsv").read_text().splitlines()
    assert index[0] == "# layer=-1" and index[2] == "p/1\tp_1\t5\t8" and index[3] == "P/1\tP_1_2\t3\t8"
    assert not list(out.glob(".*tmp"))  # no temporary files left behind
    mean_only = EmbeddingWriter(tmp_path / "m", "npy", per_residue=False)
    mean_only.add("x", _emb(2, 0))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["x.mean.npy"]


def test_npy_index_keeps_one_row_per_record_whatever_the_id(tmp_path: Path) -> None:
    """A JSON protein's name may hold a tab, a newline or a quote; written bare, such an id split its index row
    into extra columns or lines, so index.tsv no longer mapped ids to files."""
    import csv  # noqa: PLC0415

    ids = ["a\tb", "two\nlines", 'say "x"', "plain"]
    writer = EmbeddingWriter(tmp_path / "emb", "npy", metadata={"layer": "-1"})
    for n, record_id in enumerate(ids):
        writer.add(record_id, _emb(n + 2, n))
    (index,) = writer.close()
    with index.open(newline="") as handle:
        rows = list(csv.reader((line for line in handle if not line.startswith("# ")), delimiter="\t"))
    assert rows[0] == ["id", "name", "length", "dim"]
    assert rows[1:] == [["a\tb", "a_b", "2", "8"], ["two\nlines", "two_lines", "3", "8"],
                        ['say "x"', "say_x", "4", "8"], ["plain", "plain", "5", "8"]]  # fmt: skip


def test_safetensors_writer(tmp_path: Path) -> None:
    from safetensors import safe_open  # noqa: PLC0415

    path = tmp_path / "all.safetensors"
    writer = EmbeddingWriter(path, "safetensors", metadata={"layer": "3"})
    writer.add("a b", _emb(4, 0))
    writer.add("c", _emb(2, 1))
    assert not path.exists()  # written once, at close
    writer.close()
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["a_b", "a_b.mean", "c", "c.mean"]
        meta = f.metadata()
        np.testing.assert_array_equal(f.get_tensor("c").numpy(), _emb(2, 1).per_residue)
    assert meta["layer"] == "3" and '"a_b": "a b"' in meta["ids"]
    with pytest.raises(InputError, match="is a directory"):
        EmbeddingWriter(tmp_path, "safetensors")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a directory"):
        EmbeddingWriter(tmp_path / "file", "npy")


def test_the_same_embeddings_make_the_same_safetensors_file(tmp_path: Path) -> None:
    """safetensors' writer stored the metadata (layer, dtype, weights, ids) in the order of a Rust hash map, random
    per run: the same command wrote files that differed byte for byte (checksums of a published result did not
    match a rerun)."""
    files = []
    for k in range(4):
        path = tmp_path / f"{k}.safetensors"
        writer = EmbeddingWriter(path, "safetensors", metadata={"layer": "-1", "dtype": "fp32", "weights": "w"})
        writer.add("a", _emb(4, 0))
        writer.add("b", _emb(2, 1))
        writer.close()
        files.append(path.read_bytes())
    assert all(data == files[0] for data in files)


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
@pytest.mark.parametrize("order", [("x", "x.mean"), ("x.mean", "x")])
def test_a_record_named_like_another_records_mean_does_not_overwrite_it(
    tmp_path: Path, fmt: str, order: tuple[str, str]
) -> None:
    # Record 'x' writes x.npy and x.mean.npy (tensors 'x', 'x.mean'); a record named 'x.mean' must not take those names.
    embeddings = {"x": _emb(5, 0), "x.mean": _emb(3, 1)}
    out = tmp_path / ("emb.safetensors" if fmt == "safetensors" else "emb")
    writer = EmbeddingWriter(out, fmt)  # type: ignore[arg-type]
    for record_id in order:
        writer.add(record_id, embeddings[record_id])
    writer.close()
    if fmt == "npy":
        index = [line.split("\t") for line in (out / "index.tsv").read_text().splitlines()[1:]]
        names = {record_id: name for record_id, name, *_ in index}
        tensors = {key: np.load(out / f"{key}.npy") for name in names.values() for key in (name, f"{name}.mean")}
    else:
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(out), "np") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
            names = {record_id: name for name, record_id in json.loads(f.metadata()["ids"]).items()}
        assert len(tensors) == 4
    for record_id, embedding in embeddings.items():
        np.testing.assert_array_equal(tensors[names[record_id]], embedding.per_residue)
        np.testing.assert_array_equal(tensors[names[record_id] + ".mean"], embedding.mean)


def test_a_protein_without_a_sequence_is_embedded(model: torch.nn.Module) -> None:
    # Structure tokens only (e.g. a generated structure): the chain break is read from the structure track.
    from openesm3.generation.protein_tensor import ProteinTensor

    tensor = ProteinTensor(structure=torch.tensor([4098, 5, 6, 4100, 7, 8, 4097]))
    (emb,) = embed_batch(model, [tensor])
    assert emb.per_residue.shape == (5, 64)
    np.testing.assert_allclose(emb.mean, emb.per_residue[[0, 1, 3, 4]].mean(0), atol=1e-6)


@pytest.mark.parametrize(("output", "fmt", "per_residue", "n_files"), [
    ("emb", "npy", True, 7),  # <name>.npy and <name>.mean.npy of 3 records, index.tsv
    ("emb", "npy", False, 4),
    ("e.safetensors", "safetensors", True, 1),
])  # fmt: skip
def test_the_files_a_writer_will_write_are_named_before_it_is_made(
    tmp_path: Path, output: str, fmt: str, per_residue: bool, n_files: int
) -> None:
    """``embed`` refuses an earlier run's files (no --overwrite) by these names, before any model is loaded."""
    ids = ["p/1", "p/1", "q"]
    names = embedding_names(ids)
    expected = embedding_files(tmp_path / output, fmt, names, per_residue=per_residue)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # known before anything is made
    writer = EmbeddingWriter(tmp_path / output, fmt, per_residue=per_residue)  # type: ignore[arg-type]
    for n, (record_id, name) in enumerate(zip(ids, names)):
        writer.add(record_id, _emb(n + 2, n), name=name)
    writer.close()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(expected) == sorted(written) and len(expected) == n_files


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
@pytest.mark.parametrize(
    ("first", "later", "later_name"),
    [("x", "x", "x_2"), ("X", "x", "x_2"), ("x", "x.mean", "x.mean_2")],  # x.npy is X.npy on macOS and Windows
)
def test_a_record_added_without_a_name_does_not_take_a_name_given_before(
    tmp_path: Path, fmt: str, first: str, later: str, later_name: str
) -> None:
    # A Python caller may name some records (embedding_names) and leave others to the writer: neither may replace
    # the other's embedding, nor take the name of its mean, nor a name that differs only in case.
    out = tmp_path / ("emb.safetensors" if fmt == "safetensors" else "emb")
    writer = EmbeddingWriter(out, fmt)  # type: ignore[arg-type]
    (given,) = embedding_names([first])
    writer.add(first, _emb(4, 0), name=given)
    writer.add(later, _emb(3, 1))
    writer.close()
    keys = sorted([first, f"{first}.mean", later_name, f"{later_name}.mean"])
    if fmt == "npy":
        stored = sorted(p.name for p in out.iterdir())
        assert stored == sorted(["index.tsv", *(f"{key}.npy" for key in keys)])
        np.testing.assert_array_equal(np.load(out / f"{first}.npy"), _emb(4, 0).per_residue)
        np.testing.assert_array_equal(np.load(out / f"{first}.mean.npy"), _emb(4, 0).mean)
    else:
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(out), "np") as f:
            assert sorted(f.keys()) == keys
            np.testing.assert_array_equal(f.get_tensor(first), _emb(4, 0).per_residue)
            np.testing.assert_array_equal(f.get_tensor(f"{first}.mean"), _emb(4, 0).mean)


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
def test_a_name_given_that_is_already_taken_is_an_error_not_a_replacement(tmp_path: Path, fmt: str) -> None:
    # The other order of the test above: a record named by the writer took 'x_2', which embedding_names had given to
    # the next record; stored under the same name, that record replaced the first one's embedding without a word.
    out = tmp_path / ("emb.safetensors" if fmt == "safetensors" else "emb")
    writer = EmbeddingWriter(out, fmt)  # type: ignore[arg-type]
    first, second = embedding_names(["x", "x"])
    writer.add("x", _emb(4, 0), name=first)
    writer.add("x", _emb(3, 1))  # takes x_2
    with pytest.raises(InputError, match=r"name 'x_2' is already taken .*: give each record its own name"):
        writer.add("x", _emb(5, 2), name=second)
    with pytest.raises(InputError, match=r"name 'X.mean' is already taken"):  # the mean of x, case-insensitively
        writer.add("y", _emb(5, 2), name="X.mean")
    writer.close()
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(out / "x_2.npy"), _emb(3, 1).per_residue)
        assert (out / "index.tsv").read_text().count("\nx\t") == 2
    else:
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(out), "np") as f:
            assert sorted(f.keys()) == ["x", "x.mean", "x_2", "x_2.mean"]
            np.testing.assert_array_equal(f.get_tensor("x_2"), _emb(3, 1).per_residue)


def test_embedding_names_keep_each_records_files_apart() -> None:
    """No record takes another's name, the name of another's mean ('x.mean' beside 'x'), or a name that differs
    only in case (one file on macOS and Windows)."""
    assert embedding_names(["x", "x.mean", "X", "x"]) == ["x", "x.mean_2", "X_2", "x_3"]
    assert embedding_names(["x.mean", "x"]) == ["x.mean", "x_2"]
