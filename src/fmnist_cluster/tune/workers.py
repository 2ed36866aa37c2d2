"""``tune --workers N``: worker processes on this host that run one study, and Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from fmnist_cluster.artefacts import keep_freed_memory
from fmnist_cluster.config import TuneConfig
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.tune.trials import held_out_rows, work


def from_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C, or an error raised while a Ctrl-C unwound (e.g. inside the
    journal file's lock release, which the interrupt can cut in half)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__context__
    return False


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker_main(
    config_json: dict[str, Any], input_dir: str, out_dir: str, threads: int, stop: Any, errors: Any
) -> None:
    """Entry point of one worker process of ``tune --workers N``."""
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    warnings.simplefilter("ignore")  # the command shows its own; a worker's would be raw lines amid them
    try:
        import optuna
        import torch

        torch.set_num_threads(threads)
        keep_freed_memory()  # a fresh process: the allocator setting the CLI makes for its own
        optuna.logging.set_verbosity(logging.ERROR)
        config = TuneConfig.model_validate(config_json)
        x_fit, x_val, digest = held_out_rows(config, input_dir)
        parent = os.getppid()
        work(config, Path(out_dir), x_fit, x_val, digest, stop=lambda: stop.is_set() or os.getppid() != parent)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if from_interrupt(exc):
            sys.exit(130)
        if not isinstance(exc, FmnistError):
            raise
        errors.put(str(exc))
        sys.exit(2)


def run_workers(config: TuneConfig, input_dir: Path | str, out_dir: Path, study: Any, advance: Any) -> None:
    """Start ``config.workers`` worker processes and follow the study until they end."""
    import multiprocessing
    import threading

    ctx = multiprocessing.get_context("spawn")
    stop, errors = ctx.Event(), ctx.SimpleQueue()
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    args = (config.model_dump(mode="json"), str(input_dir), str(out_dir), threads, stop, errors)
    procs = [ctx.Process(target=_worker_main, args=args, name=f"tune-worker-{i}") for i in range(config.workers)]
    main = threading.current_thread() is threading.main_thread()
    # ignored while the workers start (inherited until each is ready); a stop then finds them all
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(s, signal.SIG_IGN) for s in stops] if main else []
    try:
        for p in procs:
            p.start()
    finally:
        for s, handler in zip(stops, previous, strict=False):
            signal.signal(s, handler)
    try:
        while any(p.is_alive() for p in procs):
            advance()
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop.set()
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()
        raise
    advance()
    if not errors.empty():
        raise FmnistError(errors.get())
    for p in procs:
        if p.exitcode != 0:
            raise FmnistError(f"tune worker {p.name} ended with exit code {p.exitcode}; see its output above")
