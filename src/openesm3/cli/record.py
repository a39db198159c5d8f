"""``--record FILE``: a JSON record of how a command's outputs were made, enough to reproduce them.

Every command accepts ``--record FILE`` (before or after the command name). When the command ends, however it
ends (success, per-item failures, an error, Ctrl-C, SIGTERM/SIGHUP; not a command line argparse refuses, which
runs nothing), FILE is written atomically with:

- ``openesm3_version``, ``python``, ``torch``, ``numpy``, ``platform``;
- ``command``, ``argv`` and ``options`` (every option of the command after defaults, as parsed);
- ``seed`` (the seed the command used: ``--seed`` or its default; null for a command without one), ``dtype``,
  ``device`` (``auto`` resolved), ``threads`` (torch's CPU threads), ``world_size`` (the processes torchrun
  launched, 1 without it);
- ``weights``: each weight file loaded (``role``, ``path``, ``size``, ``sha256``; the ``config.json`` beside a file of
  our format; ``name`` for the tokenizer bundled with OpenESM3), as the run loaded it, with ``at_end`` as for the
  inputs below (``sha256`` null, ``unreadable``, for a file changed in place before its hash had read it);
- ``inputs``: each input file named on the command line (``option``, ``path``, ``size``, ``sha256``; a directory
  is listed without a hash) and each data file read besides (``role``, e.g. a function vocabulary file, training
  data), hashed as the run reads it, with ``at_end`` (``removed`` or ``changed``) where the file there at the end is
  not that one (a change the run did not make itself is also warned about on stderr);
- ``outputs``: each file written and not removed by the run (``path``, ``size``, ``sha256``, taken as the run wrote
  it), in the order first written; ``at_end`` (``removed`` or ``changed``) where something else removed, replaced
  or modified it before the run ended;
- ``started``, ``ended`` (UTC, ISO 8601), ``duration_s``, ``status`` (``ok``; ``failed``: some or all items failed,
  see ``errors``; ``error``: an error stopped the command, see ``error``; ``interrupted``), ``exit_code``,
  ``error`` and ``errors`` (the per-item errors reported).

An existing FILE is replaced only when the run ends (a second stop while it is written leaves it as it was), and
FILE must be a file name (``-`` is refused). A run refused because an earlier run's files are there (no
``--overwrite``) keeps an existing FILE, the record of how those files were made, and says so. Under torchrun
(``WORLD_SIZE`` above 1) only rank 0, the process that writes the outputs, writes FILE and prints what concerns
it; the other ranks check ``--record`` alike but write no record (each would replace the others'). docs/usage.md,
"Reproducing a run", shows an example.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from openesm3.utils.provenance import Run, WeightsFile, Written, file_stamp

FORMAT = "openesm3-run-record"
FORMAT_VERSION = 1
RECORD_HELP = (
    "write a JSON record of this run when it ends (also on failure or interruption): versions, options, seed, "
    "dtype, device, SHA-256 of the weights, inputs and outputs, times, exit status (docs/usage.md)"
)

# The options of each command that name input files (or directories), recorded with their SHA-256.
INPUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "featurize": ("files",),
    "convert": ("src", "config"),
    "build-function-vocab": ("corpus", "terms", "keywords", "base_vocab", "residue_corpus"),
    "tokenize-structure": ("files",),
    "detokenize": ("tokens",),
    "embed": ("inputs",),
    "score": ("inputs", "mutations_file", "dms"),
    "fold": ("inputs",),
    "inverse-fold": ("inputs",),
    "predict-function": ("inputs",),
    "generate": ("prompt", "motif"),
    "round-trip": ("file",),
    "train-tokenizer": ("config", "checkpoint"),
    "calibrate-tokenizer": ("inputs", "run"),
}
# The commands that write structure files from a model (each with the provenance note of its weights).
STRUCTURE_COMMANDS = frozenset({"fold", "generate", "detokenize", "round-trip"})
# The commands whose outputs name the SHA-256 of their weights as loaded: those, and the token files.
WEIGHTS_HASH_COMMANDS = STRUCTURE_COMMANDS | {"tokenize-structure"}
# Keys of the parsed arguments that are machinery, not options.
_INTERNAL = frozenset({"handler", "command_parser", "decoding_defaults"})


def add_record_argument(parser: argparse.ArgumentParser, *, default: Any = None) -> None:
    parser.add_argument("--record", metavar="FILE", default=default, help=RECORD_HELP)


class RunRecorder:
    """The provenance :class:`Run` of one command, and its record when ``--record`` was given."""

    def __init__(self, args: argparse.Namespace, argv: Sequence[str]) -> None:
        seed = getattr(args, "seed", None)
        self.args = args
        self.argv = ["openesm3", *argv]
        self.path: str | None = getattr(args, "record", None)
        # Under torchrun every process runs the command: the record is rank 0's, the one that writes the outputs
        # (checkpoints, exports). The others check --record as it does (they stop alike) but hash and write nothing.
        self.rank, self.world_size = launched_rank()
        keeps = self.path is not None and self.rank == 0
        # The hashes of the weights are needed by the record, the note of structure files and token files: start
        # them early (as the files are loaded, which also gives them as loaded).
        prehash = keeps or args.command in WEIGHTS_HASH_COMMANDS
        self.run = Run(
            command=args.command,
            seed=seed if isinstance(seed, int) else None,
            prehash=prehash,
            hash_outputs=keeps,
            hash_inputs=keeps,
        )
        self.started = datetime.now(timezone.utc)
        self._clock = time.monotonic()
        self.status = "ok"
        self.error: str | None = None
        self.keep_earlier = False  # refused for an earlier run's files: an existing record is that run's, kept
        self._inputs: list[dict[str, Any]] = []

    def _input_paths(self) -> list[tuple[str, str]]:
        """(option, path) of every input file or directory named on the command line."""
        named: list[tuple[str, str]] = []
        for dest in INPUT_OPTIONS.get(self.args.command, ()):
            value = getattr(self.args, dest, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            named += [(dest, os.fspath(v)) for v in values if isinstance(v, (str, os.PathLike))]
        return named

    def begin(self) -> None:
        """Before any work: check that the record can be written where asked, and hash the named inputs (what
        the run reads, before anything could change them)."""
        if self.path is None:
            return
        from openesm3.cli.common import check_output_file  # noqa: PLC0415
        from openesm3.errors import InputError  # noqa: PLC0415

        inputs = self._input_paths()
        path, self.path = self.path, None  # a place refused here gets no record: it would replace an input
        if path == "-":  # not standard output: it carries the command's own output (tables, FASTA)
            raise InputError("--record -: give a file name (the record is not written to standard output)")
        check_output_file(path, "--record", [p for _, p in inputs])
        mine = Path(path).resolve()
        for key, value in sorted(vars(self.args).items()):
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if key != "record" and isinstance(v, str) and v and Path(v).resolve() == mine:
                    raise InputError(f"--record {path}: is also the file of --{key.replace('_', '-')}; "
                                     "give the record its own file")  # fmt: skip
        if self.rank != 0:  # rank 0 writes the record (and says what it has to say about it)
            return
        self.path = path
        self._inputs = [{"option": option, **self._describe(path)} for option, path in inputs]

    def fail(self, status: str, message: str | None, *, keep_earlier: bool = False) -> None:
        """Note how the run ended; ``keep_earlier``: it was refused because an earlier run's files are there, so an
        existing record file (the record of that run, saying how those files were made) is kept, not replaced."""
        self.status, self.error, self.keep_earlier = status, message, keep_earlier

    def finish(self, exit_code: int | None) -> bool:
        """Write the record (when asked); False when it could not be written (the error is printed)."""
        if self.path is None:
            return True
        from openesm3.utils.atomic import atomic_write_json  # noqa: PLC0415

        if self.keep_earlier and os.path.lexists(self.path):
            print(f"openesm3 {self.args.command}: --record {self.path}: kept as it was (the record of the earlier "
                  "run); this refused run wrote nothing", file=sys.stderr)  # fmt: skip
            return True

        if exit_code is None and self.status == "ok":  # an exception went on past main (--debug)
            self.status = "error"
        elif exit_code and self.status == "ok":
            self.status = "failed"
        try:
            if Path(self.path).resolve() in {p.resolve() for p in self.run.outputs}:
                raise OSError(0, "is also an output file of the command; the record was not written", self.path)
            atomic_write_json(self.path, self.record(exit_code))
        except OSError as exc:
            print(f"openesm3 {self.args.command}: error: --record {self.path}: {exc.strerror or exc}", file=sys.stderr)
            return False
        return True

    def _describe(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Path, size and SHA-256 of a file (a directory: its path only; a file that cannot be read: why)."""
        file = Path(os.path.abspath(os.fspath(path)))
        entry: dict[str, Any] = {"path": str(file)}
        try:
            if file.is_dir():
                entry["type"] = "directory"
                return entry
            entry["size"] = file.stat().st_size
            entry["sha256"] = self.run.sha256(file)
        except OSError as exc:
            entry["sha256"] = None
            entry["unreadable"] = exc.strerror or str(exc)
        return entry

    def _input_entry(self, path: Path, role: str | None) -> dict[str, Any]:
        """A data file the run read (``note_input``): its size and SHA-256 as the run first read it, with ``at_end``
        (``removed`` or ``changed``) when the file there at the end is not that one."""
        return {"role": role, **self._seen_entry(path, self.run.inputs_seen.get(path))}

    def _seen_entry(self, path: Path, seen: Written | None) -> dict[str, Any]:
        """Path, size and SHA-256 of a file as the run read it (``seen``), with ``at_end`` when the file there at the
        end is not that one; as it is now where it was not seen (not there, or not readable, then)."""
        if seen is None or seen.stamp is None or seen.sha256 is None:
            return self._describe(path)
        entry: dict[str, Any] = {"path": str(path), "size": seen.stamp[1], "sha256": seen.sha256}
        now = file_stamp(path)
        if now != seen.stamp:
            entry["at_end"] = "removed" if now is None else "changed"
        return entry

    def record(self, exit_code: int | None) -> dict[str, Any]:
        import platform  # noqa: PLC0415

        import numpy  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from openesm3 import __version__  # noqa: PLC0415

        ended = datetime.now(timezone.utc)
        args = self.args
        device = getattr(args, "device", None)
        if device == "auto":
            from openesm3.generation.bundle import resolve_device  # noqa: PLC0415

            device = str(resolve_device(device))
        weights = [self._weights_entry(file) for file in self.run.weights.values()]
        extra_inputs = [self._input_entry(path, role) for path, role in self.run.inputs.items()]
        changed = [
            e for e in [*weights, *extra_inputs] if "at_end" in e and Path(e["path"]) not in self.run.inputs_removed
        ]
        if changed:
            first = changed[0]
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            print(f"openesm3 {args.command}: warning: --record {self.path}: {first['path']} ({first['role']}){more} "
                  f"{first['at_end']} while the run went on; the record gives the files as the run read them, each "
                  "with at_end", file=sys.stderr)  # fmt: skip
        outputs = [_output_entry(path, written) for path, written in self.run.outputs.items()]
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "openesm3_version": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "platform": platform.platform(),
            "command": args.command,
            "argv": self.argv,
            "options": {k: _json_value(v) for k, v in sorted(vars(args).items()) if k not in _INTERNAL},
            "seed": self.run.seed,
            "dtype": getattr(args, "dtype", None),
            "device": device,
            "threads": torch.get_num_threads(),
            "world_size": self.world_size,
            "weights": weights,
            "inputs": self._inputs + extra_inputs,
            "outputs": outputs,
            "started": self.started.isoformat(),
            "ended": ended.isoformat(),
            "duration_s": round(time.monotonic() - self._clock, 3),
            "status": self.status,
            "exit_code": exit_code,
            "error": self.error,
            "errors": self.run.errors,
        }

    def _weights_entry(self, file: WeightsFile) -> dict[str, Any]:
        """A weight file the run loaded, as it loaded it (stamped when noted, hashed from that open file), with
        ``at_end`` when the file there at the end is not that one, as :meth:`_input_entry` gives a data file."""
        from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR  # noqa: PLC0415

        entry: dict[str, Any] = {"role": file.role}
        sha256 = self.run.loaded_sha256(file)
        now = file_stamp(file.path)
        if file.stamp is None or (sha256 is None and now == file.stamp):  # not stamped, or unreadable: as it is now
            entry.update(self._describe(file.path))
        else:
            entry.update(path=str(file.path), size=file.stamp[1], sha256=sha256)
            if sha256 is None:  # changed in place before its hash had read it: the bytes loaded are gone
                entry["unreadable"] = "changed before it could be hashed"
            if now != file.stamp:
                entry["at_end"] = "removed" if now is None else "changed"
        if file.config is not None:
            entry["config"] = self._seen_entry(file.config, file.config_seen)
        if BUNDLED_TOKENIZER_DIR in file.path.resolve().parents:
            from openesm3 import __version__  # noqa: PLC0415

            entry["name"] = f"openesm3 {__version__} bundled structure tokenizer"
        return entry


