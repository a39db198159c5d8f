"""A dependency-free progress bar for long work: count, rate and ETA on stderr.

It redraws in place on a terminal and prints a line every ``log_every`` seconds otherwise (logs, CI), so
long runs always show that they are alive.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def _fmt_time(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress of ``total`` units of work (``None`` if unknown). Use as a context manager or call close()."""

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        stream: TextIO | None = None,
        disable: bool = False,
        log_every: float = 10.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.disable = disable
        self.log_every = log_every
        self.n = 0
        self.postfix = ""
        self._start = time.monotonic()
        self._last_draw = -math.inf  # monotonic() counts from an arbitrary origin: the first update draws
        self._drawn_n = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        now = time.monotonic()
        interval = 0.1 if self._tty else self.log_every
        if now - self._last_draw >= interval or (self.total is not None and self.n >= self.total):
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.n / elapsed
        parts = [f"{self.desc}: " if self.desc else ""]
        if self.total:
            frac = min(self.n / self.total, 1.0)
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            parts.append(f"{100 * frac:3.0f}% {self.n}/{self.total} [{_fmt_time(elapsed)}<{_fmt_time(eta)}, ")
        else:
            parts.append(f"{self.n} [{_fmt_time(elapsed)}, ")
        parts.append(f"{rate:.2f} {self.unit}/s]" if rate >= 0.1 else f"{1 / max(rate, 1e-9):.1f} s/{self.unit}]")
        if self.postfix:
            parts.append(f" {self.postfix}")
        return "".join(parts)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._drawn_n = self.n
        if self.disable:
            return
        if self._tty:
            self.stream.write("\r\033[K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.disable:
            if self.n and self._drawn_n != self.n:
                self._draw(time.monotonic())
            if self._tty and self._drawn_n >= 0:  # end the line redrawn in place, whether or not redrawn just now
                self.stream.write("\n")
                self.stream.flush()
        self.disable = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False
) -> Iterator[T]:
    """Wrap an iterable with a :class:`Progress`; ``total`` defaults to ``len(iterable)`` when available."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total=total, desc=desc, unit=unit, disable=disable) as bar:
        for item in iterable:
            yield item
            bar.update()
