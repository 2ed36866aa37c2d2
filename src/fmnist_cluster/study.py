"""Optuna studies shared by many ``tune`` workers: storage, worker identity, dead workers, budget.

* Storage. By default a journal file ``study.journal`` in the output folder (Optuna's
  ``JournalStorage`` with a file backend: safe for several processes on one host, opened by
  path, so no character of ``--out`` is ever read as part of a URL). A database URL
  (``postgresql+psycopg://...``, ``mysql+pymysql://...``) serves workers on many machines; it
  is opened with heartbeats, so a trial whose worker stops beating for ``grace_period``
  seconds is failed by the next worker that starts a trial.
* Worker identity. Every worker holds an exclusive lock on one numbered slot file in
  ``OUT/.tune-workers/`` while it runs and writes a fresh token into it. Each trial records
  its worker's host, process id, slot and token; the kernel drops the lock when a process
  dies, however it dies, so a running trial whose slot is free (or holds another token)
  belongs to a dead worker. Such trials (journal storage) are failed when a worker starts
  and before every trial.
* Retries. A trial failed because its worker died is queued again with the same parameters
  (``RetryHeartbeatStaleTrialCallback``), at most ``max_retry`` times.
* Seeds. Each trial draws its parameters from a random state of its own, derived from the
  run seed and the trial's number (:mod:`fmnist_cluster.tune.sampler`): numbers are unique in
  a study, so no two workers draw the same parameter sets, and a run of one worker is
  reproducible on any storage.
* Budget. ``n_trials`` counts finished (complete or pruned) trials of the whole study. A
  worker starts a trial only while finished plus running trials are below it, waits while
  the rest are running elsewhere (to take over a retry if one fails), and a trial that still
  finds the budget taken once it has its number fails at once without training (a race of
  two workers starting together).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fmnist_cluster.artefacts import loads_json
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.text import hide_url_passwords

JOURNAL_FILE = "study.journal"
WORKER_DIR = ".tune-workers"
WORKER_ATTR = "worker"
#: a running trial that never recorded its worker is taken for dead after this many seconds
UNCLAIMED_SECONDS = 60.0
#: how often a worker waiting for other workers' trials looks at the study again
POLL_SECONDS = 0.5


class OverBudget(Exception):
    """Raised inside a trial that another worker's trial already made unnecessary."""


@dataclass
class StudyStorage:
    """An opened Optuna storage and how to name it in messages."""

    storage: Any
    shown: str
    is_rdb: bool


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: as given, but for a password
        return hide_url_passwords(url)


