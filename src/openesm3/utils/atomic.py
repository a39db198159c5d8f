"""Atomic file output: write to a temporary file in the target directory, then rename over the target.

A reader never sees a half-written file, and an interrupted run leaves the previous file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from openesm3.utils.provenance import note_output


def _default_permissions(path: str) -> None:
    """Give the finished file the permissions of an ordinary new file (0o666 minus the umask); mkstemp
    creates it 0o600, which would hide shared outputs such as weight directories from other users."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def _naming_target(target: Path) -> Iterator[None]:
    """Re-raise an OSError that names the hidden temporary file as one naming ``target``, the file asked for."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or not Path(exc.filename).name.startswith(f".{target.name}."):
            raise  # e.g. a directory that cannot be made: it names the file in the way
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None


def _temporary_beside(target: Path) -> str:
    """A new empty temporary file in ``target``'s directory (created with its parents if missing)."""
    with _naming_target(target):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a file where a directory must go ('[Errno 17] File exists')
            blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), target.parent)
            raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is not a directory", str(target)) from None
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open ``path`` for writing such that it only appears, complete, when the block exits without error."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    target = Path(path)
    tmp = _temporary_beside(target)
    try:
        with open(tmp, mode.replace("x", "w"), **kwargs) as handle:
            yield handle
            with _naming_target(target):
                handle.flush()
                os.fsync(handle.fileno())
        if "x" in mode and target.exists():
            raise FileExistsError(f"{target}: already exists")
        _default_permissions(tmp)
        with _naming_target(target):
            os.replace(tmp, target)
        note_output(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)`` (e.g. a library's save function) and move the result to ``path`` atomically."""
    target = Path(path)
    tmp = _temporary_beside(target)
    try:
        writer(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _default_permissions(tmp)
        with _naming_target(target):
            os.replace(tmp, target)
        note_output(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """``text`` as UTF-8; a file name that was not UTF-8 (decoded by Python to lone surrogates) is written escaped
    (``bad\\udcff``), so the file stays valid UTF-8 and the output is not lost for one odd name."""
    with atomic_open(path, "w", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(text)


def write_text_output(path: str | os.PathLike[str], text: str) -> None:
    """A text output the user named, atomically: gzip-compressed when the name ends in ``.gz`` (so ``zcat`` and our
    readers, which decompress such files, read it), plain UTF-8 otherwise."""
    if Path(path).suffix.lower() == ".gz":
        atomic_write_bytes(path, gzip.compress(text.encode("utf-8", errors="backslashreplace"), mtime=0))
    else:
        atomic_write_text(path, text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """``obj`` as JSON (one trailing newline) at ``path``, atomically; missing parent directories are created."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
