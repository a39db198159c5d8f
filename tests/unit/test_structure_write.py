"""Writing structures: read-write-read round trips in every format, B-factor column, limits, atomic output."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from openesm3.errors import InputError
from openesm3.protein import Protein
from openesm3.structure import ProteinChain, ProteinComplex, load_chain, load_structure, write_structure
from tests.unit.structure_helpers import STRUCTURES, assert_same_chains

ROUND_TRIP_FILES = [
    "1a62.pdb.gz",  # MSE (written back as MET)
    "1orc.pdb.gz",  # insertion codes
    "1AM7.pdb.gz",  # three chains, HETATM TRN inside them
    "1H7M.pdb.gz",  # residues with missing atoms (a lone C), numbering -2, -1, 1
    "localunfolding__trp-cage-cage__2JOF_A.pdb.gz",  # backbone only
    "1aac.pdb.gz",  # alternate locations
]
SUFFIXES = [".pdb", ".pdb.gz", ".cif", ".mmcif.gz", ".bcif", ".bcif.gz", ".ent"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("file", ROUND_TRIP_FILES)
def test_read_write_read_round_trip(tmp_path: Path, file: str, suffix: str) -> None:
    original = load_structure(STRUCTURES / file)
    target = tmp_path / f"out{suffix}"
    write_structure(original, target)
    again = load_structure(target)
    assert_same_chains(original, again, atol=1e-3)
    for x, y in zip(original.chains, again.chains):
        # B-factors survive with the precision of the format (2 decimals in PDB).
        np.testing.assert_allclose(x.b_factor[x.atom37_mask], y.b_factor[y.atom37_mask], atol=5e-3)


def test_second_round_trip_is_exact_in_pdb(tmp_path: Path) -> None:
    once = tmp_path / "once.pdb"
    twice = tmp_path / "twice.pdb"
    load_structure(STRUCTURES / "1orc.pdb.gz").to_pdb(once)
    load_structure(once).to_pdb(twice)
    assert once.read_text() == twice.read_text()


def test_mmcif_b_factors_are_written_as_read_not_with_float32_noise(tmp_path: Path) -> None:
    """1PIN's first B-factor, 43.60 in the PDB file, was written to mmCIF as 43.599998474121094 (a float32 printed as
    float64); every value is written in the shortest form that reads back as its float32 now."""
    original = load_structure(STRUCTURES / "1PIN.pdb.gz")
    target = tmp_path / "out.cif"
    write_structure(original, target)
    atoms = [line.split() for line in target.read_text().splitlines() if line.startswith("ATOM")]
    column = next(i for i, word in enumerate(atoms[0]) if word.startswith("43.6"))
    assert [a[column] for a in atoms[:3]] == ["43.6", "43.76", "40.62"]
    again = load_structure(target)
    for x, y in zip(original.chains, again.chains):
        np.testing.assert_array_equal(x.b_factor[x.atom37_mask], y.b_factor[y.atom37_mask])  # exact, as float32


@pytest.mark.parametrize(("name", "write"), [("x.cif", "to_pdb"), ("x.pdb.gz", "to_mmcif"), ("x.bcif", "to_pdb")])
def test_a_format_the_file_name_contradicts_is_an_error(tmp_path: Path, name: str, write: str) -> None:
    """``to_pdb("x.cif")`` wrote PDB text under an mmCIF name, which every reader (ours too) then misread."""
    chain = load_chain(STRUCTURES / "1PIN.pdb.gz")
    with pytest.raises(InputError, match=r"the name says '(cif|pdb|bcif)' but format='(pdb|cif)' was asked"):
        getattr(chain, write)(tmp_path / name)
    assert not (tmp_path / name).exists()
    chain.to_pdb(tmp_path / "x.txt")  # a name that says no format takes the one asked for
    assert load_chain(tmp_path / "x.txt").sequence == chain.sequence  # read by its content


def test_pdb_string_layout_and_b_factor_column_holds_plddt() -> None:
    complex_ = load_structure(STRUCTURES / "2ZTA.pdb.gz")
    plddt = np.linspace(0.0, 99.0, len(complex_["A"]), dtype=np.float32)
    chain_a = complex_["A"].with_b_factor(plddt)
    text = ProteinComplex((chain_a, complex_["B"])).to_pdb_string()
    lines = text.splitlines()
    assert lines[0].startswith("ATOM") and lines[-1] == "END".ljust(80)
    ter = [i for i, line in enumerate(lines) if line.startswith("TER")]
    assert len(ter) == 2  # one after each chain
    assert lines[ter[0] - 1][21] == "A" and lines[ter[0] + 1][21] == "B"
    for i in ter:  # the residue of the chain's last atom, in the TER record's own columns; serial left blank
        last_atom = lines[i - 1]
        assert lines[i] == f"TER{'':14}{last_atom[17:20]} {last_atom[21]}{last_atom[22:27]}".ljust(80)
    ca_lines = [line for line in lines if line[12:16] == " CA " and line[21] == "A"]
    written = np.array([float(line[60:66]) for line in ca_lines])
    np.testing.assert_allclose(written, plddt[chain_a.atom37_mask[:, 1]], atol=5e-3)
    # Atoms are in PDB order inside a residue: N, CA, C, O, then side chain.
    assert [line[12:16].strip() for line in lines[:5]] == ["N", "CA", "C", "O", "CB"]
    assert [line[76:78].strip() for line in lines[:5]] == ["N", "C", "C", "O", "C"]  # element symbols


def test_modified_residues_are_written_as_their_parent(tmp_path: Path) -> None:
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    text = chain.to_pdb_string()
    assert "MSE" not in text and " SD  MET A   1" in text
    back = tmp_path / "back.pdb"
    chain.to_pdb(back)
    again = load_chain(back)
    assert again.sequence == chain.sequence and again.residue_name[0] == "MET"


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_letters_beyond_the_twenty_read_back_as_themselves(tmp_path: Path, suffix: str) -> None:
    # U (selenocysteine), O, B and Z were written as UNK and read back as X.
    reference = load_chain(STRUCTURES / "2ZTA.pdb.gz")[:8]
    chain = ProteinChain.from_atom37(reference.atom37, sequence="MUOBZXGA")
    chain.write(tmp_path / f"x{suffix}")
    assert load_chain(tmp_path / f"x{suffix}").sequence == "MUOBZXGA"


def test_chain_writers_and_explicit_format(tmp_path: Path) -> None:
    chain = load_chain(STRUCTURES / "1orc.pdb.gz")
    chain.to_mmcif(tmp_path / "a.cif")
    chain.write(tmp_path / "a.txt", format="bcif")
    for path in (tmp_path / "a.cif", tmp_path / "a.txt"):
        assert_same_chains(ProteinComplex((chain,)), load_structure(path))
    assert (tmp_path / "a.cif").read_text().startswith("data_1orc")
    # The data block name is one token, whatever the name: "data_my model" is not valid CIF.
    from dataclasses import replace  # noqa: PLC0415

    replace(chain, name="my model\t#1").to_mmcif(tmp_path / "b.cif")
    assert (tmp_path / "b.cif").read_text().splitlines()[0] == "data_my_model_#1"
    replace(chain, name="").to_mmcif(tmp_path / "c.cif")
    assert (tmp_path / "c.cif").read_text().splitlines()[0] == "data_structure"


def test_from_atom37_chain_can_be_written_and_read(tmp_path: Path) -> None:
    reference = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    chain = ProteinChain.from_atom37(reference.atom37, sequence=reference.sequence, b_factor=0.5)
    chain.to_pdb(tmp_path / "x.pdb")
    again = load_chain(tmp_path / "x.pdb")
    assert again.sequence == reference.sequence
    np.testing.assert_array_equal(again.residue_index, np.arange(1, len(chain) + 1))
    np.testing.assert_allclose(again.b_factor[again.atom37_mask], 0.5)


def test_unknown_output_suffix_is_an_error(tmp_path: Path) -> None:
    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    with pytest.raises(InputError, match=r"out\.xyz: cannot tell the output format"):
        write_structure(chain, tmp_path / "out.xyz")
    assert not (tmp_path / "out.xyz").exists()


def test_pdb_limits_are_errors_and_leave_existing_files_untouched(tmp_path: Path) -> None:
    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    target = tmp_path / "keep.pdb"
    target.write_text("previous content\n")
    from dataclasses import replace  # noqa: PLC0415

    with pytest.raises(InputError, match="chain id 'AB'.*mmCIF"):
        write_structure(replace(chain, chain_id="AB"), target)
    with pytest.raises(InputError, match="chain id 'é' is not ASCII.*mmCIF"):  # not a bare UnicodeEncodeError
        write_structure(replace(chain, chain_id="é"), target)
    far = replace(chain, atom37=chain.atom37 + np.float32(20000.0))
    with pytest.raises(InputError, match="coordinates outside"):
        write_structure(far, target)
    with pytest.raises(InputError, match=r"B-factors outside \[-99.99, 999.99\].*mmCIF"):  # not biotite's error
        write_structure(chain.with_b_factor(1234.5), target)
    assert target.read_text() == "previous content\n"
    # mmCIF holds them.
    write_structure(replace(far, chain_id="AB").with_b_factor(1234.5), tmp_path / "long.cif")
    again = load_chain(tmp_path / "long.cif")
    assert again.chain_id == "AB" and (again.b_factor[again.atom37_mask] == np.float32(1234.5)).all()
    np.testing.assert_allclose(again.atom37[again.atom37_mask], far.atom37[far.atom37_mask], atol=1e-3)


def test_pdb_residue_numbers_past_9999_round_trip_and_below_minus_999_are_errors(tmp_path: Path) -> None:
    # biotite alone wraps 10000 to 1 and writes -1000 over the insertion-code column (read back as -100).
    from dataclasses import replace  # noqa: PLC0415

    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    numbers = chain.residue_index.copy()
    numbers[:3] = [-999, 9999, 10000]
    numbers[3:] = np.arange(12000, 12000 + len(numbers) - 3)
    big = replace(chain, residue_index=numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for biotite to warn about (it wraps numbers past 9999)
        text = big.to_pdb_string()
    assert {line[22:26] for line in text.splitlines() if line.startswith("ATOM")} >= {"-999", "9999", "A000"}
    write_structure(big, tmp_path / "big.pdb")
    assert_same_chains(ProteinComplex((big,), big.name), load_structure(tmp_path / "big.pdb"), atol=1e-3)
    target = tmp_path / "keep.pdb"
    target.write_text("previous content\n")
    for bad in (-1000, 2436112):
        numbers[0] = bad
        with pytest.raises(InputError, match=f"residue number {bad} does not fit.*mmCIF"):
            write_structure(replace(chain, residue_index=numbers), target)
    assert target.read_text() == "previous content\n"
    write_structure(replace(chain, residue_index=numbers), tmp_path / "big.cif")
    np.testing.assert_array_equal(load_chain(tmp_path / "big.cif").residue_index, numbers)
    # 10000 the largest number: hybrid-36 still, and the decimal numbers beside it right-aligned as PDB has them.
    numbers = np.arange(10001 - len(chain), 10001)
    numbers[0] = 5
    edge = replace(chain, residue_index=numbers)
    fields = [line[22:26] for line in edge.to_pdb_string().splitlines() if line.startswith("ATOM")]
    assert fields[0] == "   5" and fields[-1] == "A000"
    write_structure(edge, tmp_path / "edge.pdb")
    np.testing.assert_array_equal(load_chain(tmp_path / "edge.pdb").residue_index, numbers)


def _tryptophans(n: int, chain_id: str, seed: int) -> ProteinChain:
    """A synthetic chain of ``n`` tryptophans (14 atoms each) at random places: many atoms without a model."""
    from openesm3.structure import residue_constants as RC  # noqa: PLC0415

    mask = np.zeros((n, RC.N_ATOM37), dtype=bool)
    for name in ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2"):
        mask[:, RC.ATOM37_NAMES.index(name)] = True
    xyz = np.where(mask[..., None], np.random.default_rng(seed).uniform(-500, 500, (n, RC.N_ATOM37, 3)), np.nan)
    return ProteinChain.from_atom37(xyz, sequence="W" * n, chain_id=chain_id)


def test_pdb_atom_serials_past_99999_are_hybrid_36_not_wrapped(tmp_path: Path) -> None:
    """biotite alone writes atom 100000 as serial 1 again; here the serials go on in hybrid-36 (A0000 = 100000), as
    cctbx, PyMOL and gemmi write them: gemmi reads 1..N back, our reader the same chains."""
    import gemmi  # noqa: PLC0415

    complex_ = ProteinComplex((_tryptophans(3600, "A", 0), _tryptophans(3600, "B", 1)), "big")  # 100800 atoms
    out = tmp_path / "big.pdb"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for biotite to warn about (it wraps serials past 99999)
        write_structure(complex_, out)
    lines = out.read_text().splitlines()
    atoms = [line for line in lines if line.startswith("ATOM")]
    assert len(atoms) == 100800 and max(len(line) for line in lines) <= 80
    assert [line[6:11] for line in atoms[99998:100001]] == ["99999", "A0000", "A0001"]
    assert atoms[0][6:11] == "    1"  # right-aligned, as decimal serials are
    model = gemmi.read_structure(str(out))[0]
    assert [atom.serial for chain in model for residue in chain for atom in residue] == list(range(1, 100801))
    assert [chain.name for chain in model] == ["A", "B"]
    assert_same_chains(complex_, load_structure(out), atol=1e-3)


def test_more_atoms_than_pdb_serial_numbers_hold_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past hybrid-36's 87440031 serials (a structure too big to build in a test: the limit is lowered here)."""
    from biotite.structure.io.pdb.hybrid36 import encode_hybrid36  # noqa: PLC0415

    from openesm3.structure import io  # noqa: PLC0415

    assert encode_hybrid36(io._PDB_SERIAL_MAX, 5) == "zzzzz"  # the last serial 5 columns hold
    with pytest.raises(ValueError, match="too large"):
        encode_hybrid36(io._PDB_SERIAL_MAX + 1, 5)
    zipper = load_structure(STRUCTURES / "2ZTA.pdb.gz")  # two chains: the serials run on over both
    atoms = sum(int(chain.atom37_mask.sum()) for chain in zipper.chains)
    monkeypatch.setattr(io, "_PDB_SERIAL_MAX", atoms)
    write_structure(zipper, tmp_path / "fits.pdb")  # as many atoms as serials: fine
    monkeypatch.setattr(io, "_PDB_SERIAL_MAX", atoms - 1)
    target = tmp_path / "keep.pdb"
    target.write_text("previous content\n")
    with pytest.raises(InputError, match=rf"{atoms} atoms: atom serial numbers past \d+ do not fit .*mmCIF \(\.cif\)"):
        write_structure(zipper, target)
    assert target.read_text() == "previous content\n"
    write_structure(zipper, tmp_path / "big.cif")  # mmCIF holds them


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_neighbours_with_the_same_number_are_an_error_not_merged(tmp_path: Path, suffix: str) -> None:
    # Readers split residues where the number or insertion code changes: GAK all numbered 1 read back as G.
    from dataclasses import replace  # noqa: PLC0415

    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    numbers = chain.residue_index.copy()
    numbers[5] = numbers[4]
    with pytest.raises(InputError, match=f"chain 'A': residues 5 and 6 are both numbered {numbers[4]};.*merge"):
        write_structure(replace(chain, residue_index=numbers), tmp_path / f"x{suffix}")
    codes = chain.insertion_code.copy()
    codes[5] = "A"  # an insertion code tells them apart
    write_structure(replace(chain, residue_index=numbers, insertion_code=codes), tmp_path / f"x{suffix}")
    assert len(load_chain(tmp_path / f"x{suffix}")) == len(chain)


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    load_structure(STRUCTURES / "2ZTA.pdb.gz").to_pdb(tmp_path / "x.pdb.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pdb.gz"]
    assert (tmp_path / "x.pdb.gz").read_bytes()[:2] == b"\x1f\x8b"  # a .gz name gets gzip data (zcat reads it)


