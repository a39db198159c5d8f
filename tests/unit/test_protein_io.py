"""FASTA and JSON for Protein records: parsing, errors naming file/line/record/key, exact round trips."""

from __future__ import annotations

import array
import collections
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from openesm3 import protein_io as io
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import InputError
from openesm3.protein import Protein, _well_formed_coordinate_lists
from tests.conftest import TEST_DATA

FASTA = """\
; a comment line
>seq1 first protein
MKTAYIAK
QRQISFVK*

>cplx chains=H,L some description
EVQL|DIQM
>lower
mktay_ak
"""


def test_parse_fasta_records_ids_and_lines() -> None:
    records = io.parse_fasta(FASTA, "in.fasta")
    assert [r.id for r in records] == ["seq1", "cplx", "lower"]
    assert records[0].description == "first protein"
    assert records[0].sequence == "MKTAYIAKQRQISFVK"  # wrapped lines joined, stop symbol dropped
    assert records[0].header_line == 2 and records[0].line_of(0) == 3 and records[0].line_of(9) == 4
    proteins = [r.to_protein() for r in records]
    assert proteins[1].chain_ids == ("H", "L") and proteins[1].sequence == "EVQL|DIQM"
    assert proteins[2].sequence == "MKTAY_AK" and proteins[2].name == "lower"
    assert io.parse_fasta(">c heavy and light chains=H,L\nEV|DI\n")[0].to_protein().chain_ids == ("H", "L")
    spaced = io.parse_fasta(">s\nMKTAY IAKQR\tQIS\n", "spaced.fasta")[0]  # blocks of 10, as GenBank prints them
    assert spaced.sequence == "MKTAYIAKQRQIS" and spaced.line_of(12) == 2


def test_invalid_residue_error_names_file_line_record_and_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.fasta"
    path.write_text(">ok\nMKT\n>broken desc\nMKTAY\nIAJKQ\n>ok2\nGG\n")
    with pytest.raises(InputError, match=r"bad\.fasta:5: record 'broken': sequence position 8: invalid character 'J'"):
        io.load_fasta(path)
    results = list(io.iter_fasta_proteins(path))  # a batch: the bad record is reported, the others convert
    assert [isinstance(item, Protein) for _, item in results] == [True, False, True]
    assert "broken" in str(results[1][1])


