"""Bad input raises StructureFileError naming the file and the problem (and the line, for PDB records)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from openesm3.errors import OpenESM3Error, StructureFileError
from openesm3.structure import load_chain, load_structure
from tests.unit.structure_helpers import DERIVED, STRUCTURES


def _pdb_text() -> str:
    return gzip.decompress((STRUCTURES / "2ZTA.pdb.gz").read_bytes()).decode()


def _replace_line(text: str, index: int, new: str) -> tuple[str, int]:
    """Replace the ``index``-th ATOM line; return the text and its 1-based line number."""
    lines = text.splitlines()
    atom_lines = [i for i, line in enumerate(lines) if line.startswith("ATOM")]
    lines[atom_lines[index]] = new
    return "\n".join(lines) + "\n", atom_lines[index] + 1


def _atom_line(index: int) -> str:
    return [line for line in _pdb_text().splitlines() if line.startswith("ATOM")][index]


def _expect(path: Path, *fragments: str, **kwargs: object) -> StructureFileError:
    with pytest.raises(StructureFileError) as info:
        load_structure(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, OpenESM3Error)
    return info.value


@pytest.mark.parametrize(("name", "data"), [("empty.pdb", b""), ("blank.cif", b"\n  \n"), ("empty.pdb.gz", None)])
def test_empty_files(tmp_path: Path, name: str, data: bytes | None) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if data is None else data)
    _expect(path, "empty file")


def test_no_protein_residues_names_what_was_found(tmp_path: Path) -> None:
    waters = [line for line in _pdb_text().splitlines() if line.startswith("HETATM") and "HOH" in line]
    ligand = "HETATM 9999  S   SO4 A 901      10.000  10.000  10.000  1.00 20.00           S"
    path = tmp_path / "waters.pdb"
    path.write_text("\n".join([*waters, ligand]) + "\nEND\n")
    _expect(path, "no protein residues", "HOH", "SO4")


def test_only_a_free_amino_acid_ligand(tmp_path: Path) -> None:
    lines = gzip.decompress((STRUCTURES / "1jhg.pdb.gz").read_bytes()).decode().splitlines()
    trp = [line for line in lines if line.startswith("HETATM") and line[17:20] == "TRP"]
    path = tmp_path / "trp.pdb"
    path.write_text("\n".join(trp) + "\n")
    _expect(path, "no protein residues", "TRP", "ligands")


def test_truncated_record_gives_the_line(tmp_path: Path) -> None:
    text, line_no = _replace_line(_pdb_text(), 10, _atom_line(10)[:40])
    path = tmp_path / "truncated.pdb"
    path.write_text(text)
    _expect(path, f"line {line_no}", "truncated ATOM record")


def test_a_record_cut_one_column_into_the_z_coordinate_is_truncated(tmp_path: Path) -> None:
    text, line_no = _replace_line(_pdb_text(), 10, _atom_line(10)[:53])  # z is columns 47-54
    path = tmp_path / "truncated.pdb"
    path.write_text(text)
    _expect(path, f"line {line_no}", "truncated ATOM record (53 characters")


def test_file_cut_in_the_middle_of_a_record(tmp_path: Path) -> None:
    text = _pdb_text()
    cut = text.index(_atom_line(30)) + 35
    path = tmp_path / "cut.pdb"
    path.write_text(text[:cut])
    _expect(path, "truncated ATOM record")


@pytest.mark.parametrize(
    ("columns", "bad", "what"),
    [
        ((30, 38), "  12.3x5", "x coordinate '12.3x5' is not a number"),
        ((46, 54), "     nan", "z coordinate 'nan' is not finite"),
        ((54, 60), "  1.x0", "occupancy '1.x0' is not a number"),
        ((22, 26), "  1?", "residue number '1?' is not an integer"),
        ((38, 46), "        ", "y coordinate (blank) is not a number"),
    ],
)
def test_non_numeric_fields_give_the_line(tmp_path: Path, columns: tuple[int, int], bad: str, what: str) -> None:
    line = _atom_line(7)
    text, line_no = _replace_line(_pdb_text(), 7, line[: columns[0]] + bad + line[columns[1] :])
    path = tmp_path / "bad.pdb"
    path.write_text(text)
    _expect(path, f"line {line_no}", what)


def test_unknown_chain_lists_the_available_ones() -> None:
    path = STRUCTURES / "2ZTA.pdb.gz"
    _expect(path, "chain 'Z' not found", "protein chains: 'A', 'B'", chains=["Z"])
    with pytest.raises(StructureFileError, match="chain 'Q' not found"):
        load_chain(path, "Q")


def test_empty_chain_selection() -> None:
    _expect(STRUCTURES / "2ZTA.pdb.gz", "no chain ids given", "'A', 'B'", chains=[])


@pytest.mark.parametrize("model", [0, 2, -1])
def test_unknown_model(model: int) -> None:
    _expect(STRUCTURES / "2ZTA.pdb.gz", f"model {model} not found", "1 model(s)", model=model)


def test_unknown_model_in_a_two_model_file() -> None:
    _expect(DERIVED / "1a62_two_models.cif", "model 3 not found", "2 model(s)", model=3)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "protein.xyz"
    path.write_text(">sp|P1|X\nMKTAYIAKQRQISFVKSHFSRQ\n")
    _expect(path, "unknown format")


def test_text_that_is_not_pdb_under_a_pdb_suffix(tmp_path: Path) -> None:
    path = tmp_path / "protein.pdb"
    path.write_text(">sp|P1|X\nMKTAYIAKQRQISFVKSHFSRQ\n")
    _expect(path, "no atom records")


def test_damaged_gzip(tmp_path: Path) -> None:
    data = (STRUCTURES / "2ZTA.pdb.gz").read_bytes()
    path = tmp_path / "cut.pdb.gz"
    path.write_bytes(data[: len(data) // 2])
    _expect(path, "damaged gzip")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.pdb", "no such file")
    _expect(tmp_path, "is a directory")


def test_truncated_mmcif(tmp_path: Path) -> None:
    text = (DERIVED / "1a62.cif").read_text()
    rows = [i for i, line in enumerate(text.splitlines()) if line.startswith("ATOM")]
    cut = "\n".join(text.splitlines()[: rows[40]]) + "\nATOM N N . ASN A 1 2"  # a row cut short
    path = tmp_path / "cut.cif"
    path.write_text(cut + "\n")
    _expect(path, "mmCIF")


def test_non_numeric_mmcif_coordinate_gives_the_row(tmp_path: Path) -> None:
    lines = (DERIVED / "1a62.cif").read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))]
    fields = lines[rows[4]].split()
    x_column = 15  # group_PDB ... Cartn_x is the 16th column written by biotite (see the file header)
    assert fields[x_column] == "19.631"
    fields[x_column] = "12.3x5"
    lines[rows[4]] = " ".join(fields)
    path = tmp_path / "bad.cif"
    path.write_text("\n".join(lines) + "\n")
    _expect(path, "atom_site row 5", "Cartn_x '12.3x5' is not a number")


@pytest.mark.parametrize(("column", "axis"), [(15, "x"), (17, "z")])
def test_mmcif_coordinate_beyond_float32_gives_the_row(tmp_path: Path, column: int, axis: str) -> None:
    # Coordinates are kept as float32, where 1e39 is inf: an infinite x made the atom (here a CA) silently
    # missing, an infinite z a ValueError naming neither file nor row.
    lines = (DERIVED / "1a62.cif").read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))]
    fields = lines[rows[1]].split()
    assert fields[2] == "CA"  # label_atom_id
    fields[column] = "-1e39"
    lines[rows[1]] = " ".join(fields)
    path = tmp_path / "far.cif"
    path.write_text("\n".join(lines) + "\n")
    _expect(path, "atom_site row 2", f"Cartn_{axis} -1e+39 is beyond the float32 range")


def test_mmcif_errors_name_the_column_read(tmp_path: Path) -> None:
    # Without auth_* columns the residue number is label_seq_id; the error named auth_seq_id, absent from the file.
    lines = (DERIVED / "1a62.cif").read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("_atom_site.")]
    keep = [i for i in header if "auth_" not in lines[i]]
    rows = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))]
    seq_column = [lines[i].strip() for i in header].index("_atom_site.label_seq_id")
    out = lines[: header[0]] + [lines[i] for i in keep]
    for n, i in enumerate(rows[:10]):
        fields = lines[i].split()
        if n == 6:
            fields[seq_column] = "."
        out.append(" ".join(fields[k] for k in range(len(header)) if header[k] in keep))
    path = tmp_path / "label_only.cif"
    path.write_text("\n".join(out) + "\n#\n")
    _expect(path, "atom_site row 7: label_seq_id is missing")


def test_mmcif_without_atoms(tmp_path: Path) -> None:
    path = tmp_path / "header_only.cif"
    path.write_text("data_X\n_entry.id X\n")
    _expect(path, "no atom_site")


def test_binarycif_with_a_column_shorter_than_the_others(tmp_path: Path) -> None:
    import msgpack  # noqa: PLC0415 - biotite's BinaryCIF dependency
    from biotite.structure.io import pdbx  # noqa: PLC0415

    raw = msgpack.unpackb((DERIVED / "1a62.bcif").read_bytes())
    sites = next(c for c in raw["dataBlocks"][0]["categories"] if c["name"] == "_atom_site")
    column = next(c for c in sites["columns"] if c["name"] == "B_iso_or_equiv")
    values = pdbx.BinaryCIFFile.read(DERIVED / "1a62.bcif").block["atom_site"]["B_iso_or_equiv"].as_array(float)
    column.update(pdbx.BinaryCIFColumn(pdbx.BinaryCIFData(values[:-5])).serialize())  # biotite writes none such
    path = tmp_path / "uneven.bcif"
    path.write_bytes(msgpack.packb(raw))
    _expect(
        path, "truncated BinaryCIF: atom_site columns have different lengths", f"'B_iso_or_equiv': {len(values) - 5}"
    )


def test_truncated_binarycif(tmp_path: Path) -> None:
    data = (DERIVED / "1a62.bcif").read_bytes()
    path = tmp_path / "cut.bcif"
    path.write_bytes(data[: len(data) // 3])
    _expect(path, "BinaryCIF")


def _mmcif(tmp_path: Path, drop: tuple[str, ...] = (), row: int = -1, column: str = "", value: str = "") -> Path:
    """1a62.cif's first 40 atom_site rows without the ``drop`` columns, ``column`` of ``row`` (0-based) set to
    ``value``."""
    lines = (DERIVED / "1a62.cif").read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("_atom_site.")]
    names = [lines[i].strip().removeprefix("_atom_site.") for i in header]
    keep = [k for k, name in enumerate(names) if name not in drop]
    out = lines[: header[0]] + [lines[header[k]] for k in keep]
    for n, i in enumerate([i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))][:40]):
        fields = lines[i].split()
        if n == row:
            fields[names.index(column)] = value
        out.append(" ".join(fields[k] for k in keep))
    path = tmp_path / "edited.cif"
    path.write_text("\n".join(out) + "\n#\n")
    return path


@pytest.mark.parametrize(
    ("drop", "names"),
    [
        (("auth_atom_id", "label_atom_id"), "auth_atom_id or label_atom_id"),
        (("auth_seq_id", "label_seq_id"), "auth_seq_id or label_seq_id"),
        (("auth_asym_id", "label_asym_id"), "auth_asym_id or label_asym_id"),
        (("Cartn_y",), "Cartn_y"),
    ],
)
def test_mmcif_without_a_needed_column_names_it(tmp_path: Path, drop: tuple[str, ...], names: str) -> None:
    _expect(_mmcif(tmp_path, drop), f"atom_site has no {names} column")


@pytest.mark.parametrize(
    ("column", "value"),
    [("Cartn_x", "nan"), ("Cartn_z", "inf"), ("B_iso_or_equiv", "nan"), ("occupancy", "-inf")],
)
def test_mmcif_non_finite_number_gives_the_row_and_column(tmp_path: Path, column: str, value: str) -> None:
    # as the PDB reader does: a NaN coordinate would otherwise make the atom silently missing
    _expect(_mmcif(tmp_path, row=3, column=column, value=value), f"atom_site row 4: {column} is not finite")


def test_mmcif_without_the_optional_columns_reads_the_same_atoms(tmp_path: Path) -> None:
    """Occupancy, B-factor, model number, group, altloc and insertion code may be absent (defaults: 1, 0, one model,
    ATOM, none, none)."""
    optional = ("occupancy", "B_iso_or_equiv", "pdbx_PDB_model_num", "group_PDB", "label_alt_id", "pdbx_PDB_ins_code")
    full = load_structure(_mmcif(tmp_path))
    (tmp_path / "edited.cif").rename(tmp_path / "full.cif")
    bare = load_structure(_mmcif(tmp_path, optional))
    assert [c.sequence for c in bare.chains] == [c.sequence for c in full.chains]
    for a, b in zip(bare.chains, full.chains, strict=True):
        np.testing.assert_array_equal(a.atom37, b.atom37)
        assert np.nanmax(np.abs(a.b_factor)) == 0 and np.nanmin(b.b_factor) > 0  # per atom, NaN where none


@pytest.mark.parametrize("text", ["this is not mmCIF\n", "# a comment only\n"])
def test_mmcif_without_a_data_block(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.cif"
    path.write_text(text)
    _expect(path, "not a mmCIF file: no data block")
