"""Figures drawn in worker processes: :class:`FigureRenderer`.

Drawing a figure and compressing its PNG run on one core, so a stage that ends with a handful
of figures leaves the other cores idle while it draws them one after the other. The renderer
forks up to ``workers`` processes that draw figures side by side, and a stage can hand it the
first figures while it goes on computing what the others need. The bytes are the same as
:func:`~fmnist_cluster.plots.common.figure_png` makes in the calling process.

Figures are named, not passed: ``submit("som_hit_map", ...)`` draws
``fmnist_cluster.plots.som_hit_map``. The workers import the plotting package (matplotlib)
themselves, as soon as they start, so the calling process never does: the ``train-som``
command opens the renderer before torch is imported, and the workers, forked from a small
process, import matplotlib on the core the command's own imports leave idle
(docs/benchmarks.md). If a worker dies, ``train-som`` draws the figures in its own process. This module
imports nothing heavier than the standard library.

Workers are forked (they start in milliseconds); where ``fork`` is not available, or with
``workers=1``, every figure is drawn in the calling process. A figure function must not run
torch code: the workers may be forked after torch's thread pool started.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import signal
import sys
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any

PLOTS = "fmnist_cluster.plots"
"""The package whose functions :meth:`FigureRenderer.submit` names."""


def _png(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    plots = importlib.import_module(PLOTS)
    drawn = getattr(plots, name)(*args, **kwargs)
    return drawn if isinstance(drawn, bytes) else plots.figure_png(drawn)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_setup(parent: int) -> None:
    """A worker ends with its parent, whatever kills the parent (SIGKILL, out of memory: an
    orphan would keep the parent's pipes open, and a shell pipeline on the command's output
    would never end); leaves Ctrl-C to its parent (which shuts the pool down and reports it
    once); writes, if ever, to the real stderr, not to a console whose lock another thread held
    at fork; and imports the plotting package before its first figure; the objects of that
    import are left out of garbage collection (full collections scanning them took 0.11 s of
    four SOM figures, docs/benchmarks.md)."""
    import ctypes  # here: the parent never needs it

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: the signal ends a worker
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")  # e.g. matplotlib's missing glyphs: raw lines amid the command's own
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    importlib.import_module(PLOTS)
    gc.freeze()
    gc.enable()


def _started() -> None:
    """The first task: a ``ProcessPoolExecutor`` forks its workers at the first submission."""


class FigureRenderer:
    """Draws figures to PNG bytes, in up to ``workers`` forked processes.

    Use it as a context manager: entering the block forks the workers, leaving it waits for the
    figures still being drawn.

    Parameters
    ----------
    workers : int
        Processes that draw figures side by side; 1 draws each figure in the calling process
        when it is submitted.

    Examples
    --------
    >>> with FigureRenderer(workers=2) as figures:                    # doctest: +SKIP
    ...     png = figures.submit("som_hit_map", hits, coords, "rectangular", "map")
    ...     data = png.result()
    """

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: Executor | None = None

    @staticmethod
    def can_fork() -> bool:
        """Whether worker processes can be forked here (Linux; other systems draw inline)."""
        return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()

    def __enter__(self) -> FigureRenderer:
        if self.workers > 1 and self.can_fork():
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_setup,
                initargs=(os.getpid(),),
            )
            self._pool.submit(_started)  # fork now, from the process as it is now
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=kind is not None)
            self._pool = None

    def submit(self, name: str, *args: Any, **kwargs: Any) -> Future[bytes]:
        """Draw ``fmnist_cluster.plots.<name>(*args, **kwargs)`` (a function returning a Figure,
        or PNG bytes) as PNG.

        Returns
        -------
        Future of bytes
            ``result()`` gives the PNG, or raises what drawing raised.
        """
        if self._pool is not None:
            return self._pool.submit(_png, name, args, kwargs)
        done: Future[bytes] = Future()
        try:
            done.set_result(_png(name, args, kwargs))
        except Exception as exc:  # handed over as the pool would, through result()
            done.set_exception(exc)
        return done
