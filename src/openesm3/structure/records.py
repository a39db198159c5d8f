"""Atom records as parsed from a structure file: one numpy column per field, one row per atom.

Every reader (PDB, mmCIF, BinaryCIF) produces :class:`AtomRecords`; :mod:`openesm3.structure.assemble` then
turns them into chains. Keeping the two steps apart means model/altloc/ligand handling is written once and
behaves the same for every format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class AtomRecords:
    """Columns of the atom records of one file (all models), in file order. N = number of atom records.

    Attributes:
        model: [N] int, 1-based position of the atom's model in the file (not the MODEL serial number).
        hetero: [N] bool, True for HETATM records.
        atom_name: [N] str, stripped (e.g. ``"CA"``).
        altloc: [N] str, one character; ``""`` when the atom has no alternate location.
        res_name: [N] str, stripped residue (CCD component) name.
        chain_id: [N] str, author chain id (PDB column 22; mmCIF ``auth_asym_id``).
        res_id: [N] int, author residue number.
        ins_code: [N] str, insertion code, ``""`` when none.
        coord: [N, 3] float64, Angstrom.
        occupancy: [N] float64.
        b_factor: [N] float64.
        line: [N] int, 1-based line of the record in the file (PDB), or -1 where not known (mmCIF, BinaryCIF).
    """

    model: np.ndarray
    hetero: np.ndarray
    atom_name: np.ndarray
    altloc: np.ndarray
    res_name: np.ndarray
    chain_id: np.ndarray
    res_id: np.ndarray
    ins_code: np.ndarray
    coord: np.ndarray
    occupancy: np.ndarray
    b_factor: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    def take(self, index: np.ndarray) -> AtomRecords:
        """Rows selected by a boolean mask or an index array."""
        return AtomRecords(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    @property
    def n_models(self) -> int:
        return int(self.model.max()) if len(self) else 0


def unique_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for a str array, faster for short ASCII strings.

    Strings of up to 4 (8) ASCII characters are packed into one uint32 (uint64) each, and integers sort much
    faster than strings. The unique values come out in code order, not alphabetical order.
    """
    values = np.asarray(values)
    width = values.dtype.itemsize // 4 if values.dtype.kind == "U" else 0
    if values.size == 0 or width == 0 or width > 8:
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    points = np.ascontiguousarray(values).view(np.uint32).reshape(len(values), width)
    if points.max() > 127:  # not ASCII
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    wide = 4 if width <= 4 else 8
    packed = np.zeros((len(values), wide), dtype=np.uint8)
    packed[:, :width] = points
    codes = packed.view(np.uint32 if wide == 4 else np.uint64).reshape(-1)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return values[first], inverse.reshape(-1)
