"""mmCIF and BinaryCIF ``atom_site`` tables -> :class:`AtomRecords`, through biotite's ``pdbx`` parsers.

Author fields are preferred (``auth_asym_id``, ``auth_seq_id``, ``auth_comp_id``, ``auth_atom_id``), as in
PDB files; the ``label_*`` fields are the fallback. Models are numbered by their position in the file.
"""

from __future__ import annotations

import io
from typing import overload

import numpy as np

from openesm3.errors import StructureFileError
from openesm3.structure.records import AtomRecords


def _present(category: object, names: tuple[str, ...]) -> str:
    """The first of ``names`` present in the category (``names[0]`` when none is), to name it in errors."""
    return next((name for name in names if name in category), names[0])  # type: ignore[operator]


def _column(category: object, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, missing) of the first of ``names`` present in the category; ``missing`` marks '.' and '?'."""
    from biotite.structure.io.pdbx import MaskValue  # noqa: PLC0415

    for name in names:
        if name in category:  # type: ignore[operator]
            column = category[name]  # type: ignore[index]
            values = np.asarray(column.data.array)
            if column.mask is None:
                missing = np.zeros(len(values), dtype=bool)
            else:
                missing = np.asarray(column.mask.array) != MaskValue.PRESENT
            return values, missing
    return None


def _strings(category: object, names: tuple[str, ...], n: int, source: str, required: bool = True) -> np.ndarray:
    found = _column(category, names)
    if found is None:
        if required:
            raise StructureFileError(source, f"atom_site has no {' or '.join(names)} column")
        return np.full(n, "", dtype="<U1")
    values, missing = found
    out = np.char.strip(values.astype(str))
    out[missing] = ""
    return out


@overload
def _numbers(
    category: object, names: tuple[str, ...], dtype: type, source: str, default: None = None
) -> np.ndarray: ...
@overload
def _numbers(
    category: object, names: tuple[str, ...], dtype: type, source: str, default: float
) -> np.ndarray | None: ...
def _numbers(
    category: object, names: tuple[str, ...], dtype: type, source: str, default: float | None = None
) -> np.ndarray | None:
    """The column (the first of ``names`` present) as ``dtype``; a missing column or value is an error when
    ``default`` is None, else the column is None (absent) or its missing values read ``default``."""
    found = _column(category, names)
    if found is None:
        if default is None:
            raise StructureFileError(source, f"atom_site has no {' or '.join(names)} column")
        return None
    values, missing = found
    name = _present(category, names)
    if missing.any() and default is None:
        row = int(np.flatnonzero(missing)[0])
        raise StructureFileError(source, f"atom_site row {row + 1}: {name} is missing ('?' or '.')")
    filled = np.where(missing, "0", values.astype(str)) if values.dtype.kind in "US" else values
    try:
        out: np.ndarray = np.asarray(filled).astype(dtype)
    except ValueError:
        items = np.asarray(filled).tolist()
        out = np.empty(len(items), dtype=dtype)
        for row, item in enumerate(items):  # error path only: find and name the offending row
            try:
                out[row] = dtype(item)
            except ValueError:
                raise StructureFileError(
                    source, f"atom_site row {row + 1}: {name} {str(item)!r} is not a number"
                ) from None
    if default is not None:
        out[missing] = default
    if dtype is float and not np.isfinite(out).all():
        row = int(np.flatnonzero(~np.isfinite(out))[0])
        raise StructureFileError(source, f"atom_site row {row + 1}: {name} is not finite")
    return out


def parse_cif(data: bytes, source: str, *, binary: bool) -> AtomRecords:
    """Parse the ``atom_site`` category of the first data block of an mmCIF (text) or BinaryCIF file.

    Raises:
        StructureFileError: unreadable file, no ``atom_site``, a missing column or a non-numeric value (the
            message gives the 1-based ``atom_site`` row).
    """
    from biotite.structure.io import pdbx  # noqa: PLC0415

    kind = "BinaryCIF" if binary else "mmCIF"
    try:
        if binary:
            cif: object = pdbx.BinaryCIFFile.read(io.BytesIO(data))
        else:
            cif = pdbx.CIFFile.read(io.StringIO(data.decode("utf-8", errors="replace")))
        blocks = list(cif.keys())  # type: ignore[attr-defined]
        if not blocks:
            raise StructureFileError(source, f"not a {kind} file: no data block")
        block = cif[blocks[0]]  # type: ignore[index]
        if "atom_site" not in block:
            raise StructureFileError(source, f"{kind} block {blocks[0]!r} has no atom_site category (no atoms)")
        sites = block["atom_site"]
        n = len(sites["Cartn_x"].data.array) if "Cartn_x" in sites else 0
        if n == 0:
            raise StructureFileError(source, f"{kind} atom_site has no Cartn_x column or no rows")
        lengths = {name: len(sites[name].data.array) for name in sites}
    except StructureFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - biotite/msgpack raise many types on damaged input
        raise StructureFileError(source, f"cannot parse {kind}: {type(exc).__name__}: {exc}") from exc
    uneven = {name: k for name, k in lengths.items() if k != n}
    if uneven:
        raise StructureFileError(source, f"truncated {kind}: atom_site columns have different lengths {uneven}")

    coord = np.stack(
        [_numbers(sites, (f"Cartn_{axis}",), float, source) for axis in "xyz"],
        axis=1,
    )
    with np.errstate(over="ignore"):
        beyond = ~np.isfinite(coord.astype(np.float32))  # kept as float32: inf would make the atom missing
    if beyond.any():
        row, axis = (int(v) for v in np.argwhere(beyond)[0])
        raise StructureFileError(
            source, f"atom_site row {row + 1}: Cartn_{'xyz'[axis]} {coord[row, axis]:g} is beyond the float32 range"
        )
    models = _column(sites, ("pdbx_PDB_model_num",))
    if models is None:
        model = np.ones(n, dtype=np.int64)
    else:
        raw = models[0].astype(str)
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(1, len(first) + 1)  # position of first appearance
        model = rank[inverse.reshape(-1)]
    occupancy = _numbers(sites, ("occupancy",), float, source, default=1.0)
    b_factor = _numbers(sites, ("B_iso_or_equiv",), float, source, default=0.0)
    res_id = _numbers(sites, ("auth_seq_id", "label_seq_id"), int, source)
    group = _strings(sites, ("group_PDB",), n, source, required=False)
    return AtomRecords(
        model=model,
        hetero=group == "HETATM",
        atom_name=_strings(sites, ("auth_atom_id", "label_atom_id"), n, source),
        altloc=_strings(sites, ("label_alt_id",), n, source, required=False),
        res_name=_strings(sites, ("auth_comp_id", "label_comp_id"), n, source),
        chain_id=_strings(sites, ("auth_asym_id", "label_asym_id"), n, source),
        res_id=np.asarray(res_id, dtype=np.int64),
        ins_code=_strings(sites, ("pdbx_PDB_ins_code",), n, source, required=False),
        coord=coord,
        occupancy=np.ones(n) if occupancy is None else occupancy,
        b_factor=np.zeros(n) if b_factor is None else b_factor,
        line=np.full(n, -1, dtype=np.int64),
    )