def test_only_the_stop_symbol_ending_a_record_is_dropped() -> None:
    # A '*' ending an inner line used to vanish, joining the sequences on either side of a stop codon.
    ok = io.parse_fasta(">a\nMKT\nAY*\n>b\nMKT\n*\n", "x.fa")
    assert [r.sequence for r in ok] == ["MKTAY", "MKT"]
    (record,) = io.parse_fasta(">a\nMKT*\nAYI\n", "x.fa")
    with pytest.raises(InputError, match=r"x\.fa:2: record 'a': sequence position 4: invalid character '\*'"):
        record.to_protein()


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("MKT\n>a\nMKT\n", r":1: not FASTA"),
        ("", r"no FASTA records"),
        ("\n; only a comment\n", r"no FASTA records"),
    ],
)
def test_malformed_fasta(text: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        io.parse_fasta(text, "x.fa")


def test_record_level_errors() -> None:
    records = io.parse_fasta(">empty\n>two chains=A\nMK|GG\n", "x.fa")
    with pytest.raises(InputError, match=r"x\.fa:1: record 'empty': empty sequence"):
        records[0].to_protein()
    with pytest.raises(InputError, match=r"x\.fa:2: record 'two'.*1 chain id"):
        records[1].to_protein()


def test_fasta_write_read_round_trip_and_gzip(tmp_path: Path) -> None:
    proteins = [
        Protein(sequence="M" * 200, name="long"),
        Protein(sequence="MK|GG|AA", chain_ids=("H", "L", "X"), name="cplx"),
        Protein(sequence="MK_T", name=""),
        Protein(sequence="MKT", chain_ids=("B",), name="one_chain_b"),  # its id was lost (read back as None)
        Protein(sequence="MK|T", chain_ids=("A", "B"), name="my\tcomplex 2"),  # the id is the header's first word
    ]
    path = tmp_path / "out.fasta"
    io.write_fasta(path, proteins)
    assert max(len(line) for line in path.read_text().splitlines()) == io.FASTA_LINE_WIDTH
    back = io.load_fasta(path)
    assert [p.sequence for p in back] == [p.sequence for p in proteins]
    assert back[1].chain_ids == ("H", "L", "X") and back[2].name == "protein_3"
    assert back[3].chain_ids == ("B",)
    assert back[4].name == "mycomplex2" and back[4].chain_ids == ("A", "B")
    gz = tmp_path / "out.fasta.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert [p.sequence for p in io.load_fasta(gz)] == [p.sequence for p in proteins]


def _full_protein() -> Protein:
    rng = np.random.default_rng(0)
    n = 9
    coords = rng.normal(scale=20, size=(n, 37, 3)).astype(np.float32)
    coords[:, 10:] = np.nan
    coords[4] = np.nan  # the chain break
    pae = rng.uniform(0, 30, size=(n, n)).astype(np.float32)
    pae[4] = np.nan
    return Protein(
        name="full",
        sequence="MKT_|GAVL",
        chain_ids=("A", "C"),
        secondary_structure="HHE__CCST",
        sasa=[0.0, 1.5, None, 151.4, None, 1e-3, 2.0 / 3.0, 12.0, 200.25],
        coordinates=coords,
        function_annotations=[FunctionAnnotation("IPR000001", 1, 3), FunctionAnnotation("kinase", 6, 9)],
        residue_annotations=[FunctionAnnotation("active site", 2, 2)],
        plddt=rng.uniform(0, 1, size=n).astype(np.float32),
        ptm=0.73,
        pae=pae,
        residue_index=np.array([1, 2, 3, 4, -1, 10, 11, 11, 12]),
        insertion_code=np.array(["", "", "", "", "", "", "", "A", ""]),
    )


def _assert_same(a: Protein, b: Protein) -> None:
    for field in ("name", "sequence", "chain_ids", "secondary_structure", "function_annotations",
                  "residue_annotations", "ptm"):  # fmt: skip
        assert getattr(a, field) == getattr(b, field), field
    for field in ("sasa", "coordinates", "plddt", "pae", "residue_index", "insertion_code"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype, field
            np.testing.assert_array_equal(x, y, err_msg=field)  # bit-exact, NaN in the same places


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    p = _full_protein()
    data = io.protein_to_json(p)
    assert data["format"] == "openesm3.protein" and data["version"] == 1
    assert data["sasa"][2] is None and data["coordinates"][4] == [None] * 37 and data["coordinates"][0][10] is None
    text = json.dumps(data, allow_nan=False)  # no bare NaN in the output
    _assert_same(io.protein_from_json(json.loads(text)), p)
    # float32 tracks in their own shortest text (0.1, not float64's 0.10000000149011612)
    short = io.protein_to_json(Protein(sequence="MK", plddt=np.array([0.1, 0.7], dtype=np.float32)))
    assert short["plddt"] == [0.1, 0.7]
    short = io.protein_to_json(Protein(sequence="M", coordinates=[_atom_n([1.1, -2.2, 33.3])]))
    assert short["coordinates"][0][0] == [1.1, -2.2, 33.3] and short["coordinates"][0][1:] == [None] * 36
    path = tmp_path / "p.json"
    p.save(path)
    _assert_same(Protein.load(path), p)
    io.write_json(tmp_path / "many.json", [p, Protein(sequence="MK")])
    many = io.read_json(tmp_path / "many.json")
    assert len(many) == 2 and many[1].sequence == "MK" and many[1].coordinates is None


def test_json_minimal_and_structure_round_trip() -> None:
    _assert_same(io.protein_from_json({"format": "openesm3.protein", "version": 1, "sequence": "MKT"}),
                 Protein(sequence="MKT"))  # fmt: skip
    p = Protein.from_structure(TEST_DATA / "structures" / "1a62.pdb.gz", with_annotations=True)
    _assert_same(io.protein_from_json(json.loads(io.json_string(p))), p)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"format": "other"}, r"key 'format'"),
        ({"version": 2}, r"version 2 was written by a newer OpenESM3"),
        ({"version": "1"}, r"key 'version'"),
        ({"version": True}, r"key 'version' must be a positive int, got True"),
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"sequence": 5}, r"key 'sequence': expected a string"),
        ({"sasa": [1.0, "x", None]}, r"key 'sasa'\[1\]: expected a number or null"),
        ({"coordinates": [[None] * 37, [None] * 36, [None] * 37]}, r"coordinates at residue 2: expected a list of 37"),
        ({"coordinates": [[[1, 2]] + [None] * 36] * 3}, r"coordinates at residue 1, atom 1 \(N\)"),
        ({"function_annotations": [{"label": "x", "start": 1}]}, r"key 'function_annotations'\[0\]"),
        ({"residue_annotations": [{"label": "x", "start": 1, "end": 2, "score": 1}]}, r"'residue_annotations'\[0\]"),
        ({"secondary_structure": "HH"}, r"protein 'p'.*disagree in length"),
        ({"ptm": "high"}, r"key 'ptm'"),
        ({"pae": [[1, 2], [3]]}, r"key 'pae': expected 2 nested list level"),
        ({"residue_index": [1, 2, 2**70]}, r"key 'residue_index': a residue number does not fit"),  # not OverflowError
        ({"sasa": [1.0, 10**400, None]}, r"key 'sasa'\[1\]: .* too large"),  # not OverflowError
        ({"coordinates": [[[10**400, 0, 0]] + [None] * 36] * 3}, r"residue 1, atom N: \[10+, 0, 0\] is beyond"),
        # a float beyond float32 became inf, i.e. a silently missing atom
        ({"coordinates": [[[1e39, 0, 0]] + [None] * 36] * 3}, r"residue 1, atom N: \[1e\+39, .* beyond the float32"),
    ],
)
def test_json_errors_name_the_key(change: dict, pattern: str) -> None:
    data = {"format": "openesm3.protein", "version": 1, "name": "p", "sequence": "MKT", **change}
    with pytest.raises(InputError, match=pattern) as info:
        io.protein_from_json(data, "in.json")
    assert str(info.value).startswith("in.json: ") and str(info.value).count("in.json") == 1  # named once


