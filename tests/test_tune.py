"""Tuning: search-space validation, real trials, shared studies, restart, best.yaml round trip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from typer.testing import CliRunner

from fmnist_cluster.cli import app
from fmnist_cluster.config import SomConfig, TuneConfig, load_config
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.tune import apply_params, pareto_mask

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


def test_unknown_space_key_is_an_error(tmp_path: Path) -> None:
    cfg = load_config(TuneConfig, _config(tmp_path, space={"som.sigmaa": {"low": 1, "high": 2}}))
    from fmnist_cluster.tune import _check_space

    with pytest.raises(FmnistError, match=r"search space key 'som\.sigmaa'.*not a train-som config key"):
        _check_space(cfg)


def test_apply_params_lowers_sigma_end_and_pareto_mask() -> None:
    cfg = apply_params(SomConfig(), {"som.sigma": 0.4, "som.sigma_end": 2.0})
    assert (cfg.som.sigma, cfg.som.sigma_end) == (0.4, 0.4)
    values = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [1, 6]])
    assert pareto_mask(values).tolist() == [True, True, False, True, False]


def test_tune_trains_real_maps_and_best_yaml_round_trips(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "tune"
    result = runner.invoke(
        app,
        ["tune", "--config", str(_config(tmp_path)), "--input", str(data_dir), "--out", str(out), "--n-trials", "4"],
    )
    assert result.exit_code == 0, result.output
    for name in ("best.yaml", "trials.csv", "metrics.json", "history.png", "pareto.png", "study.db", "manifest.json"):
        assert (out / name).is_file(), name
    study = optuna.load_study(study_name="som", storage=f"sqlite:///{out / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({t.values[0] for t in complete}) > 1  # trained maps differ in quality
    best = load_config(SomConfig, out / "best.yaml")
    chosen = next(t for t in complete if SomConfig.model_validate(t.user_attrs["config"]) == best)
    assert best.som.sigma == pytest.approx(chosen.params["som.sigma"])
    train = runner.invoke(
        app, ["train-som", "--config", str(out / "best.yaml"), "--input", str(data_dir), "--out", str(tmp_path / "som")]
    )
    assert train.exit_code == 0, train.output


def test_scalar_objective_with_pruning(tmp_path: Path, data_dir: Path) -> None:
    cfg = _config(tmp_path, objective="scalar")
    out = tmp_path / "tune"
    result = runner.invoke(
        app, ["tune", "--config", str(cfg), "--input", str(data_dir), "--out", str(out), "--n-trials", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "tune" in result.output and (out / "best.yaml").is_file()


def _worker(cfg: Path, data: Path, out: Path, storage: str, n: int, seed: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "fmnist_cluster",
        "tune",
        "--config",
        str(cfg),
        "--input",
        str(data),
        "--out",
        str(out),
        "--storage",
        storage,
        "--n-trials",
        str(n),
        "--set",
        f"seed={seed}",
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_workers_share_one_study(tmp_path: Path, data_dir: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = _config(tmp_path)
    procs = [_worker(cfg, data_dir, tmp_path / f"w{i}", storage, 4, i) for i in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    study = optuna.load_study(study_name="som", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5  # a worker may finish one trial that was in flight at the limit
    assert len({t.number for t in complete}) == len(complete)


def test_killed_run_keeps_finished_trials(tmp_path: Path, data_dir: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'kill.db'}"
    cfg = _config(tmp_path)
    proc = _worker(cfg, data_dir, tmp_path / "k", storage, 500, 0)
    deadline = time.time() + 60
    done: list = []
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="som", storage=storage)
        except KeyError:
            continue
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(done) >= 2:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(done) >= 2
    before = {
        t.number: t.values
        for t in optuna.load_study(study_name="som", storage=storage).trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    target = len(before) + 2
    result = runner.invoke(
        app,
        [
            "tune",
            "--config",
            str(cfg),
            "--input",
            str(data_dir),
            "--out",
            str(tmp_path / "k"),
            "--storage",
            storage,
            "--n-trials",
            str(target),
        ],
    )
    assert result.exit_code == 0, result.output
    after = {
        t.number: t.values
        for t in optuna.load_study(study_name="som", storage=storage).trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert all(after[k] == v for k, v in before.items())
    assert len(after) == target
