"""The CLI's last line of handling: user errors in one line (exit 2), unexpected ones named as internal (exit 1),
and a reader of standard output that went away (``openesm3 ... | head``) ends the command quietly (exit 141)."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from openesm3 import __version__
from openesm3.cli import round_trip
from openesm3.cli.main import main
from openesm3.errors import InputError
from tests.conftest import REPO


def _handler_raising(exc: BaseException):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "code", "stderr"),
    [
        (InputError("x.pdb: line 3: bad record"), 2, "openesm3 round-trip: error: x.pdb: line 3: bad record\n"),
        (RuntimeError("boom"), 1, "openesm3 round-trip: internal error: RuntimeError: boom"),
        (BrokenPipeError(32, "Broken pipe"), 141, ""),
        (KeyboardInterrupt(), 130, "openesm3 round-trip: interrupted\n"),
    ],
)
def test_errors_end_the_command_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: BaseException, code: int, stderr: str
) -> None:
    monkeypatch.setattr(round_trip, "run", _handler_raising(exc))
    assert main(["round-trip", "x.pdb"]) == code
    err = capsys.readouterr().err
    assert err.startswith(stderr) if stderr else err == ""


class _ClosedPipe(io.StringIO):
    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_pipe_closed_before_the_output_is_flushed_ends_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output was buffered and the reader left before the flush: caught in main, not left to the interpreter's
    exit (which would print 'Exception ignored ... BrokenPipeError')."""

    def run(args: argparse.Namespace) -> int:
        print("1PIN chain A: 153 residues")
        return 0

    monkeypatch.setattr(round_trip, "run", run)
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["round-trip", "x.pdb"]) == 141
    assert capsys.readouterr().err == ""


def test_debug_after_the_command_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The internal-error line says 'rerun with --debug': appended to the command, as a user does, it must work
    (it was 'unrecognized arguments: --debug'), before the command too, and without it there is no traceback."""
    monkeypatch.setattr(round_trip, "run", _handler_raising(RuntimeError("boom")))
    for argv in (["round-trip", "x.pdb", "--debug"], ["--debug", "round-trip", "x.pdb"]):
        with pytest.raises(RuntimeError, match="boom"):
            main(argv)
    assert main(["round-trip", "x.pdb"]) == 1


def test_an_unknown_option_is_reported_with_the_usage_of_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["round-trip", "x.pdb", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: openesm3 round-trip ")
    assert err.rstrip().endswith("openesm3 round-trip: error: unrecognized arguments: --bogus")


def test_a_file_name_that_is_not_utf8_is_printed_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """File names come from the file system as bytes; Python decodes the invalid ones to lone surrogates, which a
    standard output with strict errors (any UTF-8 locale but C) refuses to print. The name must come out."""

    def run(args: argparse.Namespace) -> int:
        print(f"{args.file}: 153 residues")
        return 0

    buffer = io.BytesIO()
    monkeypatch.setattr(round_trip, "run", run)
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(buffer, encoding="utf-8", errors="strict"))
    assert main(["round-trip", "bad\udcff.pdb"]) == 0
    assert buffer.getvalue() == b"bad\\udcff.pdb: 153 residues\n"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (FileExistsError(17, "File exists", "a.fasta"), "a.fasta: File exists"),
        (PermissionError(13, "Permission denied", "out/x.pdb"), "out/x.pdb: Permission denied"),
        (OSError(28, "No space left on device"), "No space left on device"),
    ],
)
def test_a_system_error_reads_as_file_and_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: OSError, message: str
) -> None:
    """Not Python's '[Errno 17] File exists: 'a.fasta'' repr."""
    monkeypatch.setattr(round_trip, "run", _handler_raising(exc))
    assert main(["round-trip", "x.pdb"]) == 2
    assert capsys.readouterr().err == f"openesm3 round-trip: error: {message}\n"


def test_python_m_openesm3_runs_the_command_and_importing_it_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tools that import every module of a package (documentation generators, doctest collection) must not start
    the CLI (it read their argv and exited); ``python -m openesm3`` must."""
    monkeypatch.delitem(sys.modules, "openesm3.__main__", raising=False)
    monkeypatch.setattr("sys.argv", ["pdoc", "--bogus"])
    importlib.import_module("openesm3.__main__")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "openesm3", "--version"], capture_output=True, text=True, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"openesm3 {__version__}\n", "")


_TERMINATED_WHILE_WRITING = """
import os, signal, sys
from openesm3.cli import round_trip
from openesm3.cli.main import main
from openesm3.utils.atomic import atomic_open

def run(args):
    with atomic_open("out.json", "w") as handle:
        handle.write("{")
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))  # a batch system's stop, a closed terminal
        handle.write("}")
    return 0

round_trip.run = run
sys.exit(main(["round-trip", "x.pdb"]))
"""


@pytest.mark.parametrize(("name", "code", "said"), [("SIGTERM", 143, "terminated"), ("SIGHUP", 129, "hung up")])
def test_sigterm_ends_the_command_like_ctrl_c_without_leaving_temporary_files(
    tmp_path: Path, name: str, code: int, said: str
) -> None:
    """SIGTERM (how SLURM, Kubernetes or 'kill' stop a job) killed the process on the spot and left the hidden
    temporary file of the output being written ('.out.json.XXXX.tmp', gigabytes for converted weights); so did
    SIGHUP (the terminal or SSH session closed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    # As from a terminal: started under nohup (SIGHUP ignored, which the command rightly keeps), this test would
    # pass or fail by how the test run itself was started.
    script = "import signal; signal.signal(signal.SIGHUP, signal.SIG_DFL)\n" + _TERMINATED_WHILE_WRITING
    done = subprocess.run([sys.executable, "-c", script, name], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (code, f"openesm3 round-trip: {said}\n")
    assert list(tmp_path.iterdir()) == []


def test_an_ignored_sighup_stays_ignored(tmp_path: Path) -> None:
    """Under ``nohup`` (SIGHUP ignored) a closed terminal must not stop the command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    script = "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)\n" + _TERMINATED_WHILE_WRITING
    done = subprocess.run([sys.executable, "-c", script, "SIGHUP"], cwd=tmp_path, env=env, capture_output=True)
    assert (done.returncode, done.stderr) == (0, b"")
    assert (tmp_path / "out.json").read_text() == "{}"


def test_the_sigterm_handler_is_the_callers_again_after_main(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(round_trip, "run", lambda args: 0)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert main(["round-trip", "x.pdb"]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_a_closed_standard_output_is_not_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with standard output closed (``openesm3 featurize x.pdb >&-``, some daemons), Python sets
    sys.stdout to None; the final flush ended a finished command with 'internal error: AttributeError'."""
    monkeypatch.setattr(round_trip, "run", lambda args: 0)
    monkeypatch.setattr("sys.stdout", None)
    assert main(["round-trip", "x.pdb"]) == 0
