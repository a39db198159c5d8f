"""Written structures read by independent tools (gemmi, Biopython): the same atoms, numbers and chains."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from biotite.structure.io import pdbx

from openesm3.errors import InputError
from openesm3.structure import ProteinChain, ProteinComplex, load_chain, write_structure
from tests.unit.structure_helpers import STRUCTURES

gemmi = pytest.importorskip("gemmi", reason="gemmi (the dev extra) is not installed")


def _numbering_complex() -> ProteinComplex:
    """Insertion codes (1orc: 56, 56A..56D), numbers -2, -1 (1H7M) and a residue without atoms."""
    inserted = load_chain(STRUCTURES / "1orc.pdb.gz")
    negative = replace(load_chain(STRUCTURES / "1H7M.pdb.gz"), chain_id="B")
    atom37 = load_chain(STRUCTURES / "2ZTA.pdb.gz").atom37[:6].copy()
    atom37[2] = np.nan  # position 3 is in the sequence but has no atoms
    gapped = ProteinChain.from_atom37(atom37, sequence="MKVLAG", chain_id="C")
    return ProteinComplex((inserted, negative, gapped), "numbering")


def test_mmcif_label_seq_id_is_the_position_in_the_chain_sequence(tmp_path: Path) -> None:
    # label_seq_id was the author number: 56 for 56, 56A..56D, and -2 / -1 / 0 where PDBx counts from 1.
    complex_ = _numbering_complex()
    write_structure(complex_, tmp_path / "x.cif")
    structure = gemmi.read_structure(str(tmp_path / "x.cif"))
    for chain, read in zip(complex_.chains, structure[0]):
        present = np.flatnonzero(chain.atom37_mask.any(-1))
        assert read.name == chain.chain_id and len(read) == len(present)
        assert [r.label_seq for r in read] == (present + 1).tolist()
        # The author numbering is kept as is.
        assert [r.seqid.num for r in read] == chain.residue_index[present].tolist()
        assert [r.seqid.icode.strip() for r in read] == chain.insertion_code[present].tolist()
        entity = structure.get_entity_of(read.get_polymer())
        assert entity.polymer_type == gemmi.PolymerType.PeptideL
        assert gemmi.one_letter_code(entity.full_sequence) == chain.sequence
    assert [entity.subchains for entity in structure.entities] == [["A"], ["B"], ["C"]]
    # BinaryCIF carries the same numbering.
    write_structure(complex_, tmp_path / "x.bcif")
    text, binary = pdbx.CIFFile.read(tmp_path / "x.cif"), pdbx.BinaryCIFFile.read(tmp_path / "x.bcif")
    for key in ("label_seq_id", "label_entity_id"):
        np.testing.assert_array_equal(
            binary.block["atom_site"][key].as_array(int), text.block["atom_site"][key].as_array(int)
        )


@pytest.mark.parametrize("chain_id", ["?", ".", "$A", "#", "[A", "data_x", "Loop_"])
def test_chain_ids_mmcif_text_cannot_hold_are_refused(tmp_path: Path, chain_id: str) -> None:
    # They were written bare: '?' and '.' read back as a blank id, the others made files gemmi rejects.
    chain = replace(load_chain(STRUCTURES / "2ZTA.pdb.gz")[:3], chain_id=chain_id)
    with pytest.raises(InputError, match=f"chain id {re.escape(repr(chain_id))} cannot be written unquoted in mmCIF"):
        write_structure(chain, tmp_path / "x.cif")
    assert not (tmp_path / "x.cif").exists()
    write_structure(chain, tmp_path / "x.bcif")  # BinaryCIF holds any string
    assert load_chain(tmp_path / "x.bcif").chain_id == chain_id


@pytest.mark.parametrize("chain_id", ["_A", "A#", "'A", 'A"', "A$", "a"])
def test_chain_ids_with_special_characters_read_back_in_gemmi(tmp_path: Path, chain_id: str) -> None:
    chain = replace(load_chain(STRUCTURES / "2ZTA.pdb.gz")[:3], chain_id=chain_id)
    write_structure(chain, tmp_path / "x.cif")
    assert [c.name for c in gemmi.read_structure(str(tmp_path / "x.cif"))[0]] == [chain_id]