def _atom_n(xyz: Any, others: Any = None) -> list[Any]:
    """One residue of atom37 coordinate lists: atom N is ``xyz``, the 36 others ``others``."""
    return [xyz] + [others] * 36


def _from_python_and_json(coordinates: Any, sequence: str) -> list[Protein | str]:
    """The coordinates given to Protein and read from a JSON record: each protein, or its InputError's message with
    the JSON reader's file prefix removed (the rest must be the same: one parser)."""
    record = {"format": "openesm3.protein", "version": 1, "name": "p", "sequence": sequence, "coordinates": coordinates}
    out: list[Protein | str] = []
    for build in (lambda: Protein(name="p", sequence=sequence, coordinates=coordinates),
                  lambda: io.protein_from_json(record, "in.json")):  # fmt: skip
        try:
            out.append(build())
        except InputError as exc:
            out.append(str(exc).removeprefix("in.json: "))
    return out


@pytest.mark.parametrize(
    ("coordinates", "atom_n"),
    [
        ([], None),  # no residue: the API refused [] (shape (0,)), JSON read it as L = 0
        ((tuple(_atom_n((1.0, 2.0, 3.0))),), [1.0, 2.0, 3.0]),  # tuples: JSON refused them
        ([_atom_n([np.float32(1.5), np.int64(2), 3.0])], [1.5, 2.0, 3.0]),  # numpy numbers: JSON refused them
        ([np.array(_atom_n([4.0, 4.0, 4.0], [np.nan] * 3))], [4.0, 4.0, 4.0]),  # a residue as an array: JSON refused it
        ([_atom_n([1.0, 2.0, 3.0], [None, None, None])], [1.0, 2.0, 3.0]),  # an atom of three None is missing
        (np.arange(37 * 3).reshape(1, 37, 3), None),  # an int array
        ([_atom_n(torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16))], [1.0, 2.0, 3.0]),  # an atom as a tensor
        ([collections.deque(_atom_n(array.array("d", [1, 2, 3])))], [1.0, 2.0, 3.0]),  # other sequences
    ],
)
def test_coordinates_the_api_or_json_accepted_are_read_alike_by_both(coordinates: Any, atom_n: Any) -> None:
    api, from_json = _from_python_and_json(coordinates, "M" * len(coordinates))
    for p in (api, from_json):
        assert isinstance(p, Protein), p
        assert p.coordinates.shape == (len(coordinates), 37, 3) and p.coordinates.dtype == np.float32
        if atom_n is not None:
            assert p.coordinates[0, 0].tolist() == atom_n and np.isnan(p.coordinates[0, 1:]).all()


