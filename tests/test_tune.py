"""Tuning: search-space validation, real trials, shared studies, restart, best.yaml round trip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from typer.testing import CliRunner

from fmnist_cluster.cli import app
from fmnist_cluster.config import SomConfig, TuneConfig, load_config
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.tune import apply_params, qe_te_study
from fmnist_cluster.tune.sampler import TrialSeededSampler, trial_seed
from tests.conftest import assert_same_outputs

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "base": {"som": {"rows": 3, "cols": 3, "sigma": 1.5, "sigma_end": 0.5, "epochs": 2}, "train": {"device": "cpu"}},
    "space": {
        "som.sigma": {"low": 0.5, "high": 2.0},
        "som.epochs": {"low": 1, "high": 3, "integer": True},
        "som.neighbourhood": {"choices": ["gaussian", "bubble"]},
    },
    "limit": None,
    "holdout": 0.3,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def data_dir(idx_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    result = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _journal(out: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name="som", storage=storage)


def _states(study: optuna.Study, state: TrialState) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state == state]


def _param_sets(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


def _config(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def test_shipped_tune_config_is_the_default() -> None:
    assert yaml.safe_load((ROOT / "configs" / "tune.yaml").read_text()) == TuneConfig().model_dump(mode="json")
    for path in sorted((ROOT / "configs").glob("tune*.yaml")):
        load_config(TuneConfig, path)


def test_low_above_high_is_one_line_naming_the_key(tmp_path: Path, data_dir: Path) -> None:
    cfg = _config(tmp_path, space={"som.sigma": {"low": 5.0, "high": 1.0}})
    result = runner.invoke(app, ["tune", "--config", str(cfg), "--input", str(data_dir), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "space.som.sigma" in lines[0] and "low (5.0) > high (1.0)" in lines[0]


_CREATE = '{"op_code": 0, "worker_id": "w", "study_name": "som", "directions": [1, 1]}\n'


@pytest.mark.parametrize(
    ("tail", "words"),
    [
        ("garbage{\n", "is damaged"),
        ("[1, 2, 3]\n", "is damaged"),
        ('{"worker_id": "x"}\n', "is damaged"),
        ('{"op_code": 99, "worker_id": "x"}\n', "is damaged"),
        ('{"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_sta', "last record of the study journal"),
    ],
    ids=["not-json", "a-list", "no-op-code", "unknown-op-code", "cut-off"],
)
def test_a_damaged_study_journal_is_one_line_and_not_overwritten(
    tmp_path: Path, data_dir: Path, tail: str, words: str
) -> None:
    out = tmp_path / "t"
    out.mkdir()
    journal = out / "study.journal"
    journal.write_text(_CREATE + tail)
    before = journal.read_bytes()
    result = runner.invoke(app, ["tune", "--input", str(data_dir), "--out", str(out), "--set", "n_trials=1"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "study.journal" in lines[0] and words in lines[0], result.output
    assert journal.read_bytes() == before  # nothing written into it, nothing destroyed


def test_unknown_space_key_is_an_error(tmp_path: Path) -> None:
    cfg = load_config(TuneConfig, _config(tmp_path, space={"som.sigmaa": {"low": 1, "high": 2}}))
    from fmnist_cluster.tune import check_space as _check_space

    with pytest.raises(FmnistError, match=r"search space key 'som\.sigmaa'.*not a train-som config key"):
        _check_space(cfg)


def test_apply_params_lowers_sigma_end() -> None:
    cfg = apply_params(SomConfig(), {"som.sigma": 0.4, "som.sigma_end": 2.0})
    assert (cfg.som.sigma, cfg.som.sigma_end) == (0.4, 0.4)


def test_scalar_study_has_the_qe_te_pareto_front() -> None:
    values = [(1, 5), (2, 2), (3, 3), (5, 1), (1, 6)]
    study = optuna.create_study(direction="minimize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    trials = [
        optuna.trial.create_trial(
            params={"x": 0.1 * i}, distributions=dist, value=qe + te, user_attrs={"qe": qe, "te": te}
        )
        for i, (qe, te) in enumerate(values)
    ]
    study.add_trials(trials)
    config = TuneConfig.model_validate({**TINY, "objective": "scalar"})
    front = qe_te_study(study, config, study.trials)
    assert sorted(t.number for t in front.best_trials) == [0, 1, 3]
    assert [t.values for t in front.trials] == [list(v) for v in values]
    pareto = TuneConfig.model_validate(TINY)
    assert qe_te_study(study, pareto, study.trials) is study


def test_tune_trains_real_maps_and_best_yaml_round_trips(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "tune"
    result = runner.invoke(
        app,
        ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--out", str(out), "--n-trials", "4"],
    )
    assert result.exit_code == 0, result.output
    figures = ("history-qe.png", "history-te.png", "pareto.png", "importances.png")
    for name in ("best.yaml", "trials.csv", "metrics.json", "study.journal", *figures):
        assert (out / name).is_file(), name
    study = _journal(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pareto_trials"] == sorted(t.number for t in study.best_trials)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({t.values[0] for t in complete}) > 1  # trained maps differ in quality
    best = load_config(SomConfig, out / "best.yaml")
    chosen = next(t for t in complete if SomConfig.model_validate(t.user_attrs["config"]) == best)
    assert best.som.sigma == pytest.approx(chosen.params["som.sigma"])
    applied = best.model_dump(mode="json")
    for key, value in metrics["best_params"].items():  # as the map used them (best.yaml), not as sampled
        section, name = key.split(".")
        assert applied[section][name] == value, key
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    assert timings["wall_s"] >= timings["seconds_this_run"]  # the stage's time includes its trials
    assert timings["trials_this_run"] == 4
    again = ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--n-trials", "4"]
    assert runner.invoke(app, [*again, "--out", str(tmp_path / "again")]).exit_code == 0
    assert_same_outputs(out, tmp_path / "again")  # the study's journal is its storage, not an output
    assert runner.invoke(app, [*again, "--out", str(out)]).exit_code == 0  # the study is already complete
    assert json.loads((out / "manifest.json").read_text())["timings"]["trials_this_run"] == 0
    train = runner.invoke(
        app, ["train-som", "--config", str(out / "best.yaml"), "--input", str(data_dir), "--out", str(tmp_path / "som")]
    )
    assert train.exit_code == 0, train.output


def test_the_best_parameters_are_reported_as_the_map_used_them() -> None:
    from fmnist_cluster.tune.results import _applied

    sampled = {"som.sigma": 1.5, "som.sigma_end": 2.0, "som.epochs": 3}
    assert _applied(apply_params(SomConfig(), sampled), sampled) == {**sampled, "som.sigma_end": 1.5}


def test_a_study_is_continued_only_on_the_same_terms(tmp_path: Path, data_dir: Path, idx_dir: Path) -> None:
    """Trials measured on other data, another base map or another search space do not mix with
    this run's: one error line, and the study and the artefact are left as they were."""
    out = tmp_path / "tune"
    base = ["tune", "--config", str(_config(tmp_path)), "--out", str(out), "--n-trials", "2"]
    assert runner.invoke(app, [*base, "--input", str(data_dir)]).exit_code == 0
    journal, metrics = (out / "study.journal").read_bytes(), (out / "metrics.json").read_bytes()
    other = tmp_path / "std"
    made = ["preprocess", "--source", "idx", "--path", str(idx_dir), "--set", "standardize=global", "--out", str(other)]
    assert runner.invoke(app, made).exit_code == 0
    cases = [
        (["--input", str(other)], "another --input data"),
        (["--input", str(data_dir), "--set", "base.som.rows=4"], "another base"),
        (["--input", str(data_dir), "--set", "space={som.epochs: {choices: [2, 3]}}"], "another space"),
        (["--input", str(data_dir), "--set", "holdout=0.4"], "another holdout"),
    ]
    for extra, words in cases:
        result = runner.invoke(app, [*base[:-1], "3", *extra])
        assert result.exit_code == 2, result.output
        assert words in result.output and "continue it with the same --input and config" in result.output
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
        assert (out / "study.journal").read_bytes() == journal and (out / "metrics.json").read_bytes() == metrics
    assert runner.invoke(app, [*base[:-1], "3", "--input", str(data_dir)]).exit_code == 0  # same terms: continued
    assert len(_journal(out).trials) == 3
    # settings that change no score (memory, device, figures) do not make another study
    unmeasured = ["--set", "base.train.chunk_size=64", "--set", "base.analysis.n_largest_qe=5"]
    assert runner.invoke(app, [*base[:-1], "4", "--input", str(data_dir), *unmeasured]).exit_code == 0
    assert len(_journal(out).trials) == 4