def launched_rank() -> tuple[int, int]:
    """(global rank, number of processes) of this process as torchrun gives them (``RANK``, ``WORLD_SIZE``, what
    :func:`openesm3.training.distributed.setup_distributed` reads); (0, 1) when not launched by it. Read from the
    environment, not the process group: the record is decided before the command runs, and without torch.

    A ``RANK`` without a ``WORLD_SIZE`` above 1 (left in the environment by something else, or torchrun with one
    process) is a process alone: it is the whole run and writes the record, whatever its ``RANK`` says."""

    def number(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:  # not torchrun's: the command's own setup says so, if it is launched distributed
            return default

    world_size = number("WORLD_SIZE", 1)
    if world_size <= 1:
        return 0, 1
    return number("RANK", 0), world_size


def _output_entry(path: Path, written: Written) -> dict[str, Any]:
    """Path, size and SHA-256 of an output file as this run wrote it; ``at_end`` says when the file there at the end
    is not that one any more (``removed``, or ``changed``: replaced or modified by something else)."""
    entry: dict[str, Any] = {
        "path": str(path),
        "size": None if written.stamp is None else written.stamp[1],
        "sha256": written.sha256,
    }
    now = file_stamp(path)
    if now != written.stamp:
        entry["at_end"] = "removed" if now is None else "changed"
    return entry


def _json_value(value: Any) -> Any:
    """An option's value as JSON holds it: paths as text, sequences as lists, anything else unknown as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)