def test_every_atom_of_a_residue_list_is_read_in_atom37_order() -> None:
    residue = [[float(a), 0.0, -float(a)] for a in range(37)]
    for p in _from_python_and_json([residue, residue[::-1]], "MK"):
        assert isinstance(p, Protein), p
        assert p.coordinates[0, :, 0].tolist() == list(range(37))  # the last atom (OXT) too
        assert p.coordinates[1, :, 2].tolist() == [-float(a) for a in range(36, -1, -1)]


_BAD_ATOM_N = "coordinates at residue 1, atom 1 (N): expected [x, y, z] or None (JSON null) for a missing atom, got "


@pytest.mark.parametrize(
    ("coordinates", "message"),
    [
        # the API took a dict as 0 residues, a str / number failed a dtype / shape check
        ({}, "coordinates must be a list of residues [L][37][3], got dict"),
        ("1 2 3", "coordinates must be a list of residues [L][37][3], got str"),
        ([5], "coordinates at residue 1: expected a list of 37 atoms (atom37 order), got 5"),
        # the API read True as 1.0 and [1.0, None, 3.0] as a missing atom when every atom was a list of three
        ([_atom_n([True, 2.0, 3.0], [0.0, 0.0, 0.0])], _BAD_ATOM_N + "[True, 2.0, 3.0]"),
        ([_atom_n([1.0, None, 3.0], [0.0, 0.0, 0.0])], _BAD_ATOM_N + "[1.0, None, 3.0]"),
        # and refused strings or one list level too many without naming the residue
        ([_atom_n(["1", "2", "3"], ["0", "0", "0"])], _BAD_ATOM_N + "['1', '2', '3']"),
        ([_atom_n([[1.0], [2.0], [3.0]], [[0.0]] * 3)], _BAD_ATOM_N + "[[1.0], [2.0], [3.0]]"),
        # an int beyond the float range: an OverflowError traceback from the API
        ([_atom_n([0.0, 10**400, 0.0], [0.0] * 3)], f"residue 1, atom N: [0.0, {10**400}, 0.0] is beyond the float32"),
        # complex numbers: the API dropped the imaginary part
        (np.full((1, 37, 3), 1 + 2j), "coordinates must be numbers, got dtype complex128"),
        # as True in a list, a bool array is not numbers
        (np.zeros((1, 37, 3), dtype=bool), "coordinates must be numbers, got dtype bool"),
        (torch.zeros(1, 37, 3, dtype=torch.bool), "coordinates must be numbers, got dtype bool"),  # a tensor alike
        # too few or too many atoms, told how many
        ([[None] * 36], "coordinates at residue 1: expected a list of 37 atoms (atom37 order), got 36"),
        ([[None] * 38], "coordinates at residue 1: expected a list of 37 atoms (atom37 order), got 38"),
        # a residue that is a single number, as a 0-d array or tensor (not a TypeError from iterating it)
        ([np.array(5.0)], "coordinates at residue 1: expected a list of 37 atoms (atom37 order), got 5.0"),
        ([torch.tensor(5.0)], "coordinates at residue 1: expected a list of 37 atoms (atom37 order), got "),
        # an atom that is not three numbers: none or two None are not a missing atom, four numbers not an atom
        ([_atom_n([])], _BAD_ATOM_N + "[]"),
        ([_atom_n([None, None])], _BAD_ATOM_N + "[None, None]"),
        ([_atom_n([1.0, 2.0, 3.0, 4.0])], _BAD_ATOM_N + "[1.0, 2.0, 3.0, 4.0]"),
        ([_atom_n(5)], _BAD_ATOM_N + "5"),
        ([_atom_n("abc")], _BAD_ATOM_N + "'abc'"),
        ([_atom_n(np.array(5.0))], _BAD_ATOM_N + "5.0"),
        ([_atom_n(b"\x01\x02\x03")], _BAD_ATOM_N + "b'\\x01\\x02\\x03'"),  # bytes are not three small ints
        ([_atom_n([np.True_, 2.0, 3.0])], _BAD_ATOM_N),  # a numpy bool is no more a number than True
        # a set has no order: {3.0, 1.0, 2.0} was read as the atom [1.0, 2.0, 3.0]
        ([_atom_n({3.0, 1.0, 2.0})], _BAD_ATOM_N + "{"),
        ([frozenset([None])], "coordinates at residue 1: expected a list of 37 atoms (atom37 order), got frozenset("),
        ({"a": 1}.keys(), "coordinates must be a list of residues [L][37][3], got dict_keys"),
    ],
)
def test_coordinates_are_refused_alike_by_the_api_and_json(coordinates: Any, message: str) -> None:
    api, from_json = _from_python_and_json(coordinates, "M")
    assert api == from_json, "one parser, one message"
    assert isinstance(api, str) and api.startswith("protein 'p': ") and message in api, api