def test_unwritable_targets_are_named_not_the_temporary_file(tmp_path: Path) -> None:
    # The error named the hidden temporary file ('[Errno 21] ... .x.pdb.k2j4.tmp -> ...').
    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    (tmp_path / "dir.pdb").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        chain.to_pdb(tmp_path / "dir.pdb")
    assert str(info.value) == f"[Errno 21] Is a directory: '{tmp_path / 'dir.pdb'}'"
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError) as blocked:  # the file in the way of the directory, named as such
        chain.to_pdb(tmp_path / "file" / "x.pdb")
    assert str(blocked.value) == f"[Errno 20] {tmp_path / 'file'} is not a directory: '{tmp_path / 'file' / 'x.pdb'}'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.pdb", "file"]
    assert list((tmp_path / "dir.pdb").iterdir()) == []


@pytest.mark.parametrize("suffix", [".cif", ".bcif"])
def test_an_infinite_b_factor_is_an_error_not_a_huge_number(tmp_path: Path, suffix: str) -> None:
    # mmCIF and BinaryCIF wrote inf as 1.7976931348623157e+308 (PDB already refused it as out of range).
    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    b_factor = chain.b_factor.copy()
    b_factor[3, 1] = -np.inf
    from dataclasses import replace  # noqa: PLC0415

    with pytest.raises(InputError, match="chain 'A': a B-factor is infinite"):
        write_structure(replace(chain, b_factor=b_factor), tmp_path / f"x{suffix}")
    assert not (tmp_path / f"x{suffix}").exists()


