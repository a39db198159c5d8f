"""What a long command kept when it stopped early: its results are written as each batch finishes (each file
atomically, the files that gather every result rewritten with all of them so far), so a run stopped by Ctrl-C,
SIGTERM, SIGHUP or an error in a later batch keeps every result done; :func:`report_kept` says how many, and where,
on stderr before the command's usual "interrupted" line (``openesm3.cli.main``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def report_kept(command: str, kept: Callable[[], str | None]) -> Iterator[None]:
    """Run the block; if anything stops it (an exception of any kind, Ctrl-C and the stop signals included), print
    ``openesm3 COMMAND: kept ...`` with what ``kept()`` says (nothing when it returns None: nothing was kept) and let
    the exception go on. ``kept`` may also write what was held back until the end (e.g. a single output file)."""
    try:
        yield
    except BaseException:
        text = kept()
        if text:
            print(f"openesm3 {command}: kept {text}", file=sys.stderr)
        raise
