"""The ``tune`` stage: Bayesian optimisation of ``train-som`` settings with Optuna's TPE sampler.

Every trial builds the ``train-som`` config of its sampled parameters, trains that map for
real on the training rows and scores it on held-out rows (a seeded share of the training
split; the test split is never used for tuning). Two objectives matter:

* ``pareto`` (default): minimise held-out quantisation error (QE) and topographic error
  (TE) together with multi-objective TPE; the result is the Pareto front. The trial written
  to ``best.yaml`` is the front's trial with the smallest ``qe + te_weight * te``.
* ``scalar``: minimise ``qe + te_weight * te`` directly; the per-epoch training QE is
  reported to Optuna so a median pruner stops hopeless trials early.

When a trial samples ``som.sigma`` below ``som.sigma_end``, ``sigma_end`` is lowered to
``sigma`` (a batch map's width must shrink or stay). The study lives in an Optuna storage
(:mod:`fmnist_cluster.study`): by default the journal file ``study.journal`` in the output
folder, or a database URL. ``workers`` processes on this host, more processes started with the
same output folder, or workers on other machines sharing a database, all run one study: each
worker samples with its own seed, ``n_trials`` counts the finished trials of the whole study,
the trial of a killed worker is failed and queued again, and a run started again keeps every
finished trial and only runs the missing ones.
"""

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

import numpy as np
from pydantic import ValidationError

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun, keep_freed_memory
from fmnist_cluster.config import SearchParam, SomConfig, TuneConfig, config_to_yaml, set_dotted
from fmnist_cluster.errors import FmnistError, Interrupted, user_errors
from fmnist_cluster.som import best_units, epoch_metrics, flatten, make_engine, train
from fmnist_cluster.study import (
    WORKER_ATTR,
    OverBudget,
    StudyStorage,
    check_budget,
    fail_dead_trials,
    open_storage,
    run_budget,
    worker_seed,
    worker_slot,
)

OBJECTIVES = ("qe", "te")
NAMES = ("held-out QE", "held-out TE")


def _check_space(config: TuneConfig) -> None:
    """Every search-space key must be a ``train-som`` key that accepts its range."""
    if not config.space:
        raise FmnistError("the search space is empty; add keys such as som.sigma: {low: 1, high: 10} under 'space'")
    for key, param in config.space.items():
        probes = param.choices if param.choices is not None else [param.low, param.high]
        for value in probes:
            if param.integer and param.choices is None:
                value = int(value)
            try:
                apply_params(config.base, {key: value}, clamp=False)
            except FmnistError as exc:
                raise FmnistError(f"search space key '{key}' with value {value!r}: {exc}") from None


def apply_params(base: SomConfig, params: dict[str, Any], clamp: bool = True) -> SomConfig:
    """``base`` with dotted ``params`` replaced (and ``sigma_end`` lowered to ``sigma`` if needed)."""
    tree = base.model_dump(mode="json")
    for key, value in params.items():
        node: Any = tree
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise FmnistError(f"'{key}' is not a train-som config key")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise FmnistError(f"'{key}' is not a train-som config key")
        set_dotted(tree, key, value)
    som = tree["som"]
    if clamp and som.get("sigma") is not None and som["sigma"] < som["sigma_end"]:
        som["sigma_end"] = som["sigma"]
    try:
        return SomConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FmnistError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _suggest(trial: Any, key: str, param: SearchParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    if param.integer:
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(key, float(param.low), float(param.high), log=param.log)


def _split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(holdout * n))
    if n - n_val < 2:
        raise FmnistError(f"only {n} training rows: too few to hold out {holdout:.0%} for scoring; use more data")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _sampler(config: TuneConfig, seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=min(10, config.n_trials)
    )


def _create_with_retry(optuna: Any, kwargs: dict[str, Any], retry: bool) -> Any:
    for attempt in range(6):
        try:
            return optuna.create_study(**kwargs)
        except ValueError:
            raise
        except Exception:  # workers creating one new database at once can race; try again
            if attempt == 5 or not retry:
                raise
            time.sleep(0.5 + 0.5 * attempt)
    raise AssertionError("unreachable")


