"""Regenerate tests/data/structures/derived/ from the PDB copies, with biotite only (not our writers).

Run from the repository root: ``python tests/data/make_derived_structures.py``. The output is deterministic
(gzip without timestamps), so re-running it leaves the files unchanged.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import biotite.structure as struc
import numpy as np
from biotite.structure.io import pdb, pdbx

HERE = Path(__file__).resolve().parent / "structures"
OUT = HERE / "derived"


def read_pdb(name: str) -> pdb.PDBFile:
    with gzip.open(HERE / name, "rt") as handle:
        return pdb.PDBFile.read(handle)


def all_atoms(name: str) -> struc.AtomArray:
    """Every atom of model 1 with its altloc id, occupancy and B-factor (waters and ligands included)."""
    return read_pdb(name).get_structure(model=1, altloc="all", extra_fields=["b_factor", "occupancy"])


def _add_altloc(cif: pdbx.CIFFile | pdbx.BinaryCIFFile, array: struc.AtomArray | struc.AtomArrayStack) -> None:
    """biotite's set_structure does not write altloc ids; put them into label_alt_id ('.' when none)."""
    if "altloc_id" in array.get_annotation_categories():
        altloc = np.where(np.isin(array.altloc_id, ["", " "]), ".", array.altloc_id)
        cif.block["atom_site"]["label_alt_id"] = altloc


def write_cif(array: struc.AtomArray | struc.AtomArrayStack, path: Path, block: str) -> None:
    cif = pdbx.CIFFile()
    pdbx.set_structure(cif, array, data_block=block)
    _add_altloc(cif, array)
    text = io.StringIO()
    cif.write(text)
    data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def write_bcif(array: struc.AtomArray | struc.AtomArrayStack, path: Path, block: str) -> None:
    bcif = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif, array, data_block=block)
    _add_altloc(bcif, array)
    buffer = io.BytesIO()
    bcif.write(buffer)
    data = buffer.getvalue()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def two_models(name: str) -> struc.AtomArrayStack:
    """Model 1 as read; model 2 = model 1 shifted by +10 A along x (so a test can tell them apart)."""
    model = read_pdb(name).get_structure(model=1, extra_fields=["b_factor", "occupancy"])
    second = model.copy()
    second.coord = second.coord + np.array([10.0, 0.0, 0.0], dtype=np.float32)
    return struc.stack([model, second])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    write_cif(all_atoms("1a62.pdb.gz"), OUT / "1a62.cif", "1A62")
    write_bcif(all_atoms("1a62.pdb.gz"), OUT / "1a62.bcif", "1A62")
    write_cif(all_atoms("1AM7.pdb.gz"), OUT / "1AM7.cif.gz", "1AM7")
    write_bcif(all_atoms("1jhg.pdb.gz"), OUT / "1jhg.bcif.gz", "1JHG")
    write_cif(all_atoms("1orc.pdb.gz"), OUT / "1orc.mmcif", "1ORC")
    write_cif(all_atoms("1aac.pdb.gz"), OUT / "1aac.cif", "1AAC")
    stack = two_models("1a62.pdb.gz")
    pdb_file = pdb.PDBFile()
    pdb_file.set_structure(stack)
    text = io.StringIO()
    pdb_file.write(text)
    (OUT / "1a62_two_models.pdb").write_text(text.getvalue())
    write_cif(stack, OUT / "1a62_two_models.cif", "1A62")


if __name__ == "__main__":
    main()
