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
model's work instead of coming before the first structure file; asking for the hash waits for that thread. The
file is stamped and opened when noted and the thread hashes that open file, so the record and the note give the
weights as loaded even when another file replaces them before the run ends (:meth:`Run.loaded_sha256`).
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


@dataclass(frozen=True)
class Written:
    """An output file as the run last wrote it: ``stamp`` (inode, size, modification time; None if the file was
    gone at once) tells it from a file that replaces or changes it later; ``sha256`` is taken as it is written when
    the run keeps a record (``Run(hash_outputs=True)``), else None."""

    stamp: tuple[int, int, int] | None
    sha256: str | None


@dataclass
class WeightsFile:
    """One weight file a run loaded: ``role`` is the network (``esm3``, ``structure_decoder``, ...) when known;
    ``config`` the ``config.json`` beside a file of our format (None for an official ``.pth``).

    When the run needs the hashes of its weights (``Run(prehash=True)``), ``stamp`` is the file's (inode, size,
    time) as the run first loaded it (None: not taken, or not there), and its SHA-256 is that file's
    (:meth:`Run.loaded_sha256`), even if another file replaces it before the run ends; ``config_seen`` is the
    config as read then when the run keeps a record (``Run(hash_inputs=True)``), as for :func:`note_input`."""

    path: Path
    role: str | None
    config: Path | None = None
    stamp: tuple[int, int, int] | None = None
    config_seen: Written | None = None


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
    inputs_removed: set[Path] = field(default_factory=set)  # inputs or weights the run removed (an old checkpoint)
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

    def start_hashing(self, path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
        """Hash the file in a background thread (a daemon: a stopped run does not wait for it); :meth:`sha256`
        takes the result. hashlib and file reads release the GIL, so the hashing overlaps the run's own work.

        Returns the stamp (inode, size, time) of the file hashed, None when it cannot be opened (:meth:`sha256`
        will say why). The file is opened here and the thread reads that open file: one that replaces it (a new
        inode) before the thread reads it is not hashed in its place; one changed in place while it is read gets
        no hash (the stamp after reading differs)."""
        file = _absolute(path)
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            return None
        try:
            stamp = _fd_stamp(fd)
        except OSError:
            os.close(fd)
            return None
        key = (file, *stamp)
        if key in self._hashes or key in self._pending:
            os.close(fd)
            return stamp

        def work() -> None:
            try:
                digest = _sha256_of(file, fd)
                if _fd_stamp(fd) == stamp:  # not modified in place while it was read
                    self._hashes[key] = digest
            except OSError:
                pass  # sha256() will say why
            finally:
                os.close(fd)

        thread = threading.Thread(target=work, name=f"openesm3-sha256 {file.name}", daemon=True)
        self._pending[key] = thread
        thread.start()
        return stamp

    def loaded_sha256(self, weights: WeightsFile) -> str | None:
        """SHA-256 of a weight file as the run loaded it (its :attr:`WeightsFile.stamp`), waiting for its background
        hash; None when no stamp was taken or that file could not be hashed (changed in place before it was read)."""
        if weights.stamp is None:
            return None
        key = (weights.path, *weights.stamp)
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.join()
        return self._hashes.get(key)


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


def _sha256_of(path: Path, fd: int | None = None) -> str:
    """SHA-256 of the file at ``path`` or, given ``fd``, of that open file (``path`` its name; left open)."""
    digest = hashlib.sha256()
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    with open(path if fd is None else fd, "rb", buffering=0, closefd=fd is None) as handle:
        while n := handle.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


def _fd_stamp(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return st.st_ino, st.st_size, st.st_mtime_ns


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in blocks; cached in the open run, so each file is read once per run."""
    return _current.sha256(path) if _current is not None else _sha256_of(_absolute(path))


def note_weights(
    path: str | os.PathLike[str], role: str | None = None, *, config: str | os.PathLike[str] | None = None
) -> None:
    """A weight file the open run has just loaded (a no-op with no run open). When the run needs the hashes of its
    weights (``Run(prehash=True)``) the file is stamped and its hashing started now, at the first note: the record
    and the structure note give the file as the run loaded it (as :func:`note_input` does for data files)."""
    if _current is None:
        return
    file = _absolute(path)
    known = _current.weights.get(file)
    if known is not None:  # noted again (e.g. with its role once known): the file as first loaded stays
        if known.role is None and role is not None:
            known.role = role
        if known.config is None and config is not None:
            known.config = _absolute(config)
            known.config_seen = _seen(_current, known.config) if _current.hash_inputs else None
        return
    known = _current.weights[file] = WeightsFile(file, role, None if config is None else _absolute(config))
    if _current.prehash:
        known.stamp = _current.start_hashing(file)
    if known.config is not None and _current.hash_inputs:
        known.config_seen = _seen(_current, known.config)


def _weights_sha256(run: Run, file: WeightsFile) -> str | None:
    """SHA-256 of a weight file as ``run`` loaded it (:meth:`Run.loaded_sha256`); None when it was changed in place
    before its hash could read it (the bytes loaded are gone). Not stamped (the run does not hash its weights, or
    the file could not be opened when noted), or its hash failed while the file is still the one loaded: the file
    as it is now (:meth:`Run.sha256`, OSError when it cannot be read), as the run record gives it."""
    if file.stamp is not None:
        sha256 = run.loaded_sha256(file)
        if sha256 is not None or file_stamp(file.path) != file.stamp:
            return sha256
    return run.sha256(file.path)


def loaded_weights_sha256(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a weight file as the open run loaded it (:func:`note_weights`), for an output that names its
    weights: None when the file was changed in place before its hash could read it (what was loaded is unknown).
    A file the open run did not note, or with no run open, is hashed as it is now (:func:`sha256_file`): call it
    right after loading then. OSError when a file to hash now cannot be read."""
    if _current is not None:
        known = _current.weights.get(_absolute(path))
        if known is not None:
            return _weights_sha256(_current, known)
    return sha256_file(path)


def hashes_weights() -> bool:
    """Whether the open run hashes each weight file in the background as it is loaded (``Run(prehash=True)``):
    :func:`loaded_weights_sha256` then gives the file as loaded whenever it is asked."""
    return _current is not None and _current.prehash


def _seen(run: Run, file: Path) -> Written:
    """A file as the run reads it now: its stamp and SHA-256 (None where it is not there or cannot be read)."""
    stamp = file_stamp(file)
    sha256 = None
    if stamp is not None:
        with contextlib.suppress(OSError):  # the record says why it cannot be read
            sha256 = run.sha256(file)
    return Written(stamp, sha256)


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
            _current.inputs_seen[file] = _seen(_current, file)


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
        _current.inputs_removed.update(p for p in [*_current.inputs, *_current.weights] if _under(p, top))


def note_error(message: str) -> None:
    """An error the open run reported for one item while the others went on."""
    if _current is not None:
        _current.errors.append(message)


def _note_sha256(run: Run, file: WeightsFile) -> str:
    """``sha256:SHORT`` of a weight file as the run loaded it, else why it is unknown: never the hash of another
    file (one edited in place since), never an error (a structure file is not lost for its note). No ``;``: the
    mmCIF note joins its lines with it."""
    try:
        sha256 = _weights_sha256(run, file)
    except FileNotFoundError:  # not stamped (not opened when loaded) and gone since: nothing left to hash
        return "sha256 unknown (file gone)"
    except OSError:
        return "sha256 unknown (unreadable)"
    if sha256 is None:  # changed in place before its hash read it: the file there now is not the one loaded
        return "sha256 unknown (changed while loading)"
    return f"sha256:{sha256[:SHORT_SHA256]}"


def structure_note() -> list[str]:
    """The provenance lines of a structure file written now: ``openesm3 VERSION``, then one ``weights ROLE
    sha256:SHORT`` per weight file the open run loaded (as it loaded it; ``sha256 unknown (WHY)`` when that is
    not known, e.g. a file edited in place before its hash read it), then ``seed N`` when the command has a seed.
    Empty when no run is open or it loaded no weights (a file not made by a model, e.g. a format conversion)."""
    from openesm3 import __version__  # noqa: PLC0415

    run = _current
    if run is None or not run.weights:
        return []
    lines = [f"openesm3 {__version__} {run.command}"]
    for file in run.weights.values():
        lines.append(f"weights {file.role or file.path.name} {_note_sha256(run, file)}")
    if run.seed is not None:
        lines.append(f"seed {run.seed}")
    return lines
