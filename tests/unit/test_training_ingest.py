"""Ingestion logic (file discovery, manifest labels, chains vs complexes, filters, skipped files, workers).

The structure reader is replaced by a stand-in that follows the contract of ``openesm3.structure.io``
(``load_structure(path, *, model) -> complex with .chains``, each chain with sequence, atom37, atom37_mask,
residue_index, chain_id), so these tests pin our side of it; tests/integration/test_training_ingest_pdb.py reads
real PDB files with the real reader.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest

from openesm3.errors import InputError, StructureFileError
from openesm3.training.config import IngestConfig
from openesm3.training.data import ProteinDataset
from openesm3.training.ingest import find_structure_files, ingest_structures
from openesm3.training.splits import valid_by_cluster


@dataclass
class FakeChain:
    sequence: str
    atom37: np.ndarray
    atom37_mask: np.ndarray
    residue_index: np.ndarray
    chain_id: str


@dataclass
class FakeComplex:
    chains: list[FakeChain]


def fake_load_structure(path, *, model: int = 1, chains=None) -> FakeComplex:  # noqa: ANN001
    """Files hold JSON: {"A": "SEQ", ...}; a sequence with 'Z' residues lacks C-alpha there; 'BAD' fails."""
    text = open(path).read()  # noqa: PTH123
    if text == "BAD":
        raise StructureFileError(path, "line 3: no ATOM records")
    out = []
    for chain_id, seq in json.loads(text).items():
        n = len(seq)
        atom37 = np.full((n, 37, 3), np.nan, np.float32)
        atom37[:, :3] = np.arange(n * 9, dtype=np.float32).reshape(n, 3, 3)
        mask = np.isfinite(atom37).all(-1)
        no_ca = np.array([c == "Z" for c in seq])
        atom37[no_ca] = np.nan
        mask[no_ca] = False
        out.append(FakeChain(seq, atom37, mask, np.arange(1, n + 1), chain_id))
    return FakeComplex(out)


@pytest.fixture
def structures(tmp_path, monkeypatch):  # noqa: ANN201
    module = types.ModuleType("openesm3.structure.io")
    module.load_structure = fake_load_structure  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "openesm3.structure.io", module)
    root = tmp_path / "pdb"
    (root / "sub").mkdir(parents=True)
    files = {
        "1aaa.pdb": {"A": "ACDEFGHIKLMN", "B": "ACDEFGHIKLMN", "C": "WWWWWWWWWWWW"},  # homodimer + partner
        "sub/2bbb.cif": {"A": "MKV" * 5},
        "3ccc.pdb": {"A": "MKVZZZZZZZZZ"},  # only 3 residues with a C-alpha
        "4ddd.pdb": "BAD",
        "notes.txt": {"A": "IGNORED"},
    }
    for name, content in files.items():
        (root / name).write_text(content if isinstance(content, str) else json.dumps(content))
    manifest = root / "manifest.tsv"
    manifest.write_text("file\tcluster40\tsuggested_split\n1aaa.pdb\tclu1\ttrain\nsub/2bbb.cif\tclu2\tvalid\n")
    return root


def test_find_structure_files(structures) -> None:
    names = [p.name for p in find_structure_files(structures)]
    assert names == ["1aaa.pdb", "3ccc.pdb", "4ddd.pdb", "2bbb.cif"]  # sorted paths, .txt ignored
    listing = structures / "list.txt"
    listing.write_text("# training files\n1aaa.pdb\nsub/2bbb.cif\n")
    assert [p.name for p in find_structure_files(listing)] == ["1aaa.pdb", "2bbb.cif"]
    listing.write_bytes(b"\x89PNG\r\n\x1a\n\xff")  # not a list of paths
    with pytest.raises(InputError, match="list.txt: not a text file"):
        find_structure_files(listing)
    listing.write_text("1aaa.pdb\nmissing.pdb\n")
    with pytest.raises(InputError, match="list.txt: line 2: listed file 'missing.pdb' does not exist"):
        find_structure_files(listing)
    # or, asked for, named with the list file and line and left out as a missing file named directly is
    missing: list[dict[str, str]] = []
    found = find_structure_files([listing, structures / "gone.pdb", listing], missing=missing)
    assert [p.name for p in found] == ["1aaa.pdb"]
    assert missing == [  # each once, however often named
        {"source": str(structures / "missing.pdb"), "problem": f"no such file (listed in {listing}, line 2)"},
        {"source": str(structures / "gone.pdb"), "problem": "no such file or directory"},
    ]
    listing.write_text("sub\n1aaa.pdb\n")
    with pytest.raises(InputError, match="list.txt: line 1: listed 'sub' is not a file"):
        find_structure_files(listing)
    missing = []  # asked for: a listed directory is named and left out as a listed missing file is
    assert [p.name for p in find_structure_files(listing, missing=missing)] == ["1aaa.pdb"]
    assert missing == [
        {"source": str(structures / "sub"), "problem": f"not a file (listed in {listing}, line 1); a list names files"}
    ]
    with pytest.raises(InputError, match="nowhere: no such file or directory"):
        find_structure_files(structures / "nowhere")
    with pytest.raises(InputError, match="no structure files"):
        find_structure_files(tmp_path_empty(structures))


def test_find_structure_files_leaves_out_an_unreadable_list_and_an_empty_directory_when_asked(
    structures, tmp_path
) -> None:
    # only a missing path was left out; a binary list file or a directory without structure files stopped the caller
    binary = tmp_path / "list.bin"
    binary.write_bytes(b"\x00\xff")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing: list[dict[str, str]] = []
    found = find_structure_files([structures / "1aaa.pdb", binary, empty, binary], missing=missing)
    assert [p.name for p in found] == ["1aaa.pdb"]
    assert missing == [
        {"source": str(binary), "problem": "not a text file (byte 1 is not UTF-8)"},
        {"source": str(empty), "problem": "no structure files (.pdb, .cif, .bcif, optionally .gz) in this directory"},
    ]
    with pytest.raises(InputError, match=r"list\.bin: not a text file"):  # not asked: refused as before
        find_structure_files(binary)


def tmp_path_empty(root):  # noqa: ANN001, ANN201
    path = root / "empty"
    path.mkdir()
    return path


def test_ingest_chains_with_manifest_labels(structures, tmp_path) -> None:
    cfg = IngestConfig(manifest=str(structures / "manifest.tsv"), shard_size=2)
    report = ingest_structures(structures, tmp_path / "ds", cfg, progress=False)
    ds = ProteinDataset(tmp_path / "ds")
    names = [e["name"] for e in ds.entries]
    assert names == ["1aaa_A", "1aaa_C", "2bbb_A"]  # 1aaa_B is a copy of A; 3ccc too short; 4ddd unreadable
    assert report.n_files == 4 and report.n_records == 3 and report.filtered == 1
    assert report.skipped == [
        {"source": str(structures / "4ddd.pdb"), "problem": f"{structures / '4ddd.pdb'}: line 3: no ATOM records"}
    ]
    assert ds.skipped == report.skipped
    assert ds.clusters == ["clu1", "clu1", "clu2"] and ds.splits == ["train", "train", "valid"]
    record = ds[1]
    assert record.sequence == "W" * 12 and record.chain_ids == ("C",) and (record.chain_index == 0).all()
    np.testing.assert_array_equal(record.atom37[:, :3], np.arange(12 * 9, dtype=np.float32).reshape(12, 3, 3))
    assert np.isnan(record.atom37[:, 3:]).all() and record.residue_index.tolist() == list(range(1, 13))


def test_ingest_complexes_and_workers(structures, tmp_path) -> None:
    cfg = IngestConfig(unit="complex", min_length=3, workers=2)
    ingest_structures(structures, tmp_path / "par", cfg, progress=False)
    ds = ProteinDataset(tmp_path / "par")
    assert [e["name"] for e in ds.entries] == ["1aaa", "3ccc", "2bbb"]
    cplx = ds[0]
    assert cplx.chain_ids == ("A", "B", "C") and cplx.length == 36
    assert cplx.chain_index.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert ds.entries[0]["chain_lengths"] == [12, 12, 12] and ds.clusters[0] == "1aaa"  # no manifest: own cluster
    serial = tmp_path / "serial"
    ingest_structures(structures, serial, IngestConfig(unit="complex", min_length=3, workers=1), progress=False)
    a = json.loads((tmp_path / "par" / "index.json").read_text())
    b = json.loads((serial / "index.json").read_text())
    assert a["records"] == b["records"]  # the number of workers does not change the dataset
    capped = ingest_structures(structures, tmp_path / "x", IngestConfig(max_length=14, weight=2.0), progress=False)
    assert (capped.n_records, capped.filtered) == (2, 2)  # 2bbb (15 residues) and 3ccc (too short) left out
    assert ProteinDataset(tmp_path / "x").weights.tolist() == [2.0, 2.0]


def test_manifest_errors(structures, tmp_path) -> None:
    cfg = IngestConfig(manifest=str(structures / "manifest.tsv"), cluster_column="cluster90")
    with pytest.raises(InputError, match="manifest has no column 'cluster90'"):
        ingest_structures(structures, tmp_path / "ds", cfg, progress=False)
    with pytest.raises(InputError, match="^manifest .*no.tsv: no such file"):
        ingest_structures(structures, tmp_path / "ds", IngestConfig(manifest=str(tmp_path / "no.tsv")), progress=False)
    (tmp_path / "bin.tsv").write_bytes(b"file\tcluster40\n\xff\xfe")
    with pytest.raises(InputError, match="^manifest .*bin.tsv: not a text file"):
        ingest_structures(structures, tmp_path / "ds", IngestConfig(manifest=str(tmp_path / "bin.tsv")), progress=False)


def test_a_file_named_twice_is_found_once(structures, tmp_path, monkeypatch) -> None:
    """A directory plus a file in it, or a list naming a file relatively and absolutely, used to give the file twice
    (and two identical records); each file is now found once, whatever the spelling."""
    monkeypatch.chdir(structures)
    listing = structures / "list.txt"
    listing.write_text(f"1aaa.pdb\n./1aaa.pdb\n{structures / '1aaa.pdb'}\nsub/../1aaa.pdb\n")
    assert [p.name for p in find_structure_files(listing)] == ["1aaa.pdb"]
    found = find_structure_files([structures, structures / "1aaa.pdb", "sub/2bbb.cif"])
    assert sorted(p.name for p in found) == ["1aaa.pdb", "2bbb.cif", "3ccc.pdb", "4ddd.pdb"]
    report = ingest_structures([structures, "1aaa.pdb"], tmp_path / "ds", progress=False)
    assert report.n_files == 4 and report.n_records == 3


def test_a_manifest_without_rows_names_its_columns(structures, tmp_path) -> None:
    """The error listed the columns of the first row, so a manifest with only a header said '(columns: )'."""
    (tmp_path / "head.tsv").write_text("path\tcluster\n")
    cfg = IngestConfig(manifest=str(tmp_path / "head.tsv"))
    with pytest.raises(InputError, match=r"no column 'file' \(columns: path, cluster\)"):
        ingest_structures(structures, tmp_path / "ds", cfg, progress=False)


def test_same_named_files_keep_their_own_labels_and_copies_can_be_kept(structures, tmp_path) -> None:
    root = tmp_path / "more"
    for sub, seq in (("a", "ACDEFGHIKLMN"), ("b", "MKVMKVMKVMKV")):
        (root / sub).mkdir(parents=True)
        (root / sub / "x.pdb.gz").write_text(json.dumps({"A": seq, "B": seq}))  # the stand-in reads text
    manifest = root / "manifest.tsv"
    manifest.write_text("file\tcluster40\tsuggested_split\na/x.pdb.gz\tclu_a\ttrain\nb/x.pdb.gz\tclu_b\tvalid\n")
    cfg = IngestConfig(manifest=str(manifest), unique_chains=False)
    ingest_structures(root, tmp_path / "ds", cfg, progress=False)
    ds = ProteinDataset(tmp_path / "ds")
    assert [e["name"] for e in ds.entries] == ["x_A", "x_B", "x_A", "x_B"]  # .pdb.gz off the stem; copies kept
    assert ds.clusters == ["clu_a", "clu_a", "clu_b", "clu_b"] and ds.splits == ["train", "train", "valid", "valid"]


def test_missing_inputs_can_be_skipped_entries(structures, tmp_path) -> None:
    """With skip_missing, a missing file (given, or in a list file) is left out as an unreadable one is."""
    listing = structures / "list.txt"
    listing.write_text("1aaa.pdb\nmissing.pdb\n")
    report = ingest_structures([listing, structures / "4ddd.pdb"], tmp_path / "ds", progress=False, skip_missing=True)
    assert report.n_files == 2 and report.n_records == 2  # 1aaa.pdb's chains (4ddd.pdb is unreadable)
    assert [s["source"] for s in report.skipped] == [str(structures / "missing.pdb"), str(structures / "4ddd.pdb")]
    assert ProteinDataset(tmp_path / "ds").skipped == report.skipped
    with pytest.raises(InputError, match="line 2: listed file 'missing.pdb' does not exist"):
        ingest_structures(listing, tmp_path / "ds2", progress=False)


def test_a_missing_file_named_twice_is_named_once_as_first_mentioned(structures) -> None:
    """Named in a list file (two spellings of one path) and then directly, a missing file is one entry, with the list
    file and line where it was first named."""
    listing = structures / "list.txt"
    listing.write_text("missing.pdb\nsub/../missing.pdb\n1aaa.pdb\n")
    missing: list[dict[str, str]] = []
    found = find_structure_files([listing, structures / "missing.pdb"], missing=missing)
    assert [p.name for p in found] == ["1aaa.pdb"]
    assert missing == [
        {"source": str(structures / "missing.pdb"), "problem": f"no such file (listed in {listing}, line 1)"}
    ]


def test_identical_unlabelled_chains_share_a_cluster_so_the_split_cannot_separate_them(structures, tmp_path) -> None:
    """Without a manifest every record was its own cluster, so two copies of a structure (or the same chain in two
    files) could land on both sides of a cluster split; records without a label now share a cluster when their
    sequences are identical, named after the first of them, and the report counts them."""
    (structures / "5eee.pdb").write_text((structures / "1aaa.pdb").read_text())  # a copy of 1aaa
    report = ingest_structures(structures, tmp_path / "ds", IngestConfig(unique_chains=False), progress=False)
    ds = ProteinDataset(tmp_path / "ds")
    names = [e["name"] for e in ds.entries]
    assert names == ["1aaa_A", "1aaa_B", "1aaa_C", "5eee_A", "5eee_B", "5eee_C", "2bbb_A"]
    assert ds.clusters == ["1aaa_A", "1aaa_A", "1aaa_C", "1aaa_A", "1aaa_A", "1aaa_C", "2bbb_A"]
    assert report.grouped == 6  # 1aaa_A/B and 5eee_A/B; 1aaa_C and 5eee_C
    assert ds.subset([5, 4, 6]).clusters == ["1aaa_C", "1aaa_A", "2bbb_A"]  # a subset names them as the whole does
    for seed in range(20):  # whichever clusters a seed draws, a chain and its copies are on one side
        valid = dict(zip(names, valid_by_cluster(ds.clusters, 0.5, seed), strict=True))
        assert valid["1aaa_A"] == valid["1aaa_B"] == valid["5eee_A"] == valid["5eee_B"]
        assert valid["1aaa_C"] == valid["5eee_C"]
    # labelled records keep their labels; a file the manifest does not list, a copy of one it lists, shares that
    # file's cluster (it was its own: 5eee_A could be validated on while its copy 1aaa_A was trained on)
    cfg = IngestConfig(manifest=str(structures / "manifest.tsv"))
    report = ingest_structures(structures, tmp_path / "m", cfg, progress=False)
    assert ProteinDataset(tmp_path / "m").clusters == ["clu1", "clu1", "clu1", "clu1", "clu2"]
    assert report.grouped == 2


def test_only_identical_sequences_are_grouped_and_the_progress_line_counts_them(structures, tmp_path, capsys) -> None:
    """A chain differing from another in its last residue only is a cluster of its own; the progress line says how
    many records share a cluster by identical sequence, and says nothing of it when none do."""
    ingest_structures(structures, tmp_path / "plain", IngestConfig(), progress=True)
    assert "grouped" not in capsys.readouterr().err  # 1aaa's A and B are one chain kept once: nothing grouped
    (structures / "5eee.pdb").write_text(json.dumps({"A": "ACDEFGHIKLMW", "B": "ACDEFGHIKLMN"}))  # 1aaa_A but the last
    report = ingest_structures(structures, tmp_path / "ds", IngestConfig(), progress=True)
    assert capsys.readouterr().err.splitlines()[-1].endswith("5 records, 1 skipped, 2 grouped by identical sequence")
    ds = ProteinDataset(tmp_path / "ds")
    assert [e["name"] for e in ds.entries] == ["1aaa_A", "1aaa_C", "5eee_A", "5eee_B", "2bbb_A"]
    assert ds.clusters == ["1aaa_A", "1aaa_C", "5eee_A", "1aaa_A", "2bbb_A"] and report.grouped == 2


def test_an_unlisted_copy_joins_its_labelled_twin_and_no_record_joins_an_unrelated_label(structures, tmp_path) -> None:
    """With a manifest that lists only some files, an unlisted copy of a listed chain was a cluster of its own (so
    the split could put the copy in validation and the chain in training), and an unlisted record named as some
    cluster's label (here '7ggg_A') joined that unrelated cluster. The copy shares its twin's label; the namesake is
    set apart; the report counts the copy (also when the listed twin comes after it in the index)."""
    (structures / "0ccc.pdb").write_text(json.dumps({"A": "MKV" * 5}))  # a copy of 2bbb_A (clu2), before it
    (structures / "5eee.pdb").write_text(json.dumps({"A": "ACDEFGHIKLMN"}))  # a copy of 1aaa_A (clu1), after it
    (structures / "7ggg.pdb").write_text(json.dumps({"A": "PPPPPPPPPPPP"}))  # unlisted, named as 8hhh's label
    (structures / "8hhh.pdb").write_text(json.dumps({"A": "YYYYYYYYYYYY"}))
    manifest = structures / "manifest.tsv"
    manifest.write_text(manifest.read_text() + "8hhh.pdb\t7ggg_A\ttrain\n")
    report = ingest_structures(structures, tmp_path / "m", IngestConfig(manifest=str(manifest)), progress=False)
    ds = ProteinDataset(tmp_path / "m")
    clusters = dict(zip((e["name"] for e in ds.entries), ds.clusters, strict=True))
    assert clusters == {
        "0ccc_A": "clu2", "1aaa_A": "clu1", "1aaa_C": "clu1", "5eee_A": "clu1", "7ggg_A": "7ggg_A (unlabelled)",
        "8hhh_A": "7ggg_A", "2bbb_A": "clu2",
    }  # fmt: skip
    assert report.grouped == 2  # 0ccc_A and 5eee_A
    positions = [i for i, e in enumerate(ds.entries) if e["name"] in ("5eee_A", "0ccc_A")]
    assert ds.subset(positions).clusters == ["clu2", "clu1"]  # a subset names them as the whole does
