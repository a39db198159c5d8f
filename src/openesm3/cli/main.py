"""Entry point of the ``openesm3`` command.

Each subcommand lives in its own module under ``openesm3.cli`` and exposes ``register(subparsers)``; modules
import heavy dependencies inside their handlers so that ``--help`` stays fast. A user-facing error
(:class:`openesm3.errors.OpenESM3Error`, or a missing/unreadable file) prints one line and exits with 2;
anything else prints one line and exits with 1. ``--debug`` (before or after the command) shows the full traceback
instead. ``--record FILE`` (before or after the command) writes a JSON record of the run when it ends, however it
ends (:mod:`openesm3.cli.record`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from openesm3 import __version__
from openesm3.cli.record import RunRecorder, add_record_argument
from openesm3.errors import OpenESM3Error, OutputsExistError
from openesm3.utils import provenance

# Subcommand modules, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "featurize",
    "convert",
    "build-function-vocab",
    "tokenize-structure",
    "detokenize",
    "embed",
    "score",
    "fold",
    "inverse-fold",
    "predict-function",
    "generate",
    "round-trip",
    "train-tokenizer",
    "calibrate-tokenizer",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openesm3",
        description="OpenESM3: an open, exact and fast implementation of the ESM3 protein language model.",
        epilog="Run 'openesm3 COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"openesm3 {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    add_record_argument(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"openesm3.cli.{name.replace('-', '_')}").register(subparsers)
    for command_parser in subparsers.choices.values():
        # The error line says "rerun with --debug": users append it to the command line they ran. SUPPRESS keeps
        # the command's parser from resetting a --debug given before the command to False.
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                    help="show full tracebacks on errors")  # fmt: skip
        add_record_argument(command_parser, default=argparse.SUPPRESS)  # as --debug: either place
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _printable_stdout()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if isinstance(getattr(args, "overrides", None), list):
        # argparse takes KEY=VALUE overrides in one run only: those after an option (``... max_steps=10
        # --threads 2 out_dir=x``) come back unparsed; they are overrides all the same, kept in their order
        args.overrides += [a for a in extra if not a.startswith("-")]
        extra = [a for a in extra if a.startswith("-")]
    if extra:  # with the usage of the command they were given to, not the list of commands
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    recorder = RunRecorder(args, sys.argv[1:] if argv is None else argv)
    previous_handlers = _terminate_like_ctrl_c()
    code: int | None = None
    try:
        with provenance.running(recorder.run):  # the loaders and writers report weights and files to it
            code = _run(args, recorder)
    finally:
        # The record is written (also when an exception goes on: --debug) while SIGTERM and SIGHUP still stop the
        # command as Ctrl-C does: a second stop then abandons the record in one line, its temporary file removed,
        # not a traceback or a kill on the spot that leaves the hidden temporary file behind.
        try:
            recorded = recorder.finish(code)
        except (KeyboardInterrupt, _Terminated) as stop:
            said = "interrupted" if isinstance(stop, KeyboardInterrupt) else _stop_said(stop.signum)
            print(f"openesm3 {args.command}: {said} while writing --record {recorder.path}; the record was not "
                  "written", file=sys.stderr)  # fmt: skip
            recorded = True  # said: no second line about it
            code = code or (130 if isinstance(stop, KeyboardInterrupt) else 128 + stop.signum)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
    assert code is not None  # set unless an exception went on
    return 2 if code == 0 and not recorded else code


def _run(args: argparse.Namespace, recorder: RunRecorder) -> int:
    """Run the command; an error or interruption ends it with one line and its exit status, noted in ``recorder``."""
    try:
        recorder.begin()
        result = args.handler(args)
        if sys.stdout is not None:  # None: started with standard output closed (``>&-``)
            sys.stdout.flush()  # a closed pipe shows here, where it is handled below, not at interpreter exit
        return int(result or 0)
    except KeyboardInterrupt:
        recorder.fail("interrupted", "interrupted (Ctrl-C)")
        print(f"openesm3 {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated as stop:
        said = _stop_said(stop.signum)
        recorder.fail("interrupted", f"{said} (signal {stop.signum})")
        print(f"openesm3 {args.command}: {said}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:  # the reader of standard output went away (``... | head``): stop quietly, like Unix tools
        recorder.fail("interrupted", "standard output closed (broken pipe)")
        _discard_stdout()
        return 141  # 128 + SIGPIPE, the status a shell reports for such a pipe
    except (OpenESM3Error, OSError) as exc:
        message = _one_line(exc)
        recorder.fail("error", message, keep_earlier=isinstance(exc, OutputsExistError))
        if args.debug:
            raise
        print(f"openesm3 {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        recorder.fail("error", f"internal error: {type(exc).__name__}: {exc}")
        if args.debug:
            raise
        print(
            f"openesm3 {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the command is, as Ctrl-C raises KeyboardInterrupt: outputs being written are
    removed on the way out (``utils.atomic``) instead of left as hidden temporary files by a kill on the spot."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_said(signum: int) -> str:
    return "hung up" if signum == getattr(signal, "SIGHUP", None) else "terminated"  # no SIGHUP on Windows


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


# Signals that stop a command as Ctrl-C does: SIGTERM (batch systems' stop, ``kill``) and SIGHUP (the terminal or
# SSH session closed). Only where their action is the default: ``nohup`` (SIGHUP ignored) or a caller's own handler
# is left alone.
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _terminate_like_ctrl_c() -> dict[int, signal.Handlers]:
    """Handle :data:`_STOP_SIGNALS` as :class:`_Terminated` while the command runs; returns the handlers to restore
    (none for a signal not replaced: a handler of the caller's, ignored, or not the main thread)."""
    replaced: dict[int, signal.Handlers] = {}
    for signum in _STOP_SIGNALS:
        try:
            if signal.getsignal(signum) is not signal.SIG_DFL:
                continue
            signal.signal(signum, _raise_terminated)
        except ValueError:  # not the main thread of the main interpreter
            break
        replaced[signum] = signal.SIG_DFL
    return replaced


def _one_line(exc: OpenESM3Error | OSError) -> str:
    """The message of a user-facing error; an OSError as ``FILE: reason``, not ``[Errno 17] File exists: 'FILE'``."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
        return ": ".join([" -> ".join(names), exc.strerror] if names else [exc.strerror])
    return str(exc) or type(exc).__name__


def _printable_stdout() -> None:
    """Let standard output print file names that are not valid UTF-8 (``\\udcff`` where the byte was, as on
    standard error) instead of ending the command with a UnicodeEncodeError after its work: Python decodes such
    names to lone surrogates, which a strict stream (any UTF-8 locale but C) refuses."""
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind sys.stdout (e.g. captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
