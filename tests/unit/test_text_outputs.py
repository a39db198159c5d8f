"""Text outputs the user names (tables, FASTA, JSON, token files) are gzip-compressed under a ``.gz`` name, in the
format the name gives before it, so ``zcat`` and our own readers read them."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from openesm3.cli.common import write_table
from openesm3.utils.atomic import atomic_open, atomic_write_with, write_text_output
from openesm3.utils.text import read_text_file


@pytest.mark.parametrize("name", ["t.tsv.gz", "t.csv.gz", "t.json.gz", "t.tsv", "t.JSON.GZ"])
def test_tables_are_gzipped_under_a_gz_name_in_the_format_before_it(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    write_table(str(path), ["id", "score"], [["a", 1.5], ["b", math.nan]])
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == name.lower().endswith(".gz")
    text = gzip.decompress(raw).decode() if name.lower().endswith(".gz") else raw.decode()
    if ".json" in name.lower():
        assert json.loads(text) == [{"id": "a", "score": 1.5}, {"id": "b", "score": None}]
    else:
        sep = "," if ".csv" in name else "\t"
        assert text == f"id{sep}score\na{sep}1.5\nb{sep}\n"


@pytest.mark.parametrize("name", ["t.tsv", "t.csv"])
def test_table_numbers_read_back_exactly(name: str, tmp_path: Path) -> None:
    """Numbers were written to 6 significant digits: two scores 1e-6 apart came back tied (a Spearman recomputed
    from the table differed from the printed one) and a measured value lost its digits."""
    import numpy as np  # noqa: PLC0415

    model = [float(np.float32(v)) for v in (-3.4567891, -3.4567899, 0.1, 1e-9, 12345.678)]
    measured = [0.123456789012, -2.0, 1e300, 7.0]
    path = tmp_path / name
    write_table(str(path), ["value"], [[v] for v in model + measured])
    text = path.read_text().split("\n")[1:-1]
    assert [float(np.float32(t)) for t in text[: len(model)]] == model  # each float32 as it was
    assert [float(t) for t in text[len(model) :]] == measured  # each float64 as it was
    assert text[:3] == ["-3.456789", "-3.45679", "0.1"]  # float32 values in their own shortest form


def test_text_output_reads_back_and_replaces_a_file_atomically(tmp_path: Path) -> None:
    for name in ("x.txt", "x.txt.gz"):
        path = tmp_path / "new_dir" / name
        write_text_output(path, "first\n")
        write_text_output(path, "second ü\n")
        assert read_text_file(path) == "second ü\n"
    assert sorted(p.name for p in (tmp_path / "new_dir").iterdir()) == ["x.txt", "x.txt.gz"]  # no temporary left


def test_exclusive_atomic_open_refuses_an_existing_file_and_leaves_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    with atomic_open(path, "x") as handle:
        handle.write("first")
    with pytest.raises(FileExistsError, match="already exists"), atomic_open(path, "x") as handle:
        handle.write("second")
    assert path.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_a_failed_library_writer_leaves_no_temporary_file(tmp_path: Path) -> None:
    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write_with(tmp_path / "x.bin", half_then_fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["t.tsv", "t.tsv.gz"])
def test_a_file_name_that_is_not_utf8_in_a_table_is_written_escaped(name: str, tmp_path: Path) -> None:
    """A structure file named with a non-UTF-8 byte gives a record id with a lone surrogate (Python's decoding of
    file names); the table holding it was lost at the very end of the command with a UnicodeEncodeError."""
    path = tmp_path / name
    write_table(str(path), ["id", "ptm"], [["bad\udcff", 0.5]])
    assert read_text_file(path) == "id\tptm\nbad\\udcff\t0.5\n"


def test_an_output_under_a_file_names_that_file(tmp_path: Path) -> None:
    """'--out notes.txt/x.tsv' said '[Errno 17] File exists: 'notes.txt''."""
    (tmp_path / "notes.txt").write_text("x")
    target = tmp_path / "notes.txt" / "sub" / "x.tsv"
    with pytest.raises(NotADirectoryError) as info:
        write_text_output(target, "a\n")
    assert (info.value.filename, info.value.strerror) == (str(target), f"{tmp_path / 'notes.txt'} is not a directory")


def test_failed_items_are_named_unless_the_message_already_names_them() -> None:
    """An item's name was left out whenever it occurred anywhere in its message: a record named ``A`` failing with a
    message about chain A (or ``resid`` with a 'residue ...' message) was reported without saying which record."""
    import io  # noqa: PLC0415

    from openesm3.cli.common import Failures  # noqa: PLC0415

    failures = Failures("fold")
    failures.add("A", "residue 12 of chain A: no CA atom")
    failures.add("resid", "residue-annotation vocabulary missing")
    failures.add("x.pdb", "x.pdb: line 3: not a PDB record")
    failures.add("p1", "protein 'p1': sequence and structure lengths differ")
    failures.add("", "no name")
    out = io.StringIO()
    failures.report(6, "structure(s)", stream=out)
    assert out.getvalue().splitlines() == [
        "openesm3 fold: error: A: residue 12 of chain A: no CA atom",
        "openesm3 fold: error: resid: residue-annotation vocabulary missing",
        "openesm3 fold: error: x.pdb: line 3: not a PDB record",
        "openesm3 fold: error: protein 'p1': sequence and structure lengths differ",
        "openesm3 fold: error: : no name",
        "openesm3 fold: 5 of 6 structure(s) failed",
    ]
