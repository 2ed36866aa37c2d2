"""Progress reporting: library code never prints; the command line passes a real reporter in."""

from __future__ import annotations

from typing import Any, Protocol


class Task(Protocol):
    """One bar of progress."""

    def advance(self, amount: float = 1, **fields: Any) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    """Something that can open progress bars; the CLI passes a rich one."""

    def task(self, description: str, total: float | None = None) -> Task: ...


class _NullTask:
    def advance(self, amount: float = 1, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None


class NullProgress:
    """A :class:`Progress` that shows nothing (the default in library calls and tests)."""

    def task(self, description: str, total: float | None = None) -> Task:
        return _NullTask()


NULL_PROGRESS = NullProgress()