def _open_study(config: TuneConfig, store: StudyStorage) -> Any:
    import optuna

    kwargs: dict[str, Any] = {
        "study_name": config.study_name,
        "storage": store.storage,
        "load_if_exists": True,
        "sampler": _sampler(config, config.seed),
    }
    if config.objective == "pareto":
        kwargs["directions"] = ["minimize", "minimize"]
    else:
        kwargs["direction"] = "minimize"
        kwargs["pruner"] = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    try:
        study = _create_with_retry(optuna, kwargs, retry=store.is_rdb)
    except ValueError as exc:
        raise FmnistError(
            f"study '{config.study_name}' in {store.shown} was made with other objectives ({exc}); "
            f"use another --set study_name or storage"
        ) from None
    except Exception as exc:  # storage URLs fail with many driver-specific types
        raise FmnistError(
            f"cannot open Optuna storage {store.shown} ({type(exc).__name__}: {exc}); check --storage"
        ) from None
    want = 2 if config.objective == "pareto" else 1
    if len(study.directions) != want:
        raise FmnistError(
            f"study '{config.study_name}' in {store.shown} has {len(study.directions)} objective(s) but objective "
            f"'{config.objective}' needs {want}; use another --set study_name or storage"
        )
    return study


def _open(config: TuneConfig, out_dir: Path) -> tuple[StudyStorage, Any]:
    store = open_storage(config.storage, out_dir, config.heartbeat_interval, config.grace_period, config.max_retry)
    return store, _open_study(config, store)


def _finished(study: Any) -> list[Any]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def _rows(config: TuneConfig, input_dir: Path | str) -> tuple[np.ndarray, np.ndarray, str]:
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


def _work(
    config: TuneConfig,
    out_dir: Path,
    x_fit: np.ndarray,
    x_val: np.ndarray,
    opened: tuple[StudyStorage, Any] | None = None,
    on_done: Any = None,
    stop: Any = lambda: False,
) -> None:
    """One worker: hold a slot, seed the sampler for it, run trials until the budget is met."""
    store, study = opened or _open(config, out_dir)
    with worker_slot(out_dir) as slot:

        def reap() -> None:
            fail_dead_trials(study, store, out_dir, config.max_retry)

        reap()
        n_existing = len(study.get_trials(deepcopy=False))
        host = f"{slot.host}/{slot.pid}" if store.is_rdb else None  # database workers share no slot folder
        study.sampler = _sampler(config, worker_seed(config.seed, slot.slot, n_existing, host))

        def objective(trial: Any) -> Any:
            trial.set_user_attr(WORKER_ATTR, slot.info())
            check_budget(study, trial.number, config.n_trials)
            try:
                return _trial(config, trial, x_fit, x_val)
            except FmnistError as exc:
                trial.set_user_attr("error", str(exc))
                raise

        def run_one() -> None:
            study.optimize(
                objective, n_trials=1, catch=(FmnistError, OverBudget), callbacks=[on_done] if on_done else None
            )

        deadline = None if config.timeout is None else time.monotonic() + config.timeout
        run_budget(study, run_one, reap, config.n_trials, deadline, stop)


def _trial(config: TuneConfig, trial: Any, x_fit: np.ndarray, x_val: np.ndarray) -> Any:
    """Train and score the map of one trial's sampled parameters."""
    import optuna

    params = {key: _suggest(trial, key, param) for key, param in config.space.items()}
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


def _from_interrupt(exc: BaseException) -> bool:
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
    try:
        import optuna
        import torch

        torch.set_num_threads(threads)
        keep_freed_memory()  # a fresh process: the allocator setting the CLI makes for its own
        optuna.logging.set_verbosity(logging.ERROR)
        config = TuneConfig.model_validate(config_json)
        x_fit, x_val, _ = _rows(config, input_dir)
        parent = os.getppid()
        _work(config, Path(out_dir), x_fit, x_val, stop=lambda: stop.is_set() or os.getppid() != parent)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if _from_interrupt(exc):
            sys.exit(130)
        if not isinstance(exc, FmnistError):
            raise
        errors.put(str(exc))
        sys.exit(2)