def test_biopython_reads_our_pdb_files_without_a_warning(tmp_path: Path) -> None:
    """A bare ``TER``/``END`` line (not padded to its 6-column record name) made Biopython warn "Ignoring
    unrecognized record" on every file we wrote; a warning is an error here."""
    from Bio.PDB import PDBParser  # noqa: PLC0415

    complex_ = load_structure(STRUCTURES / "2ZTA.pdb.gz")
    path = tmp_path / "two_chains.pdb"
    complex_.to_pdb(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = PDBParser().get_structure("x", str(path))[0]
    assert [chain.id for chain in model] == ["A", "B"]
    assert [len(chain) for chain in model] == [len(complex_["A"]), len(complex_["B"])]
    assert load_structure(path)["B"].sequence == complex_["B"].sequence  # our reader skips the TER records too


def test_the_ter_record_carries_the_insertion_code_of_the_chains_last_residue() -> None:
    """TER repeats the last residue's name, chain, number and insertion code (columns 18-27): with a blank code the
    column is blank either way, so the last residue here gets one."""
    from dataclasses import replace  # noqa: PLC0415

    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    codes = chain.insertion_code.copy()
    codes[-1] = "B"
    lines = replace(chain, insertion_code=codes).to_pdb_string().splitlines()
    (ter,) = [line for line in lines if line.startswith("TER")]
    last_atom = [line for line in lines if line.startswith("ATOM")][-1]
    assert last_atom[26] == "B" and ter[17:27] == last_atom[17:27] and ter[26] == "B"


def test_a_note_line_is_cut_at_the_last_word_end_that_fits_and_never_after_a_space() -> None:
    """The cut fills the 69 columns of text where a word ends there (the space then starts the continuation), and a
    line of exactly 69 characters is not cut; a line never ends in a space (readers strip it, losing the text)."""
    from openesm3.structure.io import _pdb_note  # noqa: PLC0415

    fills = "x " + "a" * 67 + " " + "b" * 10  # words end at 1 and 69
    double = "a" * 60 + "  " + "b" * 20  # the second space is not a word end
    exact = "c" * 30 + " " + "d" * 38  # 69 characters
    assert _pdb_note([fills, double, exact]).splitlines() == [
        "REMARK   6",
        "REMARK   6 x " + "a" * 67,
        "REMARK   6    " + "b" * 10,
        "REMARK   6 " + "a" * 60,
        "REMARK   6     " + "b" * 20,
        "REMARK   6 " + exact,
    ]


def _note_of(remarks: list[str]) -> list[str]:
    """The provenance note read back from ``REMARK   6`` lines: a line indented two more spaces continues the one
    before it (columns 14-80), anything else is a new line of the note (columns 12-80)."""
    note: list[str] = []
    for remark in remarks[1:]:  # the first REMARK 6 line is blank
        if remark.startswith("REMARK   6   "):
            note[-1] += remark[13:]
        else:
            note.append(remark[11:])
    return note


@pytest.mark.parametrize(
    "name",
    ["a_fine_tuned_checkpoint_with_a_long_descriptive_name_" + "x" * 90 + ".pth",
     "fine tuned  on my lab's antibody set (round 3, best validation loss of the whole sweep) " * 2 + "final.pth"],
)  # fmt: skip
def test_a_long_provenance_note_is_continued_on_pdb_lines_of_80_columns_not_cut(tmp_path: Path, name: str) -> None:
    """A weight file without a role is named by its file name in the note: a long name goes on over continuation
    REMARK 6 lines, each within the 80 columns of a PDB record, and reads back whole in gemmi; our reader and
    Biopython read the atoms as they do without the note."""
    import gemmi  # noqa: PLC0415
    from Bio.PDB import PDBParser  # noqa: PLC0415

    from openesm3.utils import provenance  # noqa: PLC0415

    weights = tmp_path / name
    weights.write_bytes(b"weights")
    chain = load_chain(STRUCTURES / "2ZTA.pdb.gz")
    out = tmp_path / "x.pdb"
    with provenance.running(provenance.Run("fold", seed=1)):
        provenance.note_weights(weights)
        note = provenance.structure_note()
        write_structure(chain, out)
    assert any(len(line) > 69 for line in note)  # longer than one REMARK line holds
    lines = out.read_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not [line for line in lines if line.startswith("REMARK") and line != line.rstrip()]  # no trailing space
    assert _note_of([line for line in lines if line.startswith("REMARK")]) == note
    remarks = [line.rstrip() for line in gemmi.read_structure(str(out)).raw_remarks]
    assert _note_of(remarks) == note
    assert_same_chains(ProteinComplex((chain,), chain.name), load_structure(out), atol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = PDBParser().get_structure("x", str(out))[0]
    assert [len(c) for c in model] == [len(chain)]


@pytest.mark.parametrize("suffix", ["pdb", "cif", "bcif"])
def test_a_structure_whose_every_atom_is_missing_is_not_written(tmp_path: Path, suffix: str) -> None:
    """Decoded or edited coordinates can be all NaN: an empty structure file would read back as an error later."""
    ghost = Protein(sequence="MK", coordinates=np.full((2, 37, 3), np.nan, np.float32), name="ghost")
    path = tmp_path / f"ghost.{suffix}"
    with pytest.raises(InputError, match=r"^ghost: no atoms to write \(every atom is missing\)"):
        ghost.save(path)
    assert list(tmp_path.iterdir()) == []
