"""One study of ``tune``: opening it in its storage, the held-out rows, and the loop that
trains and scores one map per trial."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.config import TuneConfig
from fmnist_cluster.errors import FmnistError, user_errors
from fmnist_cluster.som import best_units, epoch_metrics, flatten, make_engine, train
from fmnist_cluster.study import (
    WORKER_ATTR,
    OverBudget,
    StudyStorage,
    check_budget,
    fail_dead_trials,
    first_line,
    open_storage,
    run_budget,
    set_up_with_retries,
    worker_slot,
)
from fmnist_cluster.tune.space import apply_params, suggest


def _split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(holdout * n))
    if n - n_val < 2:
        raise FmnistError(f"only {n} training rows: too few to hold out {holdout:.0%} for scoring; use more data")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _sampler(config: TuneConfig) -> Any:
    from fmnist_cluster.tune.sampler import tpe_sampler

    return tpe_sampler(config.seed, n_startup_trials=min(10, config.n_trials))


FAILURES_IN_A_ROW = 5
"""A worker stops, with the last trial's error, after this many failed trials in a row."""

IDENTITY_ATTR = "fmnist_cluster_trials"
"""The study attribute that records what its trials measure (:func:`study_identity`)."""
_IDENTITY_KEYS = ("holdout", "seed", "space", "objective", "te_weight")
# base settings that change no trial's score: figures, memory, device, and the train-som rows tune never reads
_NOT_MEASURED = ("analysis", "train.chunk_size", "train.device", "train.limit", "train.pool")


def study_identity(config: TuneConfig, digest: str, n_rows: int) -> dict[str, Any]:
    """What the trials of a study measure, so that a study is only continued on the same terms:
    the input (its ``data.npz`` sha256), the ``n_rows`` rows drawn from it (``limit``: ``seed``
    draws the same rows of the same input for the same count) and their held-out split
    (``holdout``, ``seed``), the base map (not its figures, memory or device), the search
    space and the score."""
    settings = config.model_dump(mode="json")
    base = settings["base"]
    for dotted in _NOT_MEASURED:
        section, _, key = dotted.partition(".")
        if key:
            base[section].pop(key, None)
        else:
            base.pop(section, None)
    return {"data": digest, "rows": n_rows, "base": base, **{key: settings[key] for key in _IDENTITY_KEYS}}


def _check_identity(study: Any, identity: dict[str, Any], config: TuneConfig, store: StudyStorage) -> None:
    """Record ``identity`` in a new study; refuse a study whose trials measure something else."""
    stored = study.user_attrs.get(IDENTITY_ATTR)
    where = f"study '{config.study_name}' in {store.shown}"
    fix = "use another --out, --set study_name or --storage to start a new study"
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise FmnistError(f"{where} holds trials that tune did not record the terms of; {fix}")
        study.set_user_attr(IDENTITY_ATTR, identity)
        return
    same = json.loads(json.dumps(identity))
    if stored != same:
        differ = sorted(k for k in same if not isinstance(stored, dict) or stored.get(k) != same[k])
        said = {"data": "--input data", "rows": "limit"}
        shown = ", ".join(said.get(k, k) for k in differ)
        raise FmnistError(
            f"{where} was run with another {shown or 'setup'}, so its trials do not compare with this run's; "
            f"continue it with the same --input and config, or {fix}"
        )


def _create_or_load(config: TuneConfig, store: StudyStorage, identity: dict[str, Any]) -> Any:
    import optuna

    kwargs: dict[str, Any] = {
        "study_name": config.study_name,
        "storage": store.storage,
        "load_if_exists": True,
        "sampler": _sampler(config),
    }
    if config.objective == "pareto":
        kwargs["directions"] = ["minimize", "minimize"]
    else:
        kwargs["direction"] = "minimize"
        kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    loading = {k: v for k, v in kwargs.items() if k in ("study_name", "storage", "sampler", "pruner")}

    def load_or_create() -> Any:
        try:  # an existing study is loaded, so that a refused run writes nothing into its storage
            return optuna.load_study(**loading)
        except KeyError:
            return optuna.create_study(**kwargs)

    try:  # on a database, workers creating one new study at once can race: the loser tries again
        study = set_up_with_retries(load_or_create, store.shown, Exception, 6 if store.is_rdb else 1, 0.5, 0.5)
    except ValueError as exc:  # a record Optuna cannot read (other objectives are caught below)
        raise FmnistError(
            f"the study '{config.study_name}' in {store.shown} is damaged ({type(exc).__name__}: {first_line(exc)}); "
            f"remove it to start afresh, or use another --set study_name, --out or --storage"
        ) from None
    want = 2 if config.objective == "pareto" else 1
    if len(study.directions) != want:
        raise FmnistError(
            f"study '{config.study_name}' in {store.shown} has {len(study.directions)} objective(s) but objective "
            f"'{config.objective}' needs {want}; use another --set study_name or storage"
        )
    _check_identity(study, identity, config, store)
    return study