def _run_workers(config: TuneConfig, input_dir: Path | str, out_dir: Path, study: Any, advance: Any) -> None:
    """Start ``config.workers`` worker processes and follow the study until they end."""
    import multiprocessing
    import threading

    ctx = multiprocessing.get_context("spawn")
    stop, errors = ctx.Event(), ctx.SimpleQueue()
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    args = (config.model_dump(mode="json"), str(input_dir), str(out_dir), threads, stop, errors)
    procs = [ctx.Process(target=_worker_main, args=args, name=f"tune-worker-{i}") for i in range(config.workers)]
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # inherited until a worker is ready
    try:
        for p in procs:
            p.start()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
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


def run_tune(
    config: TuneConfig, input_dir: Path | str, out_dir: Path | str, progress: Progress = NULL_PROGRESS
) -> dict[str, Any]:
    """The ``tune`` stage.

    Parameters
    ----------
    config : TuneConfig
    input_dir : path
        A ``preprocess`` or ``encode`` output folder.
    out_dir : path
        Gets ``best.yaml`` (a ``train-som`` config), ``trials.csv``, ``metrics.json``,
        figures and ``manifest.json``; by default also the study journal ``study.journal``.
    progress : Progress

    Returns
    -------
    dict
        The summary written to ``metrics.json``.

    Raises
    ------
    Interrupted
        On SIGINT (Ctrl-C): every worker stops, the trials they were running are failed and
        the finished ones stay in the study for the next run.
    """
    import optuna

    from fmnist_cluster import plots

    _check_space(config)
    out_dir = Path(out_dir)
    x_fit, x_val, digest = _rows(config, input_dir)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmnistError(f"cannot create output folder {out_dir} ({exc.strerror}); pass a writable --out") from None
    optuna.logging.set_verbosity(logging.ERROR)
    try:
        store, study = _open(config, out_dir)
    except FmnistError:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed run leaves no new empty --out
        raise
    finished = {t.number for t in _finished(study)}
    task = progress.task("tune (TPE trials)", total=max(config.n_trials - len(finished), 0))

    def advance() -> None:
        for trial in _finished(study):
            if trial.number in finished:
                continue
            finished.add(trial.number)
            if trial.state == optuna.trial.TrialState.COMPLETE:
                qe, te = _qe_te(trial, config)
                task.advance(1, trial=trial.number, qe=qe, te=te)
            else:
                task.advance(1, trial=trial.number, state=trial.state.name.lower())

    start = time.perf_counter()
    try:
        if config.workers == 1:
            _work(config, out_dir, x_fit, x_val, (store, study), on_done=lambda study, trial: advance())
        else:
            _run_workers(config, input_dir, out_dir, study, advance)
    except (KeyboardInterrupt, Exception) as exc:
        if not _from_interrupt(exc):
            raise
        raise Interrupted(
            f"interrupted: {len(_finished(study))} of {config.n_trials} trials are finished and kept in "
            f"{store.shown}; run the same command again to continue"
        ) from None
    task.close()
    return _write_results(config, study, store.shown, input_dir, digest, out_dir, plots, time.perf_counter() - start)


def _qe_te(trial: Any, config: TuneConfig) -> tuple[float, float]:
    if config.objective == "pareto":
        return float(trial.values[0]), float(trial.values[1])
    return float(trial.user_attrs["qe"]), float(trial.user_attrs["te"])


