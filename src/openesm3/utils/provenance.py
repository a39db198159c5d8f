"""What a run used and made: the weight files loaded, the data files read, the output files written, its seed.

A command (``openesm3 ...``, see :mod:`openesm3.cli.record`) opens one :class:`Run` for its duration with
:func:`running`; the loaders and writers below it report to the open run, if any, through :func:`note_weights`,
:func:`note_input` and :func:`note_output`, so that no function signature between the command and the file has to
carry it. With no run open (library use) those calls do nothing.

Two things are made from it: the run record (``--record FILE``, written by :mod:`openesm3.cli.record`) and the
short provenance note that structure files written from a model carry (:func:`structure_note`: the openesm3
version, the short SHA-256 of each weight file used, the seed). The note holds nothing that changes from one run
to the next (no time, no path), so a rerun with the same seed writes the same bytes.

Hashes are SHA-256 of the file's bytes, read in blocks (a multi-GB weights file is never held in memory), and
computed at most once per file per run (:func:`sha256_file`). An output file is hashed as it is written when the
run keeps a record, and its stamp (inode, size, time) is kept, so that the record holds what the run wrote and can
say when something else changed the file before the end; code that stages outputs and renames them into place, or
removes outputs of its own, says so (:func:`note_moved`, :func:`note_removed`). A run that will need the hashes of
its weights (a command that writes structures, or ``--record``: ``Run(prehash=True)``) starts hashing each weight
file in a background thread as soon as it is loaded, so that the second or so per GB of SHA-256 overlaps the
model's work instead of coming before the first structure file; asking for the hash waits for that thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Bytes read at a time when hashing, into one reused buffer: the hash runs beside the command's own work (in a
# background thread for weights), so it must not add more than this to the process's memory at any moment.
_BLOCK = 1 << 18
SHORT_SHA256 = 12  # hex digits of a weights file's SHA-256 in a structure file's note (48 bits)


@dataclass
class WeightsFile:
    """One weight file a run loaded: ``role`` is the network (``esm3``, ``structure_decoder``, ...) when known;
    ``config`` the ``config.json`` beside a file of our format (None for an official ``.pth``)."""

    path: Path
    role: str | None
    config: Path | None = None


@dataclass(frozen=True)
class Written:
    """An output file as the run last wrote it: ``stamp`` (inode, size, modification time; None if the file was
    gone at once) tells it from a file that replaces or changes it later; ``sha256`` is taken as it is written when
    the run keeps a record (``Run(hash_outputs=True)``), else None."""

    stamp: tuple[int, int, int] | None
    sha256: str | None


@dataclass
class Run:
    """The provenance of one command run, filled in while it runs."""

    command: str
    seed: int | None = None
    weights: dict[Path, WeightsFile] = field(default_factory=dict)
    inputs: dict[Path, str | None] = field(default_factory=dict)  # path -> role (e.g. "function vocabulary")
    outputs: dict[Path, Written] = field(default_factory=dict)  # in the order first written, each as last written
    errors: list[str] = field(default_factory=list)  # per-item errors the command reported
    prehash: bool = False  # hash each weight file in the background as soon as it is noted (the run will need it)
    hash_outputs: bool = False  # hash each output file as it is written (the run keeps a record)
    hash_inputs: bool = False  # hash each input file when it is noted, i.e. as the run reads it (it keeps a record)
    # Each input file as the run first saw it (``hash_inputs``): the record gives that, not what is there at the end
    # (a training run reads its data for hours; a file edited meanwhile must not pass for what it trained on).
    inputs_seen: dict[Path, Written] = field(default_factory=dict)
    inputs_removed: set[Path] = field(default_factory=set)  # inputs the run removed itself (an old checkpoint)
    # Keyed by path and stamp (inode, size, time): a file written again gets a new inode, also within one tick of
    # a coarse file-system clock, where the same size and time would pass for the file already hashed.
    _hashes: dict[tuple[Path, int, int, int], str] = field(default_factory=dict, repr=False)
    _pending: dict[tuple[Path, int, int, int], threading.Thread] = field(default_factory=dict, repr=False)

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 (hex) of the file, from this run's cache while the file is unchanged (inode, size, mtime); waits for
        a background hash of it (:meth:`start_hashing`) rather than reading it a second time."""
        file = _absolute(path)
        st = file.stat()
        key = (file, st.st_ino, st.st_size, st.st_mtime_ns)
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.join()
        if key not in self._hashes:  # never started, or its thread could not read the file: the error comes here
            self._hashes[key] = _sha256_of(file)
        return self._hashes[key]

    def start_hashing(self, path: str | os.PathLike[str]) -> None:
        """Hash the file in a background thread (a daemon: a stopped run does not wait for it); :meth:`sha256`
        takes the result. hashlib and file reads release the GIL, so the hashing overlaps the run's own work."""
        file = _absolute(path)
        try:
            st = file.stat()
        except OSError:
            return  # sha256() will say why
        key = (file, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._hashes or key in self._pending:
            return

        def work() -> None:
            with contextlib.suppress(OSError):
                self._hashes[key] = _sha256_of(file)

        thread = threading.Thread(target=work, name=f"openesm3-sha256 {file.name}", daemon=True)
        self._pending[key] = thread
        thread.start()


_current: Run | None = None


@contextlib.contextmanager
def running(run: Run) -> Iterator[Run]:
    """Make ``run`` the open run for the duration of the block (the previous one, if any, is restored)."""
    global _current
    previous, _current = _current, run
    try:
        yield run
    finally:
        _current = previous


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in blocks; cached in the open run, so each file is read once per run."""
    return _current.sha256(path) if _current is not None else _sha256_of(_absolute(path))


def note_weights(
    path: str | os.PathLike[str], role: str | None = None, *, config: str | os.PathLike[str] | None = None
) -> None:
    """A weight file the open run loaded (a no-op with no run open)."""
    if _current is not None:
        file = _absolute(path)
        known = _current.weights.get(file)
        if known is None or (known.role is None and role is not None):
            _current.weights[file] = WeightsFile(file, role, None if config is None else _absolute(config))
        if _current.prehash:
            _current.start_hashing(file)


def note_input(path: str | os.PathLike[str], role: str | None = None) -> None:
    """A data file the open run reads besides its named inputs (e.g. a vocabulary file, training data). When the run
    keeps a record (``Run(hash_inputs=True)``) its stamp and SHA-256 are taken now, at the first note: the record
    gives the file as the run read it, and says when it changed before the run ended."""
    if _current is not None:
        file = _absolute(path)
        if file in _current.inputs:
            return
        _current.inputs[file] = role
        if _current.hash_inputs:
            stamp = file_stamp(file)
            sha256 = None
            if stamp is not None:
                with contextlib.suppress(OSError):  # the record says why it cannot be read
                    sha256 = _current.sha256(file)
            _current.inputs_seen[file] = Written(stamp, sha256)


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """(inode, size, modification time in ns) of a file, None when there is none: a file replaced (a new inode) or
    rewritten (another size or time) gets another stamp."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def note_output(path: str | os.PathLike[str]) -> None:
    """A file the open run has just written (called by :mod:`openesm3.utils.atomic` once the file is in place):
    its stamp and, when the run keeps a record, its SHA-256 are taken now, so that the record holds what this run
    wrote, not what may replace it before the run ends."""
    if _current is not None:
        file = _absolute(path)
        stamp = file_stamp(file)
        sha256 = _current.sha256(file) if _current.hash_outputs and stamp is not None else None
        _current.outputs[file] = Written(stamp, sha256)


def _under(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def note_moved(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """The open run renamed ``source`` (a staging file or directory of its outputs) to ``target``: its outputs at or
    under ``source`` are now there (a rename keeps their stamps)."""
    if _current is not None:
        src, dst = _absolute(source), _absolute(target)
        _current.outputs = {
            (dst / path.relative_to(src) if _under(path, src) else path): written
            for path, written in _current.outputs.items()
        }


def note_removed(path: str | os.PathLike[str]) -> None:
    """The open run removed ``path`` (a file or directory: a staging folder, an old checkpoint): its outputs at or
    under it are no longer outputs of the run."""
    if _current is not None:
        top = _absolute(path)
        _current.outputs = {p: w for p, w in _current.outputs.items() if not _under(p, top)}
        _current.inputs_removed.update(p for p in _current.inputs if _under(p, top))


def note_error(message: str) -> None:
    """An error the open run reported for one item while the others went on."""
    if _current is not None:
        _current.errors.append(message)


def structure_note() -> list[str]:
    """The provenance lines of a structure file written now: ``openesm3 VERSION``, then one ``weights ROLE
    sha256:SHORT`` per weight file the open run loaded, then ``seed N`` when the command has a seed. Empty when no
    run is open or it loaded no weights (a file not made by a model, e.g. a format conversion)."""
    from openesm3 import __version__  # noqa: PLC0415

    run = _current
    if run is None or not run.weights:
        return []
    lines = [f"openesm3 {__version__} {run.command}"]
    for file in run.weights.values():
        lines.append(f"weights {file.role or file.path.name} sha256:{run.sha256(file.path)[:SHORT_SHA256]}")
    if run.seed is not None:
        lines.append(f"seed {run.seed}")
    return lines
