"""What a long command kept when it stopped early: its results are written as each batch finishes (each file
atomically, the files that gather every result rewritten with all of them so far), so a run stopped by Ctrl-C,
SIGTERM, SIGHUP or an error in a later batch keeps every result done; :func:`report_kept` brings the files up to
date with the last results and says how many were kept, and where, on stderr before the command's usual
"interrupted" line (``openesm3.cli.main``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from openesm3.errors import OpenESM3Error


@contextlib.contextmanager
def report_kept(command: str, kept: Callable[[], str | None], flush: Callable[[], Any] | None = None) -> Iterator[None]:
    """Run the block; if anything stops it (an exception of any kind, Ctrl-C and the stop signals included) and
    ``kept()`` says something was kept (None: nothing), call ``flush()`` to write the results done since the last
    write (a stop may come between a batch's files and the files gathering every result, or the output may be one
    file written at the end), then print ``openesm3 COMMAND: kept ...`` and let the exception go on. A flush that
    fails is reported in one line instead."""
    try:
        yield
    except BaseException:
        text = kept()
        if text:
            try:
                if flush is not None:
                    flush()
            except (OSError, OpenESM3Error) as exc:
                print(f"openesm3 {command}: error: writing the results done failed: {exc}", file=sys.stderr)
            else:
                print(f"openesm3 {command}: kept {text}", file=sys.stderr)
        raise
