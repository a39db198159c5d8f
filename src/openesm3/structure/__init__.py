"""Protein structures in numpy + biotite (no torch): reading, writing, chains, SASA.

Main entry points: :func:`load_structure` / :func:`load_chain` (PDB, mmCIF, BinaryCIF, optionally gzip'd),
:class:`ProteinChain` (atom37 arrays, spec §12), :class:`ProteinComplex` (ordered chains) and
:func:`write_structure`.
"""

from openesm3.structure.chain import ProteinChain
from openesm3.structure.complex import ProteinComplex
from openesm3.structure.io import (
    StructureFormat,
    load_chain,
    load_structure,
    sniff_format,
    structure_name,
    to_pdb_string,
    write_structure,
)
from openesm3.structure.sasa import relative_sasa, residue_sasa

__all__ = [
    "ProteinChain",
    "ProteinComplex",
    "StructureFormat",
    "load_chain",
    "load_structure",
    "relative_sasa",
    "residue_sasa",
    "sniff_format",
    "structure_name",
    "to_pdb_string",
    "write_structure",
]
