"""Reading structures: formats, compression, sniffing, models, chains, altlocs, ligands, modified residues."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from openesm3.errors import StructureFileError
from openesm3.protein import Protein
from openesm3.structure import load_chain, load_structure, sniff_format, structure_name
from openesm3.structure import residue_constants as RC
from openesm3.structure.pdb_reader import parse_pdb
from openesm3.structure.records import unique_strings
from tests.unit.structure_helpers import DERIVED, STRUCTURES, assert_same_chains, pdb_lines, raw_atom

# Sequence of 1a62 chain A as listed in ../shared/data/dev/manifest.tsv (MSE read as M).
SEQ_1A62 = (
    "MNLTELKNTPVSELITLGENMGLENLARMRKQDIIFAILKQHAKSGEDIFGDGVLEILQDGFGFLRSADSSYLAGPDDIYVSPSQIRRFNLRTGDTISGKIRPP"
    "KEGERYFALLKVNEVNFDKPE"
)


def test_pdb_gz_reads_sequence_numbering_coordinates_and_b_factors() -> None:
    path = STRUCTURES / "1a62.pdb.gz"
    chain = load_chain(path)
    assert chain.chain_id == "A" and chain.name == "1a62"
    assert chain.sequence == SEQ_1A62
    assert chain.atom37.shape == (125, 37, 3) and chain.atom37.dtype == np.float32
    assert chain.atom37_mask.shape == (125, 37) and chain.b_factor.shape == (125, 37)
    np.testing.assert_array_equal(chain.residue_index, np.arange(1, 126))
    assert set(chain.insertion_code.tolist()) == {""}
    # Coordinates and B-factors agree with the raw text of the file.
    np.testing.assert_allclose(chain.atom37[1, RC.ATOM_CA], raw_atom(path, "A", 2, "CA"), atol=1e-6)
    line = next(x for x in pdb_lines(path) if x[12:16] == " CA " and int(x[22:26]) == 2)
    assert chain.b_factor[1, RC.ATOM_CA] == pytest.approx(float(line[60:66]), abs=1e-4)
    # Missing atoms are NaN with mask False; present atoms are finite.
    assert np.isnan(chain.atom37[~chain.atom37_mask]).all()
    assert np.isnan(chain.b_factor[~chain.atom37_mask]).all()
    assert np.isfinite(chain.atom37[chain.atom37_mask]).all()


def test_selenomethionine_is_methionine_with_se_in_the_sd_slot() -> None:
    path = STRUCTURES / "1a62.pdb.gz"
    chain = load_chain(path)
    mse = np.flatnonzero(chain.residue_name == "MSE")
    assert mse.tolist() == [0, 20, 28]  # residues 1, 21, 29 are HETATM MSE in the file
    assert {chain.sequence[i] for i in mse} == {"M"}
    np.testing.assert_allclose(chain.atom37[0, RC.ATOM37_ORDER["SD"]], raw_atom(path, "A", 1, "SE"), atol=1e-6)


@pytest.mark.parametrize(
    ("reference", "derived"),
    [
        ("1a62.pdb.gz", "1a62.cif"),
        ("1a62.pdb.gz", "1a62.bcif"),
        ("1AM7.pdb.gz", "1AM7.cif.gz"),
        ("1jhg.pdb.gz", "1jhg.bcif.gz"),
        ("1orc.pdb.gz", "1orc.mmcif"),
        ("1aac.pdb.gz", "1aac.cif"),
    ],
)
def test_mmcif_and_binarycif_read_like_the_pdb_they_were_made_from(reference: str, derived: str) -> None:
    pdb = load_structure(STRUCTURES / reference)
    other = load_structure(DERIVED / derived)
    assert_same_chains(pdb, other, atol=1e-3)
    for x, y in zip(pdb.chains, other.chains):
        np.testing.assert_allclose(x.b_factor[x.atom37_mask], y.b_factor[y.atom37_mask], atol=1e-2)


def test_plain_and_gzip_give_the_same_result(tmp_path: Path) -> None:
    plain = tmp_path / "1orc.pdb"
    plain.write_bytes(gzip.decompress((STRUCTURES / "1orc.pdb.gz").read_bytes()))
    assert_same_chains(load_structure(plain), load_structure(STRUCTURES / "1orc.pdb.gz"), atol=0)
    cif_gz = tmp_path / "1a62.cif.gz"
    cif_gz.write_bytes(gzip.compress((DERIVED / "1a62.cif").read_bytes()))
    bcif_gz = tmp_path / "1a62.bcif.gz"
    bcif_gz.write_bytes(gzip.compress((DERIVED / "1a62.bcif").read_bytes()))
    reference = load_structure(STRUCTURES / "1a62.pdb.gz")
    assert_same_chains(reference, load_structure(cif_gz))
    assert_same_chains(reference, load_structure(bcif_gz))


@pytest.mark.parametrize(
    ("source", "misleading_name"),
    [
        ("1a62.cif", "looks_like.pdb"),  # mmCIF content, PDB suffix
        ("1a62.bcif", "looks_like.cif"),  # BinaryCIF content, mmCIF suffix
        ("1a62.cif", "no_suffix"),
        ("1a62.bcif", "data.bin.gz"),  # gzip'd BinaryCIF, unknown inner suffix
    ],
)
def test_content_sniffing_beats_a_misleading_or_unknown_suffix(
    tmp_path: Path, source: str, misleading_name: str
) -> None:
    data = (DERIVED / source).read_bytes()
    target = tmp_path / misleading_name
    target.write_bytes(gzip.compress(data) if misleading_name.endswith(".gz") else data)
    assert_same_chains(load_structure(STRUCTURES / "1a62.pdb.gz"), load_structure(target))


def test_pdb_content_with_an_mmcif_suffix_and_no_suffix(tmp_path: Path) -> None:
    text = gzip.decompress((STRUCTURES / "2ZTA.pdb.gz").read_bytes())
    for name in ("2zta.cif", "2zta", "2zta.txt.gz"):
        target = tmp_path / name
        target.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
        assert_same_chains(load_structure(STRUCTURES / "2ZTA.pdb.gz"), load_structure(target), atol=0)


def test_sniff_format_and_structure_name() -> None:
    assert sniff_format((DERIVED / "1a62.cif").read_bytes()) == "cif"
    assert sniff_format((DERIVED / "1a62.bcif").read_bytes()) == "bcif"
    assert sniff_format(gzip.decompress((STRUCTURES / "1a62.pdb.gz").read_bytes())) == "pdb"
    assert sniff_format(b">seq\nMKTAYIAK\n") is None
    assert structure_name("x/1a62.pdb.gz") == "1a62"
    assert structure_name("pdb1abc.ent") == "pdb1abc"
    assert structure_name("model.v2.cif") == "model.v2"
    assert structure_name("AF-P1.mmcif.gz") == "AF-P1"
    assert structure_name("1A62.PDB.GZ") == "1A62"  # suffixes in any case
    assert sniff_format(bytes([0xDE, 0x00, 0x10])) == "bcif"  # a MessagePack map of 16+ keys (map 16)
    assert sniff_format(b"# written by a tool\n\ndata_1abc\n") == "cif"  # comment lines before data_


@pytest.mark.parametrize("name", ["1a62_two_models.pdb", "1a62_two_models.cif"])
def test_model_selection(name: str) -> None:
    first = load_structure(DERIVED / name, model=1)
    second = load_structure(DERIVED / name, model=2)
    assert first.sequence == second.sequence == SEQ_1A62
    shift = second.atom37[first.atom37_mask] - first.atom37[first.atom37_mask]
    np.testing.assert_allclose(shift, np.broadcast_to([10.0, 0.0, 0.0], shift.shape), atol=2e-3)


def test_chain_selection_order_and_default_chain() -> None:
    path = STRUCTURES / "1AM7.pdb.gz"
    full = load_structure(path)
    assert full.chain_ids == ("A", "B", "C")
    picked = load_structure(path, chains=["C", "A"])
    assert picked.chain_ids == ("C", "A")
    assert load_structure(path, chains="B").chain_ids == ("B",)
    assert load_chain(path).chain_id == "A"  # first protein chain in file order
    chain_b = load_chain(path, "B")
    np.testing.assert_array_equal(chain_b.atom37_mask, full["B"].atom37_mask)


def test_a_chain_given_twice_is_refused() -> None:
    """``chains=["A", "A"]`` silently read chain A once, whether a homodimer or a typo for another chain was meant (the
    CLI refused it, the Python API did not); it is refused, naming the file and the chain."""
    path = STRUCTURES / "1AM7.pdb.gz"
    with pytest.raises(StructureFileError, match=r"1AM7\.pdb\.gz: chain 'A' given more than once"):
        load_structure(path, chains=["A", "A"])
    with pytest.raises(StructureFileError, match="chain 'C' given more than once"):
        load_structure(path, chains=("C", "B", "C"))
    with pytest.raises(StructureFileError, match="chain 'A' given more than once"):
        Protein.from_structure(path, chains=["A", "A"])


def test_alternate_location_with_highest_occupancy_wins() -> None:
    # 1aac labels its altlocs '1' (occupancy 0.85) and '2' (0.15); residue 9 is a SER in both.
    path = STRUCTURES / "1aac.pdb.gz"
    chain = load_chain(path)
    i = int(np.flatnonzero(chain.residue_index == 9)[0])
    og = RC.ATOM37_ORDER["OG"]
    np.testing.assert_allclose(chain.atom37[i, og], raw_atom(path, "A", 9, "OG", altloc="1"), atol=1e-6)
    assert not np.allclose(chain.atom37[i, og], raw_atom(path, "A", 9, "OG", altloc="2"), atol=1e-2)


def _pdb_line(serial: int, name: str, altloc: str, res: str, resseq: int, xyz: tuple, occ: float) -> str:
    x, y, z = xyz
    return (
        f"ATOM  {serial:5d} {name:<4s}{altloc}{res:>3s} A{resseq:4d}    "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{occ:6.2f}{10.0:6.2f}           {name[0]}"
    )


def _glycine_pdb(altlocs: list[tuple[str, float, float]]) -> str:
    """One glycine whose CA has the given (altloc, occupancy, x) alternatives."""
    lines = [_pdb_line(1, "N", " ", "GLY", 1, (0.0, 1.4, 0.0), 1.0)]
    for k, (alt, occ, x) in enumerate(altlocs):
        lines.append(_pdb_line(2 + k, "CA", alt, "GLY", 1, (x, 0.0, 0.0), occ))
    lines.append(_pdb_line(9, "C", " ", "GLY", 1, (1.5, -0.5, 0.0), 1.0))
    return "\n".join(lines) + "\nEND\n"


@pytest.mark.parametrize(
    ("altlocs", "expected_x"),
    [
        ([("A", 0.3, 1.0), ("B", 0.7, 2.0)], 2.0),  # B has the higher occupancy
        ([("B", 0.5, 2.0), ("A", 0.5, 1.0)], 2.0),  # tie: the first met in the file
        ([("A", 0.5, 1.0), ("B", 0.5, 2.0)], 1.0),
    ],
)
def test_altloc_rule_on_synthetic_records(tmp_path: Path, altlocs: list, expected_x: float) -> None:
    path = tmp_path / "gly.pdb"
    path.write_text(_glycine_pdb(altlocs))
    chain = load_chain(path)
    assert chain.atom37[0, RC.ATOM_CA, 0] == pytest.approx(expected_x)


def test_microheterogeneity_takes_the_residue_name_of_the_chosen_altloc(tmp_path: Path) -> None:
    gly = [("N", (0.0, 1.4, 0.0)), ("CA", (0.0, 0.0, 0.0)), ("C", (1.5, -0.5, 0.0))]
    ala = [*gly, ("CB", (-0.5, -0.8, 1.2))]
    lines = [_pdb_line(k + 1, n, "A", "GLY", 1, xyz, 0.4) for k, (n, xyz) in enumerate(gly)]
    lines += [_pdb_line(k + 10, n, "B", "ALA", 1, xyz, 0.6) for k, (n, xyz) in enumerate(ala)]
    path = tmp_path / "micro.pdb"
    path.write_text("\n".join(lines) + "\n")
    chain = load_chain(path)
    assert chain.sequence == "A" and chain.residue_name.tolist() == ["ALA"]
    assert chain.atom37_mask[0, RC.ATOM_CB]


def test_waters_and_amino_acid_ligands_are_dropped() -> None:
    # 1jhg: a free L-tryptophan (HETATM TRP A 111) is bound to the trp repressor, not part of the chain.
    jhg = load_structure(STRUCTURES / "1jhg.pdb.gz")
    assert jhg.chain_ids == ("A",) and 111 not in jhg["A"].residue_index and len(jhg["A"]) == 101
    # 1pin: a HETATM Ala-Pro dipeptide (A 201-202) after the chain.
    pin = load_chain(STRUCTURES / "1PIN.pdb.gz")
    assert not np.isin([201, 202], pin.residue_index).any()
    # 2ctc: a HETATM hydroxy-acid ligand (HFA A 309).
    assert "HFA" not in load_chain(STRUCTURES / "2ctc.pdb.gz").residue_name
    for chain in (*jhg, pin):
        assert not np.isin(chain.residue_name, list(RC.WATER_NAMES)).any()


@pytest.mark.parametrize(
    ("file", "chain_id", "res_name", "letter", "expected_count"),
    [
        ("1AM7.pdb.gz", "A", "TRN", "W", 4),  # HETATM inside the chain (residues 17, 73, 74, 124)
        ("1fxd.pdb.gz", "A", "SCH", "C", 1),
        ("2HPR.pdb.gz", "A", "CSO", "C", 1),
        ("1fus.pdb.gz", "A", "PCA", "Q", 1),  # N-terminal: kept because it is peptide-bonded, not "inside"
        ("1IR3.pdb.gz", "A", "PTR", "Y", 3),  # the phosphorylated activation loop (1158, 1162, 1163)
        ("localunfolding__P15337_1__1KDX_B.pdb.gz", "A", "SEP", "S", 1),  # written as ATOM
    ],
)
def test_modified_residues_inside_chains_map_to_their_parent(
    file: str, chain_id: str, res_name: str, letter: str, expected_count: int
) -> None:
    chain = load_chain(STRUCTURES / file, chain_id)
    hits = np.flatnonzero(chain.residue_name == res_name)
    assert len(hits) == expected_count
    assert {chain.sequence[i] for i in hits} == {letter}
    assert chain.atom37_mask[hits][:, list(RC.BACKBONE_ATOMS)].all()


def test_pyroglutamate_is_the_first_residue_of_1fus() -> None:
    chain = load_chain(STRUCTURES / "1fus.pdb.gz")
    assert chain.residue_name[0] == "PCA" and chain.sequence[0] == "Q"


def test_insertion_codes_are_kept_in_file_order() -> None:
    chain = load_chain(STRUCTURES / "1orc.pdb.gz")
    codes = [(int(r), c) for r, c in zip(chain.residue_index, chain.insertion_code) if c]
    assert codes, "1orc has insertion codes"
    raw = []
    for line in pdb_lines(STRUCTURES / "1orc.pdb.gz"):
        key = (int(line[22:26]), line[26].strip())
        if line.startswith("ATOM") and line[21] == "A" and key[1] and key not in raw:
            raw.append(key)
    assert codes == raw
    np.testing.assert_allclose(
        chain.atom37[np.flatnonzero(chain.insertion_code == codes[0][1])[0], RC.ATOM_CA],
        raw_atom(STRUCTURES / "1orc.pdb.gz", "A", codes[0][0], "CA", icode=codes[0][1]),
        atol=1e-6,
    )


def test_backbone_only_file_and_residues_with_few_atoms() -> None:
    chain = load_chain(STRUCTURES / "localunfolding__trp-cage-cage__2JOF_A.pdb.gz")
    present = {RC.ATOM37_NAMES[i] for i in np.flatnonzero(chain.atom37_mask.any(axis=0))}
    assert present == {"N", "CA", "C", "O"}
    # 1h7m: residue -2 is a lone C atom; it is still a residue (the reference keeps it too), with NaN elsewhere.
    h7m = load_chain(STRUCTURES / "1H7M.pdb.gz")
    assert h7m.residue_index[0] == -2 and h7m.sequence[0] == "G"
    assert np.flatnonzero(h7m.atom37_mask[0]).tolist() == [RC.ATOM_C]


def test_unknown_residue_names_read_as_x(tmp_path: Path) -> None:
    lines = gzip.decompress((STRUCTURES / "2ZTA.pdb.gz").read_bytes()).decode().splitlines()
    renamed = []
    for line in lines:
        if line.startswith("ATOM") and line[21] == "A" and int(line[22:26]) == 5:
            line = line[:17] + "QQQ" + line[20:]  # a name no dictionary knows
        if line.startswith("ATOM") and line[21] == "A" and int(line[22:26]) == 6:
            line = line[:17] + "UNK" + line[20:]
        renamed.append(line)
    path = tmp_path / "renamed.pdb"
    path.write_text("\n".join(renamed) + "\n")
    original, changed = load_chain(STRUCTURES / "2ZTA.pdb.gz"), load_chain(path)
    i5, i6 = (int(np.flatnonzero(original.residue_index == k)[0]) for k in (5, 6))
    assert changed.sequence[i5] == "X" and changed.sequence[i6] == "X"
    assert changed.sequence[:i5] == original.sequence[:i5]
    assert changed.sequence[i6 + 1 :] == original.sequence[i6 + 1 :]


def test_md_names_hse_and_glh_in_atom_records_are_histidine_and_glutamate(tmp_path: Path) -> None:
    # CHARMM's HSE read as the CCD's homoserine (S, ring atoms dropped) and AMBER's GLH as a glutamine (Q).
    lines = gzip.decompress((STRUCTURES / "1a62.pdb.gz").read_bytes()).decode().splitlines()
    renamed = "\n".join(
        x[:17] + {"HIS": "HSE", "GLU": "GLH"}.get(x[17:20], x[17:20]) + x[20:] if x.startswith("ATOM") else x
        for x in lines
    )
    md = tmp_path / "md.pdb"
    md.write_text(renamed + "\n")
    original, read = load_chain(STRUCTURES / "1a62.pdb.gz"), load_chain(md)
    assert {"HSE", "GLH"} <= set(read.residue_name.tolist())
    assert read.sequence == original.sequence
    np.testing.assert_array_equal(read.atom37_mask, original.atom37_mask)
    # As HETATM (how PDB entries write the CCD compounds) they keep their CCD meaning.
    het = tmp_path / "het.pdb"
    het.write_text("\n".join("HETATM" + x[6:] if x[17:20] in ("HSE", "GLH") else x for x in renamed.splitlines()))
    assert set(load_chain(het).sequence) >= {"S", "Q"}


def test_copy_under_another_directory_keeps_the_file_stem_as_name(tmp_path: Path) -> None:
    target = tmp_path / "my_protein.ent.gz"
    shutil.copy(STRUCTURES / "1a62.pdb.gz", target)
    assert load_chain(target).name == "my_protein"


def test_crlf_and_cr_line_ends_short_records_and_hybrid36_numbers(tmp_path: Path) -> None:
    text = gzip.decompress((STRUCTURES / "2ZTA.pdb.gz").read_bytes()).decode()
    reference = load_structure(STRUCTURES / "2ZTA.pdb.gz")
    # Windows and classic Mac OS line ends (lone CR once made the file one line: only its first atom was read).
    for name, end in (("crlf.pdb", "\r\n"), ("cr.pdb", "\r")):
        (tmp_path / name).write_bytes(text.replace("\n", end).encode())
        assert_same_chains(reference, load_structure(tmp_path / name), atol=0)
    # Records cut right after the coordinates (no occupancy, B-factor, element): occupancy 1, B-factor 0.
    short = tmp_path / "short.pdb"
    short.write_text("\n".join(line[:54] if line.startswith("ATOM") else line for line in text.splitlines()))
    chain = load_chain(short)
    assert_same_chains(reference.select(["A"]), load_structure(short, chains=["A"]), atol=0)
    assert (chain.b_factor[chain.atom37_mask] == 0).all()
    records = parse_pdb(short.read_bytes(), str(short))
    assert (records.occupancy[~records.hetero] == 1).all()  # what the altloc rule compares
    short.write_bytes(short.read_bytes().replace(b"\n", b"\r\n"))  # the CR right after the coordinates
    assert_same_chains(reference.select(["A"]), load_structure(short, chains=["A"]), atol=0)
    # Hybrid-36 residue numbers, as written past 9999 residues: "A000" is 10000.
    lines = [line for line in text.splitlines() if line.startswith("ATOM") and line[21] == "A"]
    first_res = lines[0][22:26]
    renumbered = [line[:22] + ("A000" if line[22:26] == first_res else line[22:26]) + line[26:] for line in lines]
    h36 = tmp_path / "h36.pdb"
    h36.write_text("\n".join(renumbered) + "\n")
    assert load_chain(h36).residue_index[0] == 10000


def test_errors_count_lines_ended_by_a_lone_cr(tmp_path: Path) -> None:
    text = gzip.decompress((STRUCTURES / "2ZTA.pdb.gz").read_bytes()).decode()
    bad = tmp_path / "bad.pdb"
    bad.write_bytes("\r".join(text.splitlines()[:5] + ["ATOM      1  N   MET A   1      1.0"]).encode())
    with pytest.raises(StructureFileError, match="line 6: truncated ATOM"):
        load_structure(bad)


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    # A BOM hid the first record: a PDB file starting with ATOM lost its first atom, silently, and an mmCIF
    # file was sniffed as PDB.
    text = gzip.decompress((STRUCTURES / "1a62.pdb.gz").read_bytes()).decode()
    atoms = "\n".join(line for line in text.splitlines() if line.startswith(("ATOM", "HETATM")))
    pdb = tmp_path / "bom.pdb"
    pdb.write_bytes(b"\xef\xbb\xbf" + atoms.encode())
    assert_same_chains(load_structure(STRUCTURES / "1a62.pdb.gz"), load_structure(pdb), atol=0)
    cif = tmp_path / "bom.cif.gz"
    cif.write_bytes(gzip.compress(b"\xef\xbb\xbf" + (DERIVED / "1a62.cif").read_bytes()))
    assert_same_chains(load_structure(DERIVED / "1a62.cif"), load_structure(cif), atol=0)


def test_modified_residues_keep_only_their_parents_atoms() -> None:
    # SCH (S-methylthiocysteine) has SD and CE beyond cysteine's atoms; read as C, it keeps N CA C O CB SG.
    chain = load_chain(STRUCTURES / "1fxd.pdb.gz")
    i = int(np.flatnonzero(chain.residue_name == "SCH")[0])
    assert {RC.ATOM37_NAMES[k] for k in np.flatnonzero(chain.atom37_mask[i])} <= {"N", "CA", "C", "O", "CB", "SG"}
    assert chain.atom37_mask[i, RC.ATOM37_ORDER["SG"]]
    union = {atom for atoms in RC.RESIDUE_HEAVY_ATOMS.values() for atom in atoms}
    assert union == set(RC.ATOM37_NAMES)  # atom37 is exactly the union of the 20 residues' heavy atoms


def test_a_hetatm_chain_touching_the_end_of_another_chain_is_still_a_ligand(tmp_path: Path) -> None:
    def residue(k: int, res: str) -> list[str]:  # N of residue k + 1 lies 1.33 A from C of residue k
        atoms = [("N", (3.8 * k, 0.0, 0.0)), ("CA", (3.8 * k + 1.2, 0.8, 0.0)), ("C", (3.8 * k + 2.47, 0.0, 0.0))]
        return [_pdb_line(3 * k + i + 1, name, " ", res, k + 1, xyz, 1.0) for i, (name, xyz) in enumerate(atoms)]

    lines = residue(0, "GLY") + residue(1, "GLY")
    ligand = [line[:21] + "B" + line[22:] for line in residue(2, "ALA") + residue(3, "ALA")]
    lines += ["HETATM" + line[6:] for line in ligand]  # chain B: two HETATM ALA, bonded to each other only
    path = tmp_path / "ligand_chain.pdb"
    path.write_text("\n".join(lines) + "\n")
    assert load_structure(path).chain_ids == ("A",)


def test_an_insertion_code_alone_starts_a_new_residue(tmp_path: Path) -> None:
    gly = [("N", (0.0, 1.4, 0.0)), ("CA", (0.0, 0.0, 0.0)), ("C", (1.5, -0.5, 0.0))]
    lines = [_pdb_line(k + 1, n, " ", "GLY", 52, xyz, 1.0) for k, (n, xyz) in enumerate(gly)]
    lines += [_pdb_line(k + 4, n, " ", "GLY", 52, (x + 3.8, y, z), 1.0) for k, (n, (x, y, z)) in enumerate(gly)]
    lines[3:] = [line[:26] + "A" + line[27:] for line in lines[3:]]  # 52, then 52A
    path = tmp_path / "icode.pdb"
    path.write_text("\n".join(lines) + "\n")
    chain = load_chain(path)
    assert chain.sequence == "GG" and chain.insertion_code.tolist() == ["", "A"]
    assert chain.atom37[1, RC.ATOM_CA, 0] == pytest.approx(3.8)


def test_an_atom_named_twice_in_a_residue_keeps_the_first(tmp_path: Path) -> None:
    lines = [
        _pdb_line(1, "N", " ", "GLY", 1, (0.0, 1.4, 0.0), 1.0),
        _pdb_line(2, "CA", " ", "GLY", 1, (0.0, 0.0, 0.0), 1.0),
        _pdb_line(3, "CA", " ", "GLY", 1, (9.0, 9.0, 9.0), 1.0),
        _pdb_line(4, "C", " ", "GLY", 1, (1.5, -0.5, 0.0), 1.0),
    ]
    path = tmp_path / "twice.pdb"
    path.write_text("\n".join(lines) + "\n")
    assert load_chain(path).atom37[0, RC.ATOM_CA].tolist() == [0.0, 0.0, 0.0]


def test_mmcif_author_fields_win_over_label_fields(tmp_path: Path) -> None:
    from biotite.structure.io import pdbx

    cif = pdbx.CIFFile.read(str(DERIVED / "1a62.cif"))
    sites = cif.block["atom_site"]
    n = sites.row_count
    sites["label_seq_id"] = (sites["auth_seq_id"].as_array(int) + 1000).astype(str)
    sites["label_asym_id"] = np.full(n, "Z")
    path = tmp_path / "labels.cif"
    cif.write(str(path))
    assert_same_chains(load_structure(DERIVED / "1a62.cif"), load_structure(path), atol=0)


def test_a_chain_id_of_several_characters_given_as_a_string(tmp_path: Path) -> None:
    from biotite.structure.io import pdbx

    cif = pdbx.CIFFile.read(str(DERIVED / "1a62.cif"))
    sites = cif.block["atom_site"]
    sites["auth_asym_id"] = np.full(sites.row_count, "AB")  # mmCIF chain ids may be longer than one character
    path = tmp_path / "long_id.cif"
    cif.write(str(path))
    assert load_structure(path, chains="AB").chain_ids == ("AB",)
    assert load_chain(path, "AB").sequence == SEQ_1A62


def test_mmcif_models_are_numbered_by_file_position_past_nine(tmp_path: Path) -> None:
    import biotite.structure as struc
    from biotite.structure.io import pdbx

    from openesm3.structure.io import to_atom_array

    atoms = to_atom_array(load_chain(STRUCTURES / "1a62.pdb.gz")[:3])
    models = struc.stack([atoms.copy() for _ in range(11)])
    models.coord += np.arange(11, dtype=np.float32)[:, None, None] * 10  # model k moved by 10 (k - 1) A on each axis
    cif = pdbx.CIFFile()
    pdbx.set_structure(cif, models)
    path = tmp_path / "eleven.cif"
    cif.write(str(path))
    first = load_chain(path, model=1).atom37[0, RC.ATOM_CA]
    for model in (2, 10, 11):
        moved = load_chain(path, model=model).atom37[0, RC.ATOM_CA] - first
        np.testing.assert_allclose(moved, np.full(3, 10.0 * (model - 1)), atol=1e-3)


def test_unique_strings_keeps_non_ascii_names_apart() -> None:
    names = np.array(["A", "\u0141", "A", "B"])  # U+0141's low byte is that of "A"
    uniq, inverse = unique_strings(names)
    assert sorted(uniq.tolist()) == ["A", "B", "\u0141"] and uniq[inverse].tolist() == names.tolist()