def test_load_and_save_dispatch_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "one.fasta").write_text(">a\nMKT\n")
    (tmp_path / "two.fa").write_text(">a\nMKT\n>b\nGG\n")
    assert Protein.load(tmp_path / "one.fasta").sequence == "MKT"
    with pytest.raises(InputError, match="holds 2 proteins, expected exactly one"):
        Protein.load(tmp_path / "two.fa")
    assert len(io.load_proteins(tmp_path / "two.fa")) == 2
    p = Protein.load(TEST_DATA / "structures" / "2ZTA.pdb.gz", chains=["B"])
    assert p.chain_ids == ("B",)
    p.save(tmp_path / "b.cif")
    assert Protein.load(tmp_path / "b.cif").chain_ids == ("B",)
    for name in ("b.fasta.gz", "b.json.gz"):  # written as gzip, not plain text under a .gz name
        p.save(tmp_path / name)
        assert gzip.decompress((tmp_path / name).read_bytes()).startswith((b">", b"{"))
        assert Protein.load(tmp_path / name).sequence == p.sequence
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json:1: not valid JSON"):
        Protein.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no such file"):
        io.read_fasta(tmp_path / "missing.fasta")


def test_json_refuses_an_infinite_sasa_it_cannot_write_instead_of_masking_it() -> None:
    # +inf SASA is the open top bin (token 18); JSON has no infinity, and null would read back as masked (token 0).
    with pytest.raises(InputError, match=r"protein 'p': sasa at position 2 is inf"):
        io.json_string(Protein(sequence="MKT", sasa=[1.0, np.inf, None], name="p"))


def test_json_round_trip_of_an_empty_protein_with_every_array_track() -> None:
    p = Protein(
        sequence="", sasa=np.zeros(0), plddt=np.zeros(0), pae=np.zeros((0, 0)), coordinates=np.zeros((0, 37, 3))
    )
    q = io.protein_from_json(json.loads(io.json_string(p)))
    assert q.sequence == "" and q.pae.shape == (0, 0) and q.coordinates.shape == (0, 37, 3) and len(q.sasa) == 0


def test_structure_options_are_refused_for_json_and_fasta_instead_of_ignored(tmp_path: Path) -> None:
    (tmp_path / "one.fasta").write_text(">a\nMKT\n")
    with pytest.raises(InputError, match=r"one\.fasta: with_annotations applies to structure files only"):
        Protein.load(tmp_path / "one.fasta", with_annotations=True)  # no SS8 / SASA can be computed from FASTA
    with pytest.raises(InputError, match=r"chains applies to structure files only"):
        io.load_proteins(tmp_path / "one.fasta", chains=["A"])
    assert Protein.load(tmp_path / "one.fasta", chains=None, with_annotations=False).sequence == "MKT"  # defaults


# ---- the fast path for well-formed coordinate lists ------------------------------------------------------
def _read_by_the_loop(coordinates: Any) -> np.ndarray:
    """What the per-atom loop alone makes of ``coordinates`` (float64, before the float32 checks)."""
    return Protein(name="p")._coordinates_from_lists(coordinates)


def _with_numpy_and_int_numbers(residues: list[list[Any]]) -> list[list[Any]]:
    """``residues`` with some coordinates as ints (big ones too) and NumPy scalars, all of which the fast path takes."""
    kinds = [int, np.float32, np.float16, np.int8, np.int64, np.uint64, float]
    out = [[None if atom is None else list(atom) for atom in residue] for residue in residues]
    for i, residue in enumerate(out):
        atom = next((a for a in residue if a is not None), None)
        if atom is not None:
            atom[0] = kinds[i % len(kinds)](min(abs(round(atom[0])), 100))
    out[0][0] = [2**70 + 1, -(2**63) - 1, np.uint64(2**64 - 1)]  # beyond int64, rounded to float64 as float() does
    return out


