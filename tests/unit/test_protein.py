"""The Protein record: validation with errors that name the item, complexes, and structures in and out."""

from __future__ import annotations

import dataclasses
import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.annotations import FunctionAnnotation
from openesm3.errors import InputError
from openesm3.protein import Protein, default_chain_ids
from openesm3.structure import load_structure
from openesm3.structure import residue_constants as RC
from openesm3.structure.complex import ProteinComplex
from openesm3.structure.features import featurize
from tests.conftest import TEST_DATA

STRUCTURES = TEST_DATA / "structures"


# ---- validation ------------------------------------------------------------------------------------------
def test_sequence_is_uppercased_and_masks_and_breaks_are_kept() -> None:
    p = Protein(sequence="mk_t|ga", name="x")
    assert p.sequence == "MK_T|GA" and len(p) == 7
    assert p.is_complex and p.n_chains == 2
    assert p.chain_segments() == [("A", 0, 4), ("B", 5, 7)]
    assert p.chain_break_positions().tolist() == [4]


@pytest.mark.parametrize(("sequence", "chain"), [("|MKT", "chain 1 of 2"), ("MK||T", "chain 2 of 3"),
                                                 ("MKT|", "chain 2 of 2"), ("|", "chain 1 of 2")])  # fmt: skip
def test_an_empty_chain_is_an_error(sequence: str, chain: str) -> None:
    # A structure cannot hold a chain without residues: such a protein would be folded or written one chain short.
    with pytest.raises(InputError, match=rf"sequence: {chain} is empty"):
        Protein(sequence=sequence)
    assert Protein(sequence="MK|T").n_chains == 2


def test_invalid_residue_names_protein_and_position() -> None:
    with pytest.raises(InputError, match=r"protein 'p1'.*position 3.*'J'"):
        Protein(sequence="MKJT", name="p1")


