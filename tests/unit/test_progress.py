"""The progress bar on standard error: redrawn in place on a terminal, its last state left on a line of its own so
that what is printed next (a summary, an error, the shell prompt) does not run on after it."""

from __future__ import annotations

import io

import pytest

from openesm3.utils.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("done", [2, 1])  # finished, or stopped early (an error, Ctrl-C)
def test_a_bar_drawn_on_a_terminal_ends_its_line(done: int) -> None:
    stream = _Terminal()
    with Progress(total=2, desc="tokenize", unit="structure", stream=stream) as bar:
        for _ in range(done):
            bar.update()
    text = stream.getvalue()
    assert text.startswith("\r\033[Ktokenize: ") and f" {done}/2 " in text.rsplit("\r", 1)[-1]
    assert text.endswith("\n") and text.count("\n") == 1


def test_a_bar_that_drew_nothing_writes_nothing() -> None:
    for stream in (_Terminal(), io.StringIO()):
        with Progress(total=2, stream=stream):
            pass
        with Progress(total=2, stream=stream, disable=True) as bar:
            bar.update(2)
        assert stream.getvalue() == ""


def test_off_a_terminal_every_drawn_state_is_a_line() -> None:
    stream = io.StringIO()
    with Progress(total=2, desc="featurize", unit="file", stream=stream, log_every=3600) as bar:
        bar.update()
        bar.update()
    lines = stream.getvalue().splitlines(keepends=True)
    assert [line.split(" [")[0] for line in lines] == ["featurize:  50% 1/2", "featurize: 100% 2/2"]
    assert all(line.endswith("\n") and "\r" not in line for line in lines)


def test_the_finished_state_is_drawn_at_once_not_only_at_close() -> None:
    stream = io.StringIO()
    bar = Progress(total=3, desc="embed", stream=stream, log_every=3600)
    for _ in range(3):
        bar.update()
    assert stream.getvalue().splitlines()[-1].startswith("embed: 100% 3/3")  # before close(): a long summary may follow
    bar.close()
    assert stream.getvalue().count("3/3") == 1  # and not drawn twice


def test_the_line_shows_hours_and_never_more_than_100_percent() -> None:
    bar = Progress(total=2, desc="fold", stream=io.StringIO())
    bar.n = 3  # more work than announced
    line = bar.line(now=bar._start + 2 * 3600 + 5 * 60 + 7)
    assert line.startswith("fold: 100% 3/2 [2:05:07<")
    bar.n = 1
    assert "[00:07<00:07" in bar.line(now=bar._start + 7)


@pytest.mark.parametrize("clock", [0.0, 5.0, 3599.0])
def test_the_first_state_is_drawn_whatever_the_clocks_origin(monkeypatch: pytest.MonkeyPatch, clock: float) -> None:
    """time.monotonic() counts from an arbitrary point (boot, on Linux): a bar compared it with a last draw at 0, so on
    a machine up for less than log_every seconds the first state off a terminal was not drawn."""
    monkeypatch.setattr("time.monotonic", lambda: clock)
    stream = io.StringIO()
    bar = Progress(total=3, desc="fold", stream=stream, log_every=3600)
    bar.update()
    assert stream.getvalue().startswith("fold:  33% 1/3 ["), stream.getvalue()


def test_a_state_is_drawn_once_its_interval_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal a line every log_every seconds (the interval included); on one, a redraw every 0.1 s."""
    clock = [1.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    stream = io.StringIO()
    bar = Progress(total=10, desc="x", stream=stream, log_every=4.0)
    bar.update()  # drawn: the first state
    clock[0] = 4.5
    bar.update()
    assert stream.getvalue().count("\n") == 1, stream.getvalue()
    clock[0] = 5.0  # 4 s after the last line
    bar.update()
    assert stream.getvalue().count("\n") == 2 and " 3/10 " in stream.getvalue(), stream.getvalue()
    terminal = _Terminal()
    bar = Progress(total=10, desc="x", stream=terminal, log_every=4.0)
    bar.update()
    clock[0] = 5.5  # 0.5 s later: within log_every, past a terminal's 0.1 s
    bar.update()
    assert " 2/10 " in terminal.getvalue(), terminal.getvalue()