def _driver_url(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when only it is installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        if importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite(url: str) -> Any:
    """``url`` parsed when it names an SQLite database; None for another database or no URL."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a URL: refused by the storage itself
        return None
    return parsed if parsed.get_backend_name() == "sqlite" else None


def _in_memory(url: str) -> bool:
    """Whether ``url`` names an SQLite database that lives in memory (``sqlite://``, ``:memory:``)."""
    parsed = _sqlite(url)
    if parsed is None:
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or ":memory:" in database or parsed.query.get("mode") == "memory"


def sqlite_file(url: str | None) -> Path | None:
    """The file of an SQLite ``url`` (None for another database, memory or no URL)."""
    parsed = None if url is None or _in_memory(url) else _sqlite(url)
    return Path(parsed.database) if parsed is not None and parsed.database else None


_OPEN_ATTEMPTS = 5
T = TypeVar("T")


def _check_journal(path: Path, wait: float = 0.5) -> None:
    """Refuse a journal whose last record is cut off (a process killed while writing it) or is
    not a JSON object with an ``op_code``. Optuna reads past a bad last line (a bad line before
    it, it refuses itself), but its next record would be written onto it, and the journal could
    not be read again. A record being written by a live worker is complete within ``wait`` s.
    Only the end of the file is read.

    Raises
    ------
    FmnistError
        The last record is cut off.
    ValueError
        The last record is not a JSON object with an ``op_code``.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            content = _tail(path)
        except FileNotFoundError:
            return
        if not content or content.endswith(b"\n"):
            break
        if time.monotonic() >= deadline:
            raise FmnistError(
                f"the last record of the study journal {path} is cut off (a tune process was killed while "
                f"writing it?); delete that last, unfinished line to continue the study, or pass another --out"
            )
        time.sleep(0.05)
    if content:
        record = loads_json(content.splitlines()[-1])
        if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
            raise ValueError("its last line is not an Optuna record")


def _tail(path: Path, block: int = 1 << 20) -> bytes:
    """The end of ``path``: its last ``block`` bytes, or all of it when its last line is longer."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - block))
        tail = fh.read()
        if len(tail) < size and tail.rstrip(b"\n").count(b"\n") == 0:  # the last line began earlier
            fh.seek(0)
            tail = fh.read()
    return tail


def open_storage(
    url: str | None, out_dir: Path, heartbeat_interval: int, grace_period: int, max_retry: int
) -> StudyStorage:
    """The storage of a study: the journal file ``OUT/study.journal`` or the database ``url``."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url is None:
        path = out_dir / JOURNAL_FILE
        try:
            _check_journal(path)
            return StudyStorage(JournalStorage(JournalFileBackend(str(path))), str(path), False)
        except OSError as exc:
            raise FmnistError(f"cannot open the study journal {path} ({exc.strerror}); pass a writable --out") from None
        except (ValueError, TypeError, KeyError, AssertionError) as exc:  # not JSON, or not an Optuna record
            raise FmnistError(
                f"the study journal {path} is damaged ({type(exc).__name__}: {first_line(exc)}); "
                f"remove it to start the study afresh, or pass another --out"
            ) from None
    shown = shown_url(url)
    if _in_memory(url):
        raise FmnistError(
            f"--storage {shown} is a database in memory: it is gone when tune ends and no other worker sees it; "
            f"give a file (sqlite:///path/study.db) or a server URL, or leave --storage out for the journal in --out"
        )

    def connect() -> StudyStorage:
        storage = optuna.storages.RDBStorage(
            _driver_url(url),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if max_retry else None,
        )
        return StudyStorage(storage, shown, True)

    # workers opening one new database at once race to create its tables; the loser's commit
    # fails, and the tables are there a moment later
    try:
        return set_up_with_retries(connect, shown, optuna.exceptions.StorageInternalError, _OPEN_ATTEMPTS, 0.2, 0.2)
    except ValueError as exc:  # a URL SQLAlchemy cannot take apart (a port that is not a number)
        raise FmnistError(
            f"--storage {shown} is not a database URL that can be opened ({first_line(exc)}); "
            "give dialect+driver://user:password@host:port/database"
        ) from None


def set_up_with_retries(
    call: Callable[[], T],
    shown: str,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    attempts: int,
    first_pause: float,
    pause_step: float,
) -> T:
    """``call()``, run again after a growing pause while it raises ``retry_on``: workers setting
    up one new study database at once race, and the loser succeeds a moment later.

    Parameters
    ----------
    call : callable
        Opens the storage or creates the study.
    shown : str
        The storage as errors name it (no password).
    retry_on : exception type or tuple of them
        What the race raises.
    attempts : int
        Calls at most (1: no retry).
    first_pause, pause_step : float
        Seconds before the second call, and the increase before each later one.

    Raises
    ------
    FmnistError
        ``call`` raised ``retry_on`` ``attempts`` times, or something else but ``ValueError``.
    ValueError
        Passed on: the caller says what it means.
    """
    for attempt in range(attempts):
        try:
            return call()
        except ValueError:
            raise
        except Exception as exc:  # database URLs fail with many driver-specific types
            why = f"{type(exc).__name__}: {first_line(exc)}"
            if not isinstance(exc, retry_on) or attempts == 1:
                raise FmnistError(f"cannot open Optuna storage {shown} ({why}); check --storage") from None
            if attempt == attempts - 1:
                raise FmnistError(
                    f"cannot set up Optuna in {shown} ({attempts} attempts; {why}); check --storage"
                ) from None
            time.sleep(first_pause + pause_step * attempt)
    raise AssertionError("unreachable")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers' messages run to many lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


# -- worker identity ---------------------------------------------------------------------
@dataclass
class WorkerSlot:
    """The numbered slot a live worker holds (see the module docstring)."""

    slot: int
    token: str
    host: str
    pid: int

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "slot": self.slot, "token": self.token}


@contextlib.contextmanager
def worker_slot(out_dir: Path) -> Iterator[WorkerSlot]:
    """Hold the lowest free slot in ``OUT/.tune-workers/`` for the duration of the block."""
    folder = out_dir / WORKER_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmnistError(f"cannot create {folder} ({exc.strerror}); pass a writable --out") from None
    slot = 0
    while True:
        fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            os.close(fd)
            slot += 1
    token = uuid.uuid4().hex
    os.ftruncate(fd, 0)
    os.pwrite(fd, token.encode(), 0)
    try:
        yield WorkerSlot(slot, token, socket.gethostname(), os.getpid())
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def worker_alive(info: dict[str, Any], out_dir: Path) -> bool | None:
    """Whether the worker a trial recorded still runs: True, False, or None (another host)."""
    if info.get("host") != socket.gethostname():
        return None
    path = out_dir / WORKER_DIR / f"slot-{int(info.get('slot', -1))}.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: by our worker, or by a later one in the same slot
            holder = os.pread(fd, 64, 0).decode(errors="replace")
            return not holder or holder == info.get("token")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# -- dead workers and the budget ---------------------------------------------------------
def fail_dead_trials(study: Any, store: StudyStorage, out_dir: Path, max_retry: int) -> None:
    """Fail the running trials of dead workers and queue their retries."""
    import copy

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    if store.is_rdb:  # heartbeats: Optuna knows which trials are stale
        optuna.storages.fail_stale_trials(study)
        return
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        info = trial.user_attrs.get(WORKER_ATTR)
        if info is None:
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            dead = now - started > UNCLAIMED_SECONDS
        else:
            dead = worker_alive(info, out_dir) is False
        if not dead:
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first, or it finished meanwhile
        if max_retry:  # the retry must not inherit the dead worker's identity
            frozen = copy.deepcopy(study._storage.get_trial(trial._trial_id))
            frozen.user_attrs = {k: v for k, v in frozen.user_attrs.items() if k != WORKER_ATTR}
            RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)


def counts(study: Any) -> tuple[int, int]:
    """Finished (complete or pruned) and running trials of the study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def check_budget(study: Any, number: int, n_trials: int) -> None:
    """Raise :class:`OverBudget` when the trials before trial ``number`` already fill the budget."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    if sum(t.number < number for t in study.get_trials(deepcopy=False, states=states)) >= n_trials:
        raise OverBudget(f"the budget of {n_trials} trials was reached by other workers")


def run_budget(
    study: Any,
    run_one: Callable[[], None],
    reap: Callable[[], Any],
    n_trials: int,
    deadline: float | None,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run trials (``run_one`` runs one) until the study holds ``n_trials`` finished trials,
    the ``deadline`` (a ``time.monotonic`` value) passes or ``stop()`` says so."""
    while not stop() and (deadline is None or time.monotonic() < deadline):
        reap()
        finished, running = counts(study)
        if finished >= n_trials:
            return
        if finished + running >= n_trials:
            time.sleep(POLL_SECONDS)  # the rest run elsewhere; stay to retry one that fails
            continue
        run_one()