def open_study(config: TuneConfig, out_dir: Path, digest: str, n_rows: int) -> tuple[StudyStorage, Any]:
    """The storage and the study of ``config`` (created, or continued when it was run on the same
    terms: :func:`study_identity` of ``config``, the input's sha256 ``digest`` and its
    ``n_rows`` rows it uses)."""
    store = open_storage(config.storage, out_dir, config.heartbeat_interval, config.grace_period, config.max_retry)
    return store, _create_or_load(config, store, study_identity(config, digest, n_rows))


def finished_trials(study: Any) -> list[Any]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def held_out_rows(config: TuneConfig, input_dir: Path | str) -> tuple[np.ndarray, np.ndarray, str]:
    """The training rows a trial fits and the held-out rows it is scored on, and the input's digest."""
    from fmnist_cluster.data import load_dataset

    dataset, digest = load_dataset(input_dir, "fmnist-cluster preprocess (or encode)")
    x = flatten(dataset.x_train)
    if len(x) == 0:
        raise FmnistError(
            f"{Path(input_dir) / 'data.npz'} has no training samples; run preprocess on a non-empty source"
        )
    rng = np.random.default_rng(config.seed)
    if config.limit is not None and config.limit < len(x):
        x = x[np.sort(rng.choice(len(x), config.limit, replace=False))]
    fit_idx, val_idx = _split(len(x), config.holdout, config.seed)
    return x[fit_idx], x[val_idx], digest


def work(
    config: TuneConfig,
    out_dir: Path,
    x_fit: np.ndarray,
    x_val: np.ndarray,
    digest: str,
    opened: tuple[StudyStorage, Any] | None = None,
    on_done: Any = None,
    stop: Any = lambda: False,
) -> None:
    """One worker: hold a slot, run trials until the budget is met (each trial's parameters
    drawn with a random state of its own, :mod:`fmnist_cluster.tune.sampler`)."""
    store, study = opened or open_study(config, out_dir, digest, len(x_fit) + len(x_val))
    with worker_slot(out_dir) as slot:

        def reap() -> None:
            fail_dead_trials(study, store, out_dir, config.max_retry)

        reap()

        failed: list[str] = []  # the errors of this worker's trials since its last finished one

        def objective(trial: Any) -> Any:
            trial.set_user_attr(WORKER_ATTR, slot.info())
            check_budget(study, trial.number, config.n_trials)
            try:
                value = _trial(config, trial, x_fit, x_val)
            except FmnistError as exc:
                trial.set_user_attr("error", str(exc))
                failed.append(str(exc))
                raise
            failed.clear()
            return value

        def run_one() -> None:
            study.optimize(
                objective, n_trials=1, catch=(FmnistError, OverBudget), callbacks=[on_done] if on_done else None
            )

        deadline = None if config.timeout is None else time.monotonic() + config.timeout
        run_budget(study, run_one, reap, config.n_trials, deadline, lambda: stop() or len(failed) >= FAILURES_IN_A_ROW)
        if len(failed) >= FAILURES_IN_A_ROW:  # a setting that fails every trial: stop, do not fill the study
            raise FmnistError(
                f"{len(failed)} trials in a row failed, the last with: {failed[-1]}; "
                "fix the base map or the search space"
            )


def _trial(config: TuneConfig, trial: Any, x_fit: np.ndarray, x_val: np.ndarray) -> Any:
    """Train and score the map of one trial's sampled parameters."""
    import optuna

    params = {key: suggest(trial, key, param) for key, param in config.space.items()}
    som_cfg = apply_params(config.base, params)
    trial.set_user_attr("config", som_cfg.model_dump(mode="json"))
    engine = make_engine(som_cfg)

    def report(entry: dict[str, float]) -> None:
        if config.objective == "scalar":
            trial.report(entry["qe"], int(entry["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

    start = time.perf_counter()
    with user_errors("train-som config"):
        train(engine, x_fit, on_epoch=report)
    bmu, bmu2, dist = best_units(engine.weights_, x_val, som_cfg.train.chunk_size)
    m = epoch_metrics(engine.grid_, bmu, bmu2, dist)
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
    trial.set_user_attr("train_qe", engine.history_[-1]["qe"])
    if config.objective == "pareto":
        return m["qe"], m["te"]
    trial.set_user_attr("qe", m["qe"])
    trial.set_user_attr("te", m["te"])
    return m["qe"] + config.te_weight * m["te"]