@pytest.mark.parametrize("name", ["1a62.pdb.gz", "2ZTA.pdb.gz", "1IR3.pdb.gz"])
def test_the_fast_path_reads_lists_of_real_structures_exactly_as_the_loop(name: str) -> None:
    # The fast path must give the very array the per-atom loop gives, atoms missing as NaN or as None alike.
    p = Protein.from_structure(TEST_DATA / "structures" / name)
    as_nan = p.coordinates.tolist()  # every atom [x, y, z], NaN for a missing one (chain breaks included)
    as_none = json.loads(io.json_string(p))["coordinates"]  # a missing atom None, as in a JSON file
    assert any(atom is None for residue in as_none for atom in residue)
    for given in (as_nan, as_none, _with_numpy_and_int_numbers(as_none)):
        fast = _well_formed_coordinate_lists(given)
        assert fast is not None, "the fast path was not taken"
        loop = _read_by_the_loop(given)
        assert fast.dtype == loop.dtype == np.float64 and fast.shape == loop.shape == (len(p), 37, 3)
        np.testing.assert_array_equal(fast, loop)  # bit for bit, NaN in the same places
    for given in (as_nan, as_none):
        np.testing.assert_array_equal(Protein(sequence=p.sequence, coordinates=given).coordinates, p.coordinates)


def _lists_with(value: Any, residue: int = 1, atom: int = 0, leaf: int | None = None) -> list[list[Any]]:
    """Two well-formed residues (all 37 atoms present) with one atom, or one number of it, replaced by ``value``."""
    residues: list[list[Any]] = [[[float(a), 1.5, -2.0] for a in range(37)] for _ in range(2)]
    if leaf is None:
        residues[residue][atom] = value
    else:
        residues[residue][atom][leaf] = value
    return residues


_BAD_ATOM_2_N = "coordinates at residue 2, atom 1 (N): expected [x, y, z] or None (JSON null) for a missing atom, got "


@pytest.mark.parametrize(
    ("coordinates", "message"),
    [
        (_lists_with(True, leaf=1), _BAD_ATOM_2_N + "[0.0, True, -2.0]"),  # np.array would read it as 1.0
        (_lists_with(np.True_, leaf=1), _BAD_ATOM_2_N + "[0.0, True, -2.0]"),
        (_lists_with("1.5", leaf=1), _BAD_ATOM_2_N + "[0.0, '1.5', -2.0]"),  # ... and this as 1.5
        (_lists_with(None, leaf=1), _BAD_ATOM_2_N + "[0.0, None, -2.0]"),  # ... and this as NaN
        (_lists_with(np.array(5.0), leaf=1), _BAD_ATOM_2_N + "[0.0, array(5.), -2.0]"),  # ... and this as 5.0
        (_lists_with(np.array([5.0]), leaf=1), _BAD_ATOM_2_N + "[0.0, array([5.]), -2.0]"),
        (_lists_with(1 + 2j, leaf=1), _BAD_ATOM_2_N + "[0.0, (1+2j), -2.0]"),
        (
            _lists_with(10**400, leaf=1),
            f"coordinates of residue 2, atom N: [0.0, {10**400}, -2.0] is beyond the float32",
        ),
        (_lists_with([1.0, 2.0]), _BAD_ATOM_2_N + "[1.0, 2.0]"),  # ragged: np.array would raise its own error
        (_lists_with([1.0, 2.0, 3.0, 4.0]), _BAD_ATOM_2_N + "[1.0, 2.0, 3.0, 4.0]"),
        (_lists_with({3.0, 1.0, 2.0}), _BAD_ATOM_2_N + "{"),  # a set has no order
        (_lists_with([None] * 36, atom=slice(None)), "coordinates at residue 2: expected a list of 37 atoms"),
        ({0: _lists_with(0.0)[0]}, "coordinates must be a list of residues [L][37][3], got dict"),
    ],
)
def test_the_fast_path_leaves_malformed_lists_to_the_loop_and_its_message(coordinates: Any, message: str) -> None:
    assert _well_formed_coordinate_lists(coordinates) is None
    with pytest.raises(InputError) as loop:
        _read_by_the_loop(coordinates)
    api, from_json = _from_python_and_json(coordinates, "MK")
    assert api == from_json == str(loop.value) and message in api, api


