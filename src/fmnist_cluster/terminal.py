"""What the command line shows while a stage runs: the consoles, and the progress of every task
as live bars on a terminal or as a few plain lines in a log or pipe."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgressBar

from fmnist_cluster.text import visible_controls

err_console = Console(stderr=True)
"""Errors and warnings, one line each."""
console = Console(stderr=True, soft_wrap=True)
"""Progress and each command's summary line."""


def escape(text: str) -> str:
    """``text`` printed literally: rich markup escaped, control characters written out."""
    return _markup_escape(visible_controls(text))


class _RichTask:
    def __init__(self, bar: RichProgressBar, task_id: Any) -> None:
        self._bar, self._id = bar, task_id

    def advance(self, amount: float = 1, **fields: Any) -> None:
        self._bar.update(self._id, advance=amount, info=_fields_text(fields))

    def close(self) -> None:
        self._bar.stop_task(self._id)


class RichProgress:
    """The :class:`fmnist_cluster.artefacts.Progress` shown on the terminal."""

    def __init__(self, bar: RichProgressBar) -> None:
        self._bar = bar

    def task(self, description: str, total: float | None = None) -> _RichTask:
        return _RichTask(self._bar, self._bar.add_task(description, total=total, info=""))


class _PlainTask:
    """A progress task written as plain lines for logs: a line when a new tenth of the work is
    done and at least ``_PLAIN_EVERY`` seconds have passed since the last line, and a last line
    when a task that took that long ends. Quick tasks print nothing (the command's own summary
    line follows), and a failing task prints nothing more than its error."""

    def __init__(self, description: str, total: float | None) -> None:
        self._description, self._total = description, total
        self._done, self._tenth, self._info = 0.0, 0, ""
        self._said: tuple[float, str] | None = None
        self._start = self._last = time.perf_counter()

    def advance(self, amount: float = 1, **fields: Any) -> None:
        self._done += amount
        if fields:
            self._info = _fields_text(fields)
        if self._total:
            tenth = int(10 * min(self._done, self._total) / self._total)
            if tenth > self._tenth and time.perf_counter() - self._last >= _PLAIN_EVERY:
                self._tenth = tenth
                self._line()

    def close(self) -> None:
        said_last = self._said == (self._done, self._info)
        if (self._tenth or time.perf_counter() - self._start >= _PLAIN_EVERY) and not said_last:
            self._line()

    def _line(self) -> None:
        self._last, self._said = time.perf_counter(), (self._done, self._info)
        done = f"{self._done:g}/{self._total:g}" if self._total else f"{self._done:g}"
        text = f"{self._description} {done} {self._last - self._start:.0f}s {self._info}"
        console.print(text.rstrip(), highlight=False, markup=False)


_PLAIN_EVERY = 10.0


class PlainProgress:
    """The :class:`fmnist_cluster.artefacts.Progress` of a command whose output is not a terminal."""

    def task(self, description: str, total: float | None = None) -> _PlainTask:
        return _PlainTask(description, total)


def _fields_text(fields: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


@contextmanager
def live_progress() -> Iterator[RichProgress | PlainProgress]:
    """Live bars on a terminal; one plain line per tenth of each task in a log or pipe."""
    if not console.is_terminal:
        yield PlainProgress()
        return
    bar = RichProgressBar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with bar:
        yield RichProgress(bar)
