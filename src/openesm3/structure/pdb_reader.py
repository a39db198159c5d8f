"""Vectorised reader of PDB-format atom records (``ATOM``/``HETATM``, ``MODEL``), fixed columns.

The whole file is one ``uint8`` buffer; line starts come from the newline positions and every field is a
column slice of an ``[N, 66]`` byte matrix, so no Python code runs per atom. Numbers are converted by numpy;
only when a conversion fails does a Python loop look for the offending line, to name it in the error.
Columns (1-based, wwPDB v3.3): record 1-6 (the atom serial, 7-11, is not read: decimal or hybrid-36 past 99999,
it names nothing the chains keep), name 13-16, altLoc 17, resName 18-20 (21 is read too, for
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


def _gather(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """The first ``width`` bytes of each line as an [n, width] uint8 matrix, spaces beyond a line's end."""
    padded = np.concatenate([buf, np.full(width, _SPACE, dtype=np.uint8)])
    out = np.lib.stride_tricks.sliding_window_view(padded, width)[starts]  # row copies, no per-byte indexing
    short = np.flatnonzero(lengths < width)  # only these lines need padding
    if len(short):
        block = out[short]
        block[np.arange(width)[None, :] >= lengths[short, None]] = _SPACE
        out[short] = block
    return out


def _as_bytes(block: np.ndarray) -> np.ndarray:
    """[n, w] uint8 -> [n] fixed-width bytes strings (``S{w}``)."""
    block = np.ascontiguousarray(block)
    return block.view(f"S{block.shape[1]}").reshape(-1)


_BYTE_TO_STR = np.array([chr(i).strip() for i in range(256)], dtype="<U1")


def _strings(block: np.ndarray) -> np.ndarray:
    """[n, w] uint8 -> [n] stripped str; each distinct value is decoded once (w <= 8)."""
    n, width = block.shape
    if width == 1:
        return _BYTE_TO_STR[block[:, 0]]
    wide = 4 if width <= 4 else 8
    padded = np.zeros((n, wide), dtype=np.uint8)
    padded[:, :width] = block
    codes = padded.view(np.uint32 if wide == 4 else np.uint64).reshape(-1)  # sorting ints beats sorting strings
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    decoded = np.array([bytes(block[i]).decode("latin-1").strip() for i in first], dtype=f"<U{width}")
    return decoded[inverse.reshape(-1)]


def _floats(block: np.ndarray, what: str, lines: np.ndarray, source: str, default: float | None = None) -> np.ndarray:
    """[n, w] uint8 -> [n] float64; blank fields get ``default`` (an error when None)."""
    raw = _as_bytes(block)
    try:
        values = raw.astype(np.float64)  # a blank field raises too
    except ValueError:
        blank = (block == _SPACE).all(axis=1)
        if default is not None and blank.any():
            values = np.full(len(block), default, dtype=np.float64)
            values[~blank] = _floats(block[~blank], what, lines[~blank], source)
            return values
        values = np.empty(len(raw))
        for i, item in enumerate(raw):  # error path only: find and name the offending line
            text = item.decode("latin-1").strip()
            try:
                values[i] = float(text)
            except ValueError:
                shown = repr(text) if text else "(blank)"
                raise StructureFileError(source, f"line {lines[i]}: {what} {shown} is not a number") from None
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StructureFileError(source, f"line {lines[i]}: {what} {raw[i].decode('latin-1').strip()!r} is not finite")
    return values


def _residue_numbers(block: np.ndarray, lines: np.ndarray, source: str) -> np.ndarray:
    """resSeq column -> [n] int64; decimal, or hybrid-36 as written past 9999 residues."""
    try:
        return _as_bytes(block).astype(np.int64)
    except ValueError:
        pass
    values = np.empty(len(block), dtype=np.int64)
    for k, row in enumerate(block):  # rare path: hybrid-36 numbers or an error to locate
        text = bytes(row).decode("latin-1").strip()
        try:
            values[k] = int(text)
            continue
        except ValueError:
            pass
        try:
            from biotite.structure.io.pdb.hybrid36 import decode_hybrid36  # noqa: PLC0415

            values[k] = decode_hybrid36(text)
        except Exception:  # noqa: BLE001 - biotite raises ValueError or KeyError for garbage
            shown = repr(text) if text else "(blank)"
            raise StructureFileError(source, f"line {lines[k]}: residue number {shown} is not an integer") from None
    return values


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
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        # Classic Mac OS line ends (a lone CR): without this the file is one line and only its first record
        # would be read. CRLF is handled below without a copy; a CR line end counts as one line, like \n.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
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

    head = _gather(buf, starts, lengths, 6) if len(starts) else np.zeros((0, 6), np.uint8)
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
    m = _gather(buf, a_starts, a_lengths, _LAST_COLUMN)

    coord = np.stack(
        [
            _floats(m[:, 30:38], "x coordinate", lines, source),
            _floats(m[:, 38:46], "y coordinate", lines, source),
            _floats(m[:, 46:54], "z coordinate", lines, source),
        ],
        axis=1,
    )
    # Residue fields (columns 18-27) are decoded once per run of atoms with identical bytes there.
    key = m[:, 17:27]
    run_start = np.ones(len(m), dtype=bool)
    run_start[1:] = (key[1:] != key[:-1]).any(axis=1)
    run_first = np.flatnonzero(run_start)
    run = np.cumsum(run_start) - 1
    return AtomRecords(
        model=model,
        hetero=is_hetatm[atom_rows],
        atom_name=_strings(m[:, 12:16]),
        altloc=_strings(m[:, 16:17]),
        res_name=_strings(m[run_first, 17:21])[run],
        chain_id=_strings(m[run_first, 21:22])[run],
        res_id=_residue_numbers(m[run_first, 22:26], lines[run_first], source)[run],
        ins_code=_strings(m[run_first, 26:27])[run],
        coord=coord,
        occupancy=_floats(m[:, 54:60], "occupancy", lines, source, default=1.0),
        b_factor=_floats(m[:, 60:66], "B-factor", lines, source, default=0.0),
        line=lines,
    )
