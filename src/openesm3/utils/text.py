"""Reading a user's text file (tokens JSON, mutation lists, configs, file lists) with errors that name the file.

A wrong path, a directory, a binary file or damaged gzip data each get one line saying so, never a bare
``UnicodeDecodeError`` from deep inside a command.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from openesm3.errors import InputError, OpenESM3Error


def read_text_file(
    path: str | os.PathLike[str],
    *,
    role: str = "",
    error: type[OpenESM3Error] = InputError,
    encoding: str = "utf-8-sig",
) -> str:
    """The text of ``path`` (gzip-compressed files are decompressed; a UTF-8 byte-order mark is dropped).

    Raises ``error`` (default :class:`InputError`) naming the file, after ``role`` ("manifest", "config file")
    when given, when it is missing, a directory, unreadable, damaged gzip data, or not text in ``encoding``.
    """
    name = f"{role} {path}" if role else str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except IsADirectoryError:
        raise error(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{name}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise error(f"{name}: damaged gzip data ({exc})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not a text file (byte {exc.start} is not {exc.encoding.upper()})") from None
