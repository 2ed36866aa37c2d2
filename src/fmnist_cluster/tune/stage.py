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
trial samples with a seed of its own (:mod:`fmnist_cluster.tune.sampler`), ``n_trials``
counts the finished trials of the whole study, the trial of a killed worker is failed and
queued again, and a run started again keeps every finished trial and only runs the missing
ones.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress
from fmnist_cluster.config import TuneConfig
from fmnist_cluster.errors import FmnistError, Interrupted
from fmnist_cluster.study import sqlite_file
from fmnist_cluster.tune.results import trial_qe_te, write_results
from fmnist_cluster.tune.space import check_space
from fmnist_cluster.tune.trials import finished_trials, held_out_rows, open_study, work
from fmnist_cluster.tune.workers import from_interrupt, run_workers


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
        The summary written to ``metrics.json``, with the run's ``storage`` (where the study
        lives) and ``seconds_this_run``; those two are recorded in the manifest, since they
        change from run to run.

    Raises
    ------
    Interrupted
        On SIGINT (Ctrl-C): every worker stops, the trials they were running are failed and
        the finished ones stay in the study for the next run.
    """
    import optuna

    check_space(config)
    out_dir = Path(out_dir)
    database = sqlite_file(config.storage)
    if database is not None and database.resolve().is_relative_to(Path(input_dir).resolve()):
        raise FmnistError(
            f"--storage {config.storage} puts the study's database inside the --input folder {input_dir}, "
            f"which belongs to another artefact; put the database elsewhere"
        )
    x_fit, x_val, digest = held_out_rows(config, input_dir)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmnistError(f"cannot create output folder {out_dir} ({exc.strerror}); pass a writable --out") from None
    optuna.logging.set_verbosity(logging.ERROR)
    kept: list[Any] = []  # the study, once open: its finished trials are never thrown away
    try:
        return _study(config, input_dir, out_dir, x_fit, x_val, digest, progress, kept)
    except Exception as exc:  # any failure, ours or a library's
        if created and not isinstance(exc, Interrupted) and not _has_finished_trials(kept):
            shutil.rmtree(out_dir, ignore_errors=True)  # a failed first run leaves no --out (nor its journal)
        raise


def _has_finished_trials(kept: list[Any]) -> bool:
    """Whether the study opened by this run (if any) holds a finished trial (True when it cannot
    be read: keep what is there)."""
    if not kept:
        return False
    try:
        return bool(finished_trials(kept[0]))
    except Exception:
        return True


def _study(
    config: TuneConfig,
    input_dir: Path | str,
    out_dir: Path,
    x_fit: np.ndarray,
    x_val: np.ndarray,
    digest: str,
    progress: Progress,
    kept: list[Any],
) -> dict[str, Any]:
    """Open the study (appended to ``kept``), run the trials it still needs, write the results."""
    import optuna

    from fmnist_cluster import plots

    store, study = open_study(config, out_dir, digest, len(x_fit) + len(x_val))
    kept.append(study)
    finished = {t.number for t in finished_trials(study)}
    finished_before = len(finished)
    task = progress.task("tune (TPE trials)", total=max(config.n_trials - len(finished), 0))

    def advance() -> None:
        for trial in finished_trials(study):
            if trial.number in finished:
                continue
            finished.add(trial.number)
            if trial.state == optuna.trial.TrialState.COMPLETE:
                qe, te = trial_qe_te(trial, config)
                task.advance(1, trial=trial.number, qe=qe, te=te)
            else:
                task.advance(1, trial=trial.number, state=trial.state.name.lower())

    start = time.perf_counter()
    try:
        if config.workers == 1:
            work(config, out_dir, x_fit, x_val, digest, (store, study), on_done=lambda study, trial: advance())
        else:
            run_workers(config, input_dir, out_dir, study, advance)
    except (KeyboardInterrupt, Exception) as exc:
        if not from_interrupt(exc):
            raise
        raise Interrupted(
            f"interrupted: {len(finished_trials(study))} of {config.n_trials} trials are finished and kept in "
            f"{store.shown}; run the same command again to continue"
        ) from None
    task.close()
    return write_results(config, study, store.shown, input_dir, digest, out_dir, plots, start, finished_before)