def qe_te_study(study: Any, config: TuneConfig, complete: list[Any]) -> Any:
    """The study whose two objectives are held-out QE and TE, so that ``best_trials`` is their
    Pareto front: the study itself for objective ``pareto``; for ``scalar``, an in-memory copy
    of its ``complete`` trials, in the same order, with their QE and TE as values."""
    import optuna

    if config.objective == "pareto":
        return study
    copy = optuna.create_study(directions=["minimize", "minimize"], study_name=config.study_name)
    copy.add_trials(
        [
            optuna.trial.create_trial(params=t.params, distributions=t.distributions, values=list(_qe_te(t, config)))
            for t in complete
        ]
    )
    return copy


def _write_results(
    config: TuneConfig,
    study: Any,
    url: str,
    input_dir: Path | str,
    digest: str,
    out_dir: Path,
    plots: Any,
    seconds: float,
) -> dict[str, Any]:
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if not complete:
        raise FmnistError(f"study '{config.study_name}' in {url} has no finished trial; raise n_trials or timeout")
    qe_te = np.array([_qe_te(t, config) for t in complete])
    score = qe_te[:, 0] + config.te_weight * qe_te[:, 1]
    objectives = qe_te_study(study, config, complete)
    on_front = {t.number for t in objectives.best_trials}  # numbers in objectives: the copy's are 0, 1, ...
    front = np.array([(t.number if objectives is study else i) in on_front for i, t in enumerate(complete)])
    candidates = np.nonzero(front)[0] if config.objective == "pareto" else np.arange(len(complete))
    best = int(candidates[np.argmin(score[candidates])])
    best_trial = complete[best]
    best_cfg = SomConfig.model_validate(best_trial.user_attrs["config"])
    keys = list(config.space)
    lines = ["trial,state,qe,te,score,seconds," + ",".join(keys)]
    for t in trials:
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        qe, te = _qe_te(t, config) if t.state == optuna.trial.TrialState.COMPLETE else (float("nan"), float("nan"))
        vals = ",".join(str(t.params.get(k, "")) for k in keys)
        lines.append(
            f"{t.number},{t.state.name.lower()},{qe:.6g},{te:.6g},{qe + config.te_weight * te:.6g},"
            f"{t.user_attrs.get('seconds', '')},{vals}"
        )
    summary = {
        "objective": config.objective,
        "storage": url,
        "study_name": config.study_name,
        "n_complete": len(complete),
        "n_pruned": len(pruned),
        "n_failed": len(failed),
        "n_trials_total": len(trials),
        "best_trial": best_trial.number,
        "best_qe": float(qe_te[best, 0]),
        "best_te": float(qe_te[best, 1]),
        "best_score": float(score[best]),
        "best_params": best_trial.params,
        "pareto_trials": [complete[i].number for i in np.nonzero(front)[0]],
        "seconds_this_run": round(seconds, 3),
    }
    importances: dict[str, dict[str, float]] = {}
    if len(complete) >= 3:
        for j, name in enumerate(OBJECTIVES):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    importances[name] = optuna.importance.get_param_importances(
                        study,
                        evaluator=optuna.importance.FanovaImportanceEvaluator(seed=config.seed),
                        target=lambda t, j=j: _qe_te(t, config)[j],
                    )
            except (RuntimeError, ValueError, ZeroDivisionError):
                continue
    summary["importances"] = importances
    with StageRun("tune", out_dir, config.model_dump(mode="json"), seed=config.seed) as run:
        run.add_input(Path(input_dir) / "data.npz", digest)
        run.save_text("best.yaml", config_to_yaml(best_cfg))
        run.save_text("trials.csv", "\n".join(lines) + "\n")
        run.save_json("metrics.json", summary)
        for j, (name, shown) in enumerate(zip(OBJECTIVES, NAMES, strict=True)):
            fig = plots.tune_history(
                study, lambda t, j=j: _qe_te(t, config)[j], shown, f"Optimisation history: {shown}"
            )
            run.save_bytes(f"history-{name}.png", plots.figure_png(fig))
        run.save_bytes("pareto.png", plots.figure_png(plots.tune_pareto(objectives, NAMES, qe_te[best])))
        if importances:
            run.save_bytes("importances.png", plots.figure_png(plots.tune_importances(importances)))
        run.commit()
    return summary