def test_a_study_database_inside_the_input_is_refused(tmp_path: Path, data_dir: Path) -> None:
    args = ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--out", str(tmp_path / "t")]
    result = runner.invoke(app, [*args, "--storage", f"sqlite:///{data_dir / 'study.db'}"])
    assert result.exit_code == 2 and "inside the --input folder" in result.output
    assert not (data_dir / "study.db").exists() and not (tmp_path / "t").exists()


def _tune_failing(
    monkeypatch: pytest.MonkeyPatch,
    module: object,
    name: str,
    message: str,
    tmp_path: Path,
    data: Path,
    out: Path,
    n: int,
) -> Any:
    """``tune`` in this process, with ``module.name`` raising FmnistError(``message``); exit 2."""

    def fail(*args: object, **kwargs: object) -> None:
        raise FmnistError(message)

    monkeypatch.setattr(module, name, fail)
    args = ["tune", "--config", str(_config(tmp_path)), "--input", str(data), "--out", str(out), "--n-trials", str(n)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    return result


def test_trials_that_all_fail_stop_the_run_with_the_last_error(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_cluster.tune import trials as tune_trials

    out = tmp_path / "tune"
    result = _tune_failing(monkeypatch, tune_trials, "_trial", "this map cannot be trained", tmp_path, data_dir, out, 3)
    assert f"{tune_trials.FAILURES_IN_A_ROW} trials in a row failed, the last with: this map cannot" in result.output
    assert not out.exists()  # no trial finished: nothing worth keeping


def test_a_failed_first_run_keeps_the_trials_it_finished(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_cluster.tune import stage as tune_stage

    out = tmp_path / "new" / "tune"
    result = _tune_failing(
        monkeypatch, tune_stage, "write_results", "writing the results failed", tmp_path, data_dir, out, 2
    )
    assert "writing the results failed" in result.output
    assert len(_states(_journal(out), TrialState.COMPLETE)) == 2  # kept, for the next run to continue


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--set", "timeout=0.000001"], "has no finished trial"),
        (["--storage", "sqlite://"], "is a database in memory"),
        (["--storage", "sqlite:///:memory:"], "is a database in memory"),
    ],
    ids=["no-trial-in-time", "in-memory", "in-memory-named"],
)
def test_a_failed_first_run_leaves_no_out(tmp_path: Path, data_dir: Path, extra: list[str], words: str) -> None:
    out = tmp_path / "new" / "tune"
    args = ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--out", str(out), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_a_study_with_trials_tune_did_not_make_is_refused(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "tune"
    out.mkdir()
    study = optuna.create_study(
        study_name="som",
        storage=JournalStorage(JournalFileBackend(str(out / "study.journal"))),
        directions=["minimize", "minimize"],
    )
    study.add_trial(optuna.trial.create_trial(values=[1.0, 0.1], params={}, distributions={}))
    args = ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--out", str(out), "--n-trials", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "holds trials that tune did not record the terms of" in result.output
    assert "Traceback" not in result.output


def test_scalar_objective_with_pruning(tmp_path: Path, data_dir: Path) -> None:
    cfg = _config(tmp_path, objective="scalar")
    out = tmp_path / "tune"
    result = runner.invoke(
        app, ["tune", "--config", str(cfg), "--input", str(data_dir), "--out", str(out), "--n-trials", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "tune" in result.output and (out / "best.yaml").is_file()


def _slow(low: int, high: int) -> dict:
    """A search space whose trials take a while (``low`` to ``high`` epochs: 1,500 take about 1.5 s)."""
    return {
        "space": {"som.sigma": {"low": 0.5, "high": 2.0}, "som.epochs": {"low": low, "high": high, "integer": True}}
    }


SLOW = _slow(1500, 2000)


def _tune(cfg: Path, data: Path, out: Path, n: int, *extra: str) -> subprocess.Popen:
    """``tune`` as its own process (so that it can be killed or interrupted)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, "-m", "fmnist_cluster", "tune", "--config", str(cfg), "--input", str(data)]
    args += ["--out", str(out), "--n-trials", str(n), *extra]
    return subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,  # a shell's background job would otherwise pass SIGINT on ignored
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running_trial(
    load: Callable[[], optuna.Study], proc: subprocess.Popen, pid: int | None = None, timeout: float = 90
) -> optuna.trial.FrozenTrial:
    """Wait until ``proc`` (or one of its workers; the one with process id ``pid`` if given) is
    training the map of a trial; that trial."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            running = [
                t
                for t in _states(load(), TrialState.RUNNING)
                # "config" is set once every parameter is sampled, just before the map trains
                if "config" in t.user_attrs
                and "worker" in t.user_attrs
                and pid in (None, t.user_attrs["worker"]["pid"])
            ]
        except (KeyError, FileNotFoundError, optuna.exceptions.StorageInternalError):
            continue  # the study, or a new database's tables, are not there yet
        if running:
            return running[0]
    proc.kill()
    raise AssertionError(f"no trial started: {proc.communicate()[0]}")


def test_out_with_url_characters_keeps_the_study_inside_it(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "runs" / "a?b=1%2x#y"
    result = runner.invoke(
        app,
        ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--out", str(out), "--n-trials", "2"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [out.name]
    assert len(_states(_journal(out), TrialState.COMPLETE)) == 2


def test_restart_samples_new_parameter_sets(tmp_path: Path, data_dir: Path) -> None:
    cfg, out = _config(tmp_path), tmp_path / "tune"
    for n in (3, 6):
        result = runner.invoke(
            app, ["tune", "--config", str(cfg), "--input", str(data_dir), "--out", str(out), "--n-trials", str(n)]
        )
        assert result.exit_code == 0, result.output
    sets = _param_sets(_states(_journal(out), TrialState.COMPLETE))
    assert len(sets) == 6 and len(set(sets)) == 6


def test_every_trial_draws_from_a_random_state_of_its_own() -> None:
    assert len({trial_seed(7, number) for number in range(1000)}) == 1000
    assert trial_seed(7, 3) == trial_seed(7, 3) != trial_seed(8, 3)
    made: list[int] = []

    def make(seed: int) -> optuna.samplers.BaseSampler:
        made.append(seed)
        return optuna.samplers.RandomSampler(seed=seed)

    study = optuna.create_study(sampler=TrialSeededSampler(make, 7))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert made == [7, trial_seed(7, 0), trial_seed(7, 1), trial_seed(7, 2)]
    again = optuna.create_study(sampler=TrialSeededSampler(make, 7))
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]


def test_a_study_on_sqlite_draws_the_same_parameters_twice(tmp_path: Path, data_dir: Path) -> None:
    """The sampler's seeds depend on the run seed and the trial numbers only, not on the host,
    the process or the storage: two processes, one after the other, draw the same."""
    params = []
    for name in ("a", "b"):
        storage = f"sqlite:///{tmp_path / (name + '.db')}"
        proc = _tune(_config(tmp_path), data_dir, tmp_path / name, 3, "--storage", storage)
        output = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, output
        study = optuna.load_study(study_name="som", storage=storage)
        params.append([t.params for t in study.trials])
    assert params[0] == params[1] and len({json.dumps(p, sort_keys=True) for p in params[0]}) == 3


@pytest.mark.serial
def test_workers_share_one_study_and_its_budget(tmp_path: Path, data_dir: Path) -> None:
    """--workers 3 and, on the same --out, a second command: one budget, no repeated parameter set."""
    cfg, out = _config(tmp_path, **SLOW), tmp_path / "tune"
    procs = [_tune(cfg, data_dir, out, 12, "--workers", "3"), _tune(cfg, data_dir, out, 12)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = _journal(out)
    complete = _states(study, TrialState.COMPLETE)
    assert len(complete) == 12
    assert len(set(_param_sets(complete))) == 12
    assert not _states(study, TrialState.RUNNING)
    assert len({(t.user_attrs["worker"]["pid"]) for t in complete}) >= 2


@pytest.mark.serial
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigint_stops_with_one_line(tmp_path: Path, data_dir: Path, workers: str) -> None:
    cfg, out = _config(tmp_path, **SLOW), tmp_path / "tune"
    proc = _tune(cfg, data_dir, out, 100, "--workers", workers)
    _running_trial(lambda: _journal(out), proc)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted:"), output
    assert "run the same command again" in lines[0]
    study = _journal(out)
    assert not _states(study, TrialState.RUNNING) and _states(study, TrialState.FAIL)


@pytest.mark.serial
def test_killed_worker_trial_fails_and_is_retried(tmp_path: Path, data_dir: Path) -> None:
    """SIGKILL leaves no trial RUNNING for ever: the next worker fails it and runs it again."""
    cfg, out = _config(tmp_path, **SLOW), tmp_path / "tune"
    proc = _tune(cfg, data_dir, out, 100)
    killed = _running_trial(lambda: _journal(out), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _journal(out).trials[killed.number].state == TrialState.RUNNING
    n = len(_states(_journal(out), TrialState.COMPLETE)) + 1
    result = runner.invoke(
        app, ["tune", "--config", str(cfg), "--input", str(data_dir), "--out", str(out), "--n-trials", str(n)]
    )
    assert result.exit_code == 0, result.output
    study = _journal(out)
    assert study.trials[killed.number].state == TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params == study.trials[killed.number].params
    assert len(_states(study, TrialState.COMPLETE)) == n and not _states(study, TrialState.RUNNING)


@pytest.mark.serial
def test_database_storage_fails_a_dead_workers_trial_by_heartbeat(tmp_path: Path, data_dir: Path) -> None:
    """A database study (here SQLite; PostgreSQL in test_tune_postgres.py) detects dead workers by
    their missing heartbeat and retries their trial."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg, out = _config(tmp_path, **SLOW, heartbeat_interval=1, grace_period=2), tmp_path / "tune"
    proc = _tune(cfg, data_dir, out, 100, "--storage", storage)
    killed = _running_trial(lambda: optuna.load_study(study_name="som", storage=storage), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = len(_states(optuna.load_study(study_name="som", storage=storage), TrialState.COMPLETE)) + 2
    result = runner.invoke(
        app,
        [
            "tune",
            "--config",
            str(cfg),
            "--input",
            str(data_dir),
            "--out",
            str(out),
            "--n-trials",
            str(n),
            "--storage",
            storage,
        ],
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="som", storage=storage)
    assert study.trials[killed.number].state == TrialState.FAIL
    assert any(t.system_attrs.get("failed_trial") == killed.number for t in _states(study, TrialState.COMPLETE))
    assert len(_states(study, TrialState.COMPLETE)) == n


def test_an_error_raised_while_ctrl_c_unwinds_counts_as_the_interrupt() -> None:
    """Ctrl-C can land inside the journal file's lock release, which then fails in turn: that
    failure still ends as the one-line interruption, and other errors stay errors."""
    from fmnist_cluster.tune import from_interrupt as _from_interrupt

    try:
        try:
            raise KeyboardInterrupt
        finally:
            raise FileNotFoundError("lock file gone")
    except FileNotFoundError as exc:
        assert _from_interrupt(exc)
    assert _from_interrupt(KeyboardInterrupt())
    assert not _from_interrupt(FileNotFoundError("lock file gone"))
