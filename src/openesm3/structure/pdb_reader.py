"""Vectorised reader of PDB-format atom records (``ATOM``/``HETATM``, ``MODEL``), fixed columns.

The whole file is one ``uint8`` buffer; line starts come from the newline positions and every field is a
column slice of an ``[N, 80]`` byte matrix, so no Python code runs per atom. Numbers are converted by numpy;
only when a conversion fails does a Python loop look for the offending line, to name it in the error.
Columns (1-based, wwPDB v3.3): record 1-6, name 13-16, altLoc 17, resName 18-20 (21 is read too, for
4-character names), chainID 22, resSeq 23-26 (hybrid-36 beyond 9999), iCode 27, x/y/z 31-54, occupancy
55-60, tempFactor 61-66.
"""

from __future__ import annotations

import numpy as np

from openesm3.errors import StructureFileError
from openesm3.structure.records import AtomRecords

_LAST_COLUMN = 66  # end of the B-factor field; nothing further right is read
_SPACE = 32
_MIN_ATOM_LINE = 54  # a record must at least reach the end of the z coordinate


def _gather(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, first: int, stop: int) -> np.ndarray:
    """Bytes ``first:stop`` of each line as an [n, stop-first] uint8 matrix, spaces beyond a line's end."""
    cols = np.arange(first, stop)
    out = buf[np.minimum(starts[:, None] + cols[None, :], buf.size - 1)]
    short = np.flatnonzero(lengths < stop)  # only these lines need padding
    if len(short):
        block = out[short]
        block[cols[None, :] >= lengths[short, None]] = _SPACE
        out[short] = block
    return out


def _as_bytes(block: np.ndarray) -> np.ndarray:
    """[n, w] uint8 -> [n] fixed-width bytes strings (``S{w}``)."""
    block = np.ascontiguousarray(block)
    return block.view(f"S{block.shape[1]}").reshape(-1)


def _strings(block: np.ndarray) -> np.ndarray:
    """[n, w] uint8 -> [n] stripped str, decoding each distinct value once."""
    uniq, inverse = np.unique(_as_bytes(block), return_inverse=True)
    decoded = np.array([u.decode("latin-1").strip() for u in uniq], dtype=f"U{max(block.shape[1], 1)}")
    return decoded[inverse.reshape(-1)]


def _floats(
    block: np.ndarray, what: str, lines: np.ndarray, source: str, default: float | None = None
) -> np.ndarray:
    """[n, w] uint8 -> [n] float64; blank fields get ``default`` (an error when None)."""
    raw = _as_bytes(block)
    blank = (block == _SPACE).all(axis=1)
    if default is not None and blank.any():
        raw = np.where(blank, b"0", raw)
    try:
        values = raw.astype(np.float64)
    except ValueError:
        values = None
    if values is None or (default is None and blank.any()):
        for i, item in enumerate(raw):
            text = item.decode("latin-1").strip()
            try:
                float(text)
            except ValueError:
                shown = text if text else "a blank field"
                raise StructureFileError(source, f"line {lines[i]}: {what} {shown!r} is not a number") from None
        raise AssertionError("unreachable: numpy rejected a field that Python accepts")  # pragma: no cover
    if default is not None:
        values[blank] = default
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StructureFileError(source, f"line {lines[i]}: {what} {raw[i].decode('latin-1').strip()!r} is not finite")
    return values


def _residue_numbers(block: np.ndarray, lines: np.ndarray, source: str) -> np.ndarray:
    """resSeq column -> [n] int64; decimal, or hybrid-36 as written past 9999 residues."""
    uniq, first, inverse = np.unique(_as_bytes(block), return_index=True, return_inverse=True)
    values = np.empty(len(uniq), dtype=np.int64)
    for k, item in enumerate(uniq):  # one iteration per distinct residue number, not per atom
        text = item.decode("latin-1").strip()
        try:
            values[k] = int(text)
            continue
        except ValueError:
            pass
        try:
            from biotite.structure.io.pdb.hybrid36 import decode_hybrid36  # noqa: PLC0415

            values[k] = decode_hybrid36(text)
        except Exception:  # noqa: BLE001 - biotite raises ValueError or KeyError for garbage
            shown = text if text else "a blank field"
            raise StructureFileError(
                source, f"line {lines[first[k]]}: residue number {shown!r} is not an integer"
            ) from None
    return values[inverse.reshape(-1)]


def parse_pdb(data: bytes, source: str) -> AtomRecords:
    """Parse the atom records of a PDB-format file.

    Args:
        data: the (decompressed) file content.
        source: name of the file, used in error messages.

    Returns:
        Every ``ATOM``/``HETATM`` record of every model, in file order.

    Raises:
        StructureFileError: a record is truncated before its coordinates, or a number does not parse (the
            message gives the 1-based line).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
    ends = np.concatenate((newlines, [buf.size])).astype(np.int64)
    if starts[-1] >= buf.size:  # the file ends with a newline: no last line
        starts, ends = starts[:-1], ends[:-1]
    lengths = ends - starts
    if buf.size:
        lengths = lengths - ((lengths > 0) & (buf[np.maximum(ends - 1, 0)] == 13))  # CRLF files
    line_numbers = np.arange(1, len(starts) + 1)

    head = _gather(buf, starts, lengths, 0, 6) if len(starts) else np.zeros((0, 6), np.uint8)
    head_text = _as_bytes(head) if len(starts) else np.zeros(0, "S6")
    is_hetatm = head_text == b"HETATM"
    is_atom = (head_text.astype("S4") == b"ATOM") | is_hetatm
    is_model = head_text == b"MODEL "

    atom_rows = np.flatnonzero(is_atom)
    # Model of each atom = number of MODEL records above it (atoms above the first MODEL count as model 1).
    model_of_line = np.maximum(np.cumsum(is_model), 1)
    model = model_of_line[atom_rows].astype(np.int64)

    a_starts, a_lengths, lines = starts[atom_rows], lengths[atom_rows], line_numbers[atom_rows]
    short = a_lengths < _MIN_ATOM_LINE
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise StructureFileError(
            source,
            f"line {lines[i]}: truncated {'HETATM' if is_hetatm[atom_rows[i]] else 'ATOM'} record "
            f"({a_lengths[i]} characters; the coordinates end at column {_MIN_ATOM_LINE})",
        )
    m = _gather(buf, a_starts, a_lengths, 0, _LAST_COLUMN)

    coord = np.stack(
        [
            _floats(m[:, 30:38], "x coordinate", lines, source),
            _floats(m[:, 38:46], "y coordinate", lines, source),
            _floats(m[:, 46:54], "z coordinate", lines, source),
        ],
        axis=1,
    )
    return AtomRecords(
        model=model,
        hetero=is_hetatm[atom_rows],
        atom_name=_strings(m[:, 12:16]),
        altloc=_strings(m[:, 16:17]),
        res_name=_strings(m[:, 17:21]),
        chain_id=_strings(m[:, 21:22]),
        res_id=_residue_numbers(m[:, 22:26], lines, source),
        ins_code=_strings(m[:, 26:27]),
        coord=coord,
        occupancy=_floats(m[:, 54:60], "occupancy", lines, source, default=1.0),
        b_factor=_floats(m[:, 60:66], "B-factor", lines, source, default=0.0),
        line=lines,
    )