def test_tracks_that_disagree_in_length_are_named() -> None:
    with pytest.raises(InputError, match=r"protein 'q'.*sequence has 4.*secondary_structure has 3"):
        Protein(sequence="MKTA", secondary_structure="HHH", name="q")
    with pytest.raises(InputError, match=r"sasa has 2"):
        Protein(sequence="MKT", sasa=[1.0, 2.0])
    with pytest.raises(InputError, match=r"coordinates has 2"):
        Protein(sequence="MKT", coordinates=np.zeros((2, 37, 3)))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"secondary_structure": "HXH"}, r"position 2.*'X'"),
        ({"sasa": [1.0, -2.0, None]}, r"sasa at position 2 is negative"),
        ({"sasa": [1.0, "a", None]}, r"sasa at position 2: expected a number"),
        ({"plddt": [0.5, 1.5, 0.1]}, r"plddt at position 2.*\[0, 1\]"),
        ({"ptm": 2.0}, r"pTM must lie in \[0, 1\]"),
        ({"pae": np.zeros((3, 2))}, r"pae must be a square"),
        ({"coordinates": np.zeros((3, 14, 3))}, r"\[L, 37, 3\]"),
        ({"function_annotations": [FunctionAnnotation("IPR000001", 2, 4)]}, r"range 2\.\.4 is not within 1\.\.3"),
        ({"residue_annotations": [("site", 0, 1)]}, r"residue_annotations.*not within"),
        ({"chain_ids": ("A", "B")}, r"2 chain id\(s\).*1 chain"),
        ({"chain_ids": "A"}, r"list of ids"),
    ],
)
def test_bad_tracks_raise_naming_the_track(kwargs: dict, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        Protein(sequence="MKT", name="bad", **kwargs)


def test_annotation_messages_show_numpy_values_plainly() -> None:
    # NumPy 2's repr would write this as FunctionAnnotation(label=np.str_('kringle'), start=np.float64(1.5), ...).
    bad = [(np.str_("kringle"), np.float64(1.5), np.int64(3))]
    with pytest.raises(InputError) as info:
        Protein(sequence="MKT", name="bad", function_annotations=bad)
    assert str(info.value) == (
        "protein 'bad': function_annotations: function annotation 0 (label='kringle', start=1.5, end=3): "
        "start must be an int, got float64"
    )


def test_annotation_messages_show_numpy_arrays_plainly_and_in_their_own_digits() -> None:
    # A 0-d float32 array (a tensor's .numpy()) was shown as 1.100000023841858, an object array with NumPy reprs.
    bad_start = [("kringle", np.array(1.1, dtype=np.float32), 3)]
    with pytest.raises(InputError, match=r"\(label='kringle', start=1\.1, end=3\): start must be an int, got ndarray$"):
        Protein(sequence="MKT", name="bad", function_annotations=bad_start)
    bad_item = [np.array([np.str_("kringle"), np.float32(1.1)], dtype=object)]
    with pytest.raises(InputError, match=r"expected FunctionAnnotation\(label, start, end\), got \['kringle', 1\.1\]$"):
        Protein(sequence="MKT", name="bad", function_annotations=bad_item)


def test_annotation_messages_name_every_position_plainly() -> None:
    with pytest.raises(InputError) as info:
        Protein(sequence="MKT", name="bad", function_annotations=[("kringle", 1, np.float64(2.5))])
    assert str(info.value).endswith("(label='kringle', start=1, end=2.5): end must be an int, got float64")
    with pytest.raises(InputError) as info:
        Protein(sequence="MKT", name="bad", function_annotations=[("kringle", np.int64(2), 4)])
    assert str(info.value) == (
        "protein 'bad': function_annotations: function annotation 0 (label='kringle', start=2, end=4): range 2..4 "
        "is not within 1..3 (1-indexed, both ends inclusive, start <= end)"
    )


def test_plddt_and_pae_beyond_float32_are_named_without_a_numpy_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "overflow encountered in cast" was printed before the message
        with pytest.raises(InputError, match=r"plddt at position 2 is 1e\+39;"):
            Protein(sequence="MK", plddt=[0.5, 1e39])
        with pytest.raises(InputError, match=r"pae at position \(1, 2\) is 1e\+39;"):
            Protein(sequence="MK", pae=[[0.0, 1e39], [0.0, 0.0]])


def test_plddt_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(InputError, match=r"plddt must be one value per residue, got shape \(1, 2\)$"):
        Protein(sequence="MK", plddt=[[0.5, 0.5]])


def test_values_are_normalised() -> None:
    coords = np.random.default_rng(0).normal(size=(3, 37, 3))
    coords[1, 5] = np.nan
    p = Protein(
        sequence="MKT",
        secondary_structure=list("hh_"),
        sasa=[1.0, None, 3],
        coordinates=coords,
        plddt=[0.1, None, 0.9],
        function_annotations=[("IPR000001", 1, 2)],
    )
    assert p.secondary_structure == "HH_"
    assert p.sasa.dtype == np.float64 and np.isnan(p.sasa[1])
    assert p.coordinates.dtype == np.float32 and np.isnan(p.coordinates[1, 5]).all()
    assert np.isnan(p.plddt[1]) and p.plddt.dtype == np.float32
    assert p.function_annotations == (FunctionAnnotation("IPR000001", 1, 2),)
    with pytest.raises(InputError, match="no per-residue track"):
        len(Protein())


def test_default_chain_ids() -> None:
    assert default_chain_ids(3) == ("A", "B", "C")
    ids = default_chain_ids(70)
    assert len(set(ids)) == 70 and ids[62] == "A1"


# ---- structures ------------------------------------------------------------------------------------------
def test_from_structure_joins_chains_with_breaks() -> None:
    complex_ = load_structure(STRUCTURES / "1AM7.pdb.gz")
    p = Protein.from_structure(STRUCTURES / "1AM7.pdb.gz")
    assert p.name == "1AM7"
    assert p.sequence == complex_.sequence_with_breaks()
    assert p.chain_ids == complex_.chain_ids and len(complex_.chain_ids) == 3
    assert len(p) == len(complex_) + 2
    breaks = p.chain_break_positions()
    assert len(breaks) == 2 and np.isnan(p.coordinates[breaks]).all()
    np.testing.assert_array_equal(p.coordinates[: breaks[0]], complex_.chains[0].atom37)
    assert p.residue_index[breaks].tolist() == [-1, -1]
    only_b = Protein.from_structure(STRUCTURES / "1AM7.pdb.gz", chains="B")
    assert only_b.chain_ids == ("B",) and only_b.sequence == complex_["B"].sequence


def test_from_structure_takes_a_chains_masked_atoms_as_missing_whatever_they_hold() -> None:
    # A chain may keep +inf (the tensors' missing atom) where its mask says absent; since a Protein refuses an
    # infinite coordinate, such a chain (a valid ProteinChain) could no longer become a Protein.
    complex_ = load_structure(STRUCTURES / "1AM7.pdb.gz")
    first, *rest = complex_.chains
    atom37 = first.atom37.copy()
    atom37[~first.atom37_mask] = np.inf
    atom37[0, RC.ATOM_CA] = 7.0  # a finite value where the mask says absent is missing too
    mask = first.atom37_mask.copy()
    mask[0, RC.ATOM_CA] = False
    chain = dataclasses.replace(first, atom37=atom37, atom37_mask=mask)
    p = Protein.from_structure(ProteinComplex((chain, *rest), complex_.name))
    expected = Protein.from_structure(complex_).coordinates.copy()
    expected[0, RC.ATOM_CA] = np.nan
    np.testing.assert_array_equal(p.coordinates, expected)
    assert np.isnan(p.coordinates[: len(first)][~mask]).all()


def test_with_annotations_matches_featurize_per_chain() -> None:
    path = STRUCTURES / "2ZTA.pdb.gz"
    p = Protein.from_structure(path, with_annotations=True)
    features = featurize(load_structure(path))
    assert p.secondary_structure == "_".join(f.ss8 for f in features)
    (b,) = p.chain_break_positions()
    assert np.isnan(p.sasa[b])
    np.testing.assert_allclose(p.sasa[:b], features[0].sasa, rtol=1e-6)
    np.testing.assert_allclose(p.sasa[b + 1 :], features[1].sasa, rtol=1e-6)


def test_structure_round_trip_keeps_chains_numbering_and_coordinates(tmp_path: Path) -> None:
    p = Protein.from_structure(STRUCTURES / "1orc.pdb.gz")  # insertion codes
    assert set(p.insertion_code.tolist()) > {""}
    for suffix in (".pdb", ".cif", ".pdb.gz"):
        out = tmp_path / f"out{suffix}"
        p.save(out)
        back = Protein.from_structure(out)
        assert back.sequence == p.sequence and back.chain_ids == p.chain_ids
        np.testing.assert_array_equal(back.residue_index, p.residue_index)
        np.testing.assert_array_equal(back.insertion_code, p.insertion_code)
        np.testing.assert_allclose(back.coordinates, p.coordinates, atol=1e-3)
    complex_pdb = Protein.from_structure(STRUCTURES / "2ZTA.pdb.gz")
    text = complex_pdb.to_pdb_string()
    assert text.count("TER") == 2
    assert {line[21] for line in text.splitlines() if line.startswith("ATOM")} == {"A", "B"}


def test_plddt_goes_to_b_factors_and_back(tmp_path: Path) -> None:
    p = Protein.from_structure(STRUCTURES / "2ZTA.pdb.gz")
    plddt = np.linspace(0.1, 0.95, len(p)).astype(np.float32)
    plddt[p.chain_break_positions()] = np.nan
    p = p.replace(plddt=plddt)
    p.to_pdb(tmp_path / "x.pdb")
    line = next(x for x in (tmp_path / "x.pdb").read_text().splitlines() if x.startswith("ATOM"))
    assert float(line[60:66]) == pytest.approx(0.1)  # 0-1 in the B-factor column, as the SDK writes it
    back = Protein.from_structure(tmp_path / "x.pdb", plddt_from_b_factor=True)
    np.testing.assert_allclose(back.plddt, plddt, atol=1e-2)  # PDB keeps 2 decimals
    chain = load_structure(STRUCTURES / "1a62.pdb.gz").chains[0]
    chain.with_b_factor(87.5).to_pdb(tmp_path / "af.pdb")  # AlphaFold / ESMFold files: 0-100
    np.testing.assert_allclose(Protein.from_structure(tmp_path / "af.pdb", plddt_from_b_factor=True).plddt, 0.875)
    chain.with_b_factor(150.0).to_pdb(tmp_path / "b.pdb")  # e.g. an experimental structure's B-factors
    with pytest.raises(InputError, match=r"b: CA B-factors span 150.00\.\.150.00, not pLDDT values"):
        Protein.from_structure(tmp_path / "b.pdb", plddt_from_b_factor=True)


def test_backbone_only_coordinates_get_oxygens_and_masks_become_unk(tmp_path: Path) -> None:
    full = Protein.from_structure(STRUCTURES / "1a62.pdb.gz")
    bb = np.full_like(full.coordinates, np.nan)
    bb[:, :3] = full.coordinates[:, :3]
    p = Protein(sequence="_" + full.sequence[1:], coordinates=bb, name="bb")
    complex_ = p.to_complex()
    chain = complex_.chains[0]
    assert chain.atom37_mask[:-1, RC.ATOM_O].all()  # every O but the last residue's is placed
    # Placed oxygens sit ~1.23 A from their C, as in real structures.
    d = np.linalg.norm(chain.atom37[:-1, RC.ATOM_O] - chain.atom37[:-1, RC.ATOM_C], axis=-1)
    assert np.all(np.abs(d - 1.23) < 0.05)
    assert chain.sequence[0] == "X" and "UNK" in p.to_pdb_string()
    with pytest.raises(InputError, match=r"protein 'nocoords'.*no coordinates"):
        Protein(sequence="MKT", name="nocoords").to_pdb(tmp_path / "x.pdb")


def test_blank_chain_id_gets_the_first_free_default_id(tmp_path: Path) -> None:
    # A PDB file with column 22 empty read as a structure but not as a Protein ("chain id '': must be non-empty").
    lines = gzip.decompress((STRUCTURES / "1AM7.pdb.gz").read_bytes()).decode().splitlines()
    blank = tmp_path / "blank.pdb"
    in_b = [x.startswith(("ATOM", "HETATM")) and x[21] == "B" for x in lines]
    blank.write_text("\n".join(x[:21] + " " + x[22:] if b else x for x, b in zip(lines, in_b)))
    assert load_structure(blank).chain_ids == ("A", "", "C")
    p = Protein.from_structure(blank)
    assert p.chain_ids == ("A", "B", "C")
    assert p.sequence == Protein.from_structure(STRUCTURES / "1AM7.pdb.gz").sequence
    p.save(tmp_path / "out.pdb")
    assert load_structure(tmp_path / "out.pdb").chain_ids == ("A", "B", "C")


def test_structure_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pdb"
    bad.write_text("this is not a structure\n")
    with pytest.raises(InputError, match="broken.pdb"):
        Protein.from_structure(bad)
    water = tmp_path / "water.pdb"
    water.write_text("HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00           O\nEND\n")
    with pytest.raises(InputError, match=r"water\.pdb: no protein residues"):
        Protein.from_structure(water)
    with pytest.raises(InputError, match=r"chain 'Z' not found"):
        Protein.from_structure(STRUCTURES / "1a62.pdb.gz", chains=["Z"])


def test_numbering_tracks_are_copied_and_never_silently_truncated() -> None:
    numbers = np.array([1, 2, 3])
    p = Protein(sequence="MKT", residue_index=numbers, insertion_code=np.array(["", "A", ""]))
    numbers[0] = 99  # the caller's array, changed after building the record
    assert p.residue_index.tolist() == [1, 2, 3]
    with pytest.raises(InputError, match=r"residue_index at position 2: 2\.5 is not an integer"):
        Protein(sequence="MKT", residue_index=[1, 2.5, 3])
    with pytest.raises(InputError, match="residue_index at position 1: .* does not fit in 64 bits"):
        Protein(sequence="MKT", residue_index=[2**70, 2, 3])
    with pytest.raises(InputError, match="insertion_code at position 2: 'AB' is longer than one character"):
        Protein(sequence="MKT", insertion_code=["", "AB", ""])
    assert Protein(sequence="MK", residue_index=np.array([1.0, 2.0])).residue_index.tolist() == [1, 2]


def test_coordinates_given_as_nested_lists_with_missing_atoms() -> None:
    residue = [[1.0, 2.0, 3.0]] + [None] * (RC.N_ATOM37 - 1)  # None = a missing atom, as in the JSON format
    p = Protein(sequence="MK", coordinates=[residue, residue])
    assert p.coordinates.shape == (2, RC.N_ATOM37, 3) and p.coordinates.dtype == np.float32
    assert p.coordinates[1, 0].tolist() == [1.0, 2.0, 3.0] and np.isnan(p.coordinates[:, 1:]).all()
    as_objects = np.array([residue, residue], dtype=object)  # [2, 37] of lists and None
    assert np.array_equal(Protein(sequence="MK", coordinates=as_objects).coordinates, p.coordinates, equal_nan=True)
    cube = np.full((2, RC.N_ATOM37, 3), None, dtype=object)  # [2, 37, 3] with None for missing values
    cube[:, 0] = [1.0, 2.0, 3.0]
    assert np.array_equal(Protein(sequence="MK", coordinates=cube).coordinates, p.coordinates, equal_nan=True)
    with pytest.raises(InputError, match=r"coordinates at residue 2, atom 1 \(N\): expected \[x, y, z\] or None"):
        Protein(sequence="MK", coordinates=[residue, [["a", 2, 3]] + [None] * (RC.N_ATOM37 - 1)])


def test_coordinates_beyond_the_float32_range_are_refused_not_dropped() -> None:
    # Stored as float32, 1e39 became inf and the atom silently missing (a residue losing its backbone). NaN given as
    # such still means a missing atom (inf given as such is refused: see the next test).
    x = np.full((2, RC.N_ATOM37, 3), np.nan)
    x[:, :3] = 1.0
    x[1, 2, 1] = -1e300
    with pytest.raises(
        InputError, match=r"coordinates of residue 2, atom C: \[1.0, -1e\+300, 1.0\] is beyond the float32"
    ):
        Protein(sequence="MK", coordinates=x)
    residue = [[1.0, 2.0, 3.0], [4e38, 0.0, 0.0]] + [None] * (RC.N_ATOM37 - 2)
    with pytest.raises(InputError, match=r"residue 1, atom CA: .* beyond the float32 range"):
        Protein(sequence="M", coordinates=[residue])
    x[1, 2, 1] = np.nan
    p = Protein(sequence="MK", coordinates=x)
    assert np.isnan(p.coordinates[1, 2]).all() and np.isfinite(p.coordinates[:, :2]).all()
    assert Protein(sequence="M", coordinates=np.full((1, RC.N_ATOM37, 3), 3.4e38)).coordinates.max() == np.float32(
        3.4e38
    )


@pytest.mark.parametrize("infinity", [np.inf, -np.inf])
def test_an_infinite_coordinate_is_refused_not_taken_as_a_missing_atom(infinity: float) -> None:
    # inf was silently read as a missing atom: a typo'd or overflowed value lost a backbone atom without a word.
    x = np.zeros((2, RC.N_ATOM37, 3), dtype=np.float32)
    x[1, 1, 2] = infinity
    message = (
        rf"protein 'p': coordinates of residue 2, atom CA: \[0.0, 0.0, {infinity}\] is infinite; a missing atom is NaN"
    )
    for given in (x, x.astype(np.float64), torch.from_numpy(x), x.tolist(), x.astype(object)):
        with pytest.raises(InputError, match=message):
            Protein(sequence="MK", coordinates=given, name="p")
    atoms = x.tolist()
    atoms[0][5] = None  # a missing atom given as None: the error still names the infinite one
    with pytest.raises(InputError, match=message):
        Protein(sequence="MK", coordinates=atoms, name="p")


def test_of_several_infinite_coordinates_the_first_is_named() -> None:
    x = np.zeros((3, RC.N_ATOM37, 3))
    x[2, 4, 0] = np.inf
    x[1, 2, 1] = -np.inf
    for given in (x, x.tolist()):
        with pytest.raises(InputError, match=r"coordinates of residue 2, atom C: \[0.0, -inf, 0.0\] is infinite"):
            Protein(sequence="MKT", coordinates=given)


def test_repr_of_a_record_without_a_per_residue_track() -> None:
    assert repr(Protein(name="empty")) == "Protein(name='empty', length=None, sequence='', tracks=[])"


def test_the_frozen_record_hands_out_read_only_arrays() -> None:
    p = Protein(
        sequence="MK", sasa=[1.0, 2.0], plddt=[0.5, 0.6], residue_index=[1, 2], coordinates=np.zeros((2, 37, 3))
    )
    for field in ("sasa", "plddt", "residue_index", "coordinates"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(p, field)[0] = 7  # would bypass validation (plddt 7 is outside [0, 1])
    q = p.replace(plddt=p.plddt * 0.5)  # a modified copy is the way
    assert q.plddt.tolist() == [0.25, 0.30000001192092896] and p.plddt.tolist()[0] == 0.5


def test_ptm_refuses_a_bool_as_plddt_and_sasa_do() -> None:
    with pytest.raises(InputError, match="ptm must be a number, got True"):
        Protein(sequence="MK", ptm=True)  # not silently pTM = 1.0
    assert Protein(sequence="MK", ptm=np.float32(0.5)).ptm == 0.5


def test_length_comes_from_any_track_that_has_one() -> None:
    # The annotations were checked against L = 3 (from the PAE), so len() must agree rather than raise.
    p = Protein(pae=np.zeros((3, 3)), function_annotations=[("IPR000001", 1, 3)])
    assert len(p) == 3
    assert len(Protein(insertion_code=["", "A"])) == 2


@pytest.mark.parametrize(("value", "shown"), [(np.inf, "inf"), (-np.inf, "-inf"), (1e39, "1e+39")])
def test_an_infinite_pae_is_refused_naming_the_pair(value: float, shown: str) -> None:
    # inf (or a float beyond float32, which became inf) was accepted, and then the JSON writer refused the record:
    # a PAE that could be built but never saved. An expected error is a finite distance.
    pae = np.zeros((3, 3))
    pae[1, 2] = value
    with pytest.raises(InputError) as info:
        Protein(sequence="MKT", name="p", pae=pae)
    assert str(info.value) == (
        f"protein 'p': pae at position (2, 3) is {shown}; PAE must be finite (Angstrom; an undefined pair is NaN, "
        "null in JSON)"
    )


def test_a_nan_pae_is_an_undefined_pair_and_a_negative_one_is_named() -> None:
    # NaN is what decoding writes on a chain break's row and column: it stays accepted.
    pae = np.ones((3, 3))
    pae[1, :] = pae[:, 1] = np.nan
    assert np.isnan(Protein(sequence="M|K", pae=pae).pae[1]).all()
    pae[2, 0] = -0.5
    with pytest.raises(InputError, match=r"pae at position \(3, 1\) is -0.5; PAE must be >= 0"):
        Protein(sequence="M|K", pae=pae)


def test_messages_show_numpy_values_as_plain_numbers() -> None:
    # NumPy 2's repr of a scalar leaked into messages: "plddt at position 2 is np.float32(inf)".
    with pytest.raises(InputError) as info:
        Protein(sequence="MKT", name="p", plddt=np.array([0.5, np.inf, 0.1], dtype=np.float32))
    assert str(info.value) == "protein 'p': plddt at position 2 is inf; pLDDT must lie in [0, 1]"
    with pytest.raises(InputError, match=r"plddt at position 1 is 1.1;"):  # float32's own digits, not 1.10000002
        Protein(sequence="M", plddt=np.array([1.1], dtype=np.float32))
    with pytest.raises(InputError, match=r"sasa at position 2 is negative \(-2.5 Å²\)"):
        Protein(sequence="MK", sasa=[1.0, np.float64(-2.5)])
    with pytest.raises(InputError, match=r"residue_index at position 1: 1.5 is not an integer"):
        Protein(sequence="MK", residue_index=[np.float32(1.5), 2])
    with pytest.raises(InputError, match=r"insertion_code at position 2: 'AB' is longer than one character"):
        Protein(sequence="MK", insertion_code=np.array(["", "AB"]))
    with pytest.raises(InputError, match=r"chain id 'A B': must be"):
        Protein(sequence="MK", chain_ids=(np.str_("A B"),))
    with pytest.raises(InputError, match=r"pae at position \(1, 2\) is -1.1; PAE must be >= 0"):  # not -1.10000002
        Protein(sequence="MK", pae=np.array([[0.0, -1.1], [0.5, 0.0]], dtype=np.float32))
    with pytest.raises(InputError, match=r"got \('kringle', 1.0\)$"):  # not (np.str_('kringle'), np.float64(1.0))
        Protein(sequence="MK", function_annotations=[(np.str_("kringle"), np.float64(1.0))])
    with pytest.raises(InputError, match=r"^protein 'x': ptm must be a number, got True$"):
        Protein(sequence="MK", name=np.str_("x"), ptm=np.True_)
    with pytest.raises(InputError, match=r"atom 1 \(N\): expected \[x, y, z\] or None .*, got \[1.0, 2.0\]$"):
        Protein(sequence="M", coordinates=[[np.array([1.0, 2.0], dtype=np.float32)] + [None] * 36])


def test_residue_index_takes_a_list_of_numpy_ints() -> None:
    # A list of NumPy ints (e.g. from iterating an int32 array) was refused as "np.int32(1) is not an integer".
    p = Protein(sequence="MK", residue_index=[np.int32(1), np.uint64(7)], insertion_code=[np.str_(""), np.str_("A")])
    assert p.residue_index.tolist() == [1, 7] and p.insertion_code.tolist() == ["", "A"]


def test_a_pae_beyond_float32_is_refused_without_a_numpy_warning() -> None:
    # The cast to float32 of 1e39 overflows: NumPy's "RuntimeWarning: overflow encountered in cast" must not reach the
    # user before the message naming the pair.
    pae = np.zeros((2, 2))
    pae[0, 1] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"pae at position \(1, 2\) is 1e\+39; PAE must be finite"):
            Protein(sequence="MK", pae=pae)
