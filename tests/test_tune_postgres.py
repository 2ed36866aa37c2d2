"""Distributed tuning on a real PostgreSQL server: a throw-away cluster started by the test
(Debian's ``postgresql`` package; CI installs it), three workers, one killed mid-trial."""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.test_tune import SLOW, _config, _param_sets, _running_trial, _states, _tune, data_dir  # noqa: F401


def _server_bin() -> Path | None:
    """The folder of PostgreSQL's initdb, pg_ctl and postgres (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    folders = ([str(Path(found).resolve().parent)] if found else []) + sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for folder in folders:
        if all((Path(folder) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on 127.0.0.1 (trust authentication, no fsync)."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("the PostgreSQL driver psycopg is not installed (pip install 'fmnist-cluster[postgres]')")
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server programs not found (Debian: apt-get install postgresql; .ci/run does)")
    user = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="fmnist-pg-"))
    data, port = root / "data", _free_port()
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    run_as = {"user": user.pw_uid, "group": user.pw_gid} if user is not None else {}
    try:
        subprocess.run(
            [bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            **run_as,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        subprocess.run(
            [bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            **run_as,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True, **run_as)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.serial
def test_three_workers_one_killed_mid_trial(tmp_path: Path, data_dir: Path, postgres_url: str) -> None:  # noqa: F811
    """Three `tune --storage URL` workers (as on three machines); one gets SIGKILL during a trial.
    The study still ends with exactly n complete trials, none repeating a parameter set; the
    killed trial is FAIL (no heartbeat) and its retry completes with the same parameters."""
    # the retry runs only if the killed trial is found stale before the others fill the budget:
    # under load the victim may start late, so the budget leaves room (n) and staleness is quick
    n = 10
    cfg = _config(tmp_path, **SLOW, heartbeat_interval=1, grace_period=2, study_name="pg")
    procs = [_tune(cfg, data_dir, tmp_path / f"w{i}", n, "--storage", postgres_url) for i in range(3)]

    storages: list[optuna.storages.RDBStorage] = []

    def load() -> optuna.Study:
        # one connection pool for all the polling (a new storage per poll would use up the
        # server's connections); made on the first poll that finds the workers' tables
        if not storages:
            storages.append(optuna.storages.RDBStorage(postgres_url))
        return optuna.load_study(study_name="pg", storage=storages[0])

    victim = procs[0]
    killed = _running_trial(load, victim, pid=victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    outputs = [p.communicate(timeout=240)[0] for p in procs[1:]]
    assert [p.returncode for p in procs[1:]] == [0, 0], outputs
    study = load()
    complete = _states(study, TrialState.COMPLETE)
    assert len(complete) == n
    assert len(set(_param_sets(complete))) == n
    assert study.trials[killed.number].state == TrialState.FAIL
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params == study.trials[killed.number].params
    assert not _states(study, TrialState.RUNNING)