@pytest.mark.parametrize(
    "change",
    [
        lambda atoms: [tuple(atoms[0])] + atoms[1:],  # a tuple atom
        tuple,  # a tuple residue
        np.array,  # a residue as a NumPy array
        lambda atoms: [np.array(atom) for atom in atoms],  # atoms as NumPy arrays
        lambda atoms: [[np.longdouble(x) for x in atom] for atom in atoms],  # wider than float64: left to float()
        lambda atoms: [[None, None, None]] + atoms[1:],  # a missing atom as three None
    ],
)
def test_lists_the_fast_path_leaves_to_the_loop_are_still_read(change: Any) -> None:
    residues = _lists_with([0.0, 1.5, -2.0])
    expected = np.array(residues, dtype=np.float32)
    residues[1] = change(residues[1])
    if isinstance(residues[1][0], list) and residues[1][0] == [None, None, None]:
        expected[1, 0] = np.nan
    assert _well_formed_coordinate_lists(residues) is None
    for p in _from_python_and_json(residues, "MK"):
        assert isinstance(p, Protein), p
        np.testing.assert_array_equal(p.coordinates, expected)


def test_json_infinity_in_coordinates_is_refused_and_nan_is_a_missing_atom(tmp_path: Path) -> None:
    # Python's json module reads the non-standard Infinity; it was taken as a missing atom without a word.
    atoms = ["[1.5, 2.0, -3.0]"] + ["null"] * 36
    atoms[1] = "[1.0, Infinity, 2.0]"
    path = tmp_path / "inf.json"
    path.write_text(f'{{"format": "openesm3.protein", "version": 1, "name": "x", "sequence": "M", "coordinates": '
                    f'[[{", ".join(atoms)}]]}}')  # fmt: skip
    with pytest.raises(InputError) as info:
        io.read_json(path)
    assert str(info.value) == (
        f"{path}: protein 'x': coordinates of residue 1, atom CA: [1.0, inf, 2.0] is infinite; a missing atom is NaN "
        "(null in JSON)"
    )
    path.write_text(path.read_text().replace("Infinity", "NaN"))
    (p,) = io.read_json(path)
    assert p.coordinates[0, 0].tolist() == [1.5, 2.0, -3.0] and np.isnan(p.coordinates[0, 1:]).all()


def test_json_infinity_in_pae_is_refused_on_reading_and_null_round_trips(tmp_path: Path) -> None:
    # Python's json reads Infinity: the record was read, but writing it back raised; now reading refuses it.
    path = tmp_path / "pae.json"
    path.write_text('{"format": "openesm3.protein", "version": 1, "name": "x", "sequence": "MK", '
                    '"pae": [[0.5, Infinity], [null, 1.25]]}')  # fmt: skip
    with pytest.raises(InputError) as info:
        io.read_json(path)
    assert str(info.value) == (
        f"{path}: protein 'x': pae at position (1, 2) is inf; PAE must be finite (Angstrom; an undefined pair is NaN, "
        "null in JSON)"
    )
    path.write_text(path.read_text().replace("Infinity", "1e39"))  # beyond float32: named as written, not as inf
    with pytest.raises(InputError, match=r"pae at position \(1, 2\) is 1e\+39; PAE must be finite"):
        io.read_json(path)
    path.write_text(path.read_text().replace("1e39", "2.5"))
    (p,) = io.read_json(path)
    io.write_json(tmp_path / "back.json", p)
    assert json.loads((tmp_path / "back.json").read_text())["pae"] == [[0.5, 2.5], [None, 1.25]]


def test_plddt_beyond_float32_is_named_as_written_and_a_value_that_rounds_to_one_is_kept(tmp_path: Path) -> None:
    # pLDDT was read as float32, so 1e39 in a file (or from Python) was reported as "inf".
    path = tmp_path / "plddt.json"
    path.write_text('{"format": "openesm3.protein", "version": 1, "name": "x", "sequence": "MK", '
                    '"plddt": [0.5, 1e39]}')  # fmt: skip
    with pytest.raises(InputError) as info:
        io.read_json(path)
    assert str(info.value) == f"{path}: protein 'x': plddt at position 2 is 1e+39; pLDDT must lie in [0, 1]"
    with pytest.raises(InputError, match=r"plddt at position 1 is -1e\+39;"):
        Protein(sequence="MK", plddt=[-1e39, 0.5])
    path.write_text(path.read_text().replace("1e39", "1.00000001"))  # float32 1.0, accepted as before
    (p,) = io.read_json(path)
    assert p.plddt.dtype == np.float32 and p.plddt.tolist() == [0.5, 1.0]
