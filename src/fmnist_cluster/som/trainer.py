"""The stage's trainer: runs an engine's ``iter_fit`` with what ``fit`` leaves out -- progress,
a checkpoint after every epoch of the batch map, resuming from it, and a per-epoch hook."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, array_digest, load_npz, loads_json, save_npz
from fmnist_cluster.errors import FmnistError, unexpected_structure
from fmnist_cluster.som.base import SomEstimator
from fmnist_cluster.som.batch import BatchSOM

CHECKPOINT = "checkpoint.npz"
# the settings a checkpoint must share with the run that resumes it
_SIGNATURE_KEYS = (
    "rows",
    "cols",
    "topology",
    "neighbourhood",
    "sigma",
    "sigma_end",
    "epochs",
    "schedule",
    "init",
    "search_dims",
    "exact_epochs",
    "exact_candidates",
)


def train(
    engine: SomEstimator,
    x: np.ndarray,
    *,
    progress: Progress = NULL_PROGRESS,
    checkpoint: Path | str | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> SomEstimator:
    """Fit ``engine`` on ``x`` (N, D) as ``engine.fit`` does, with the stage's extras.

    Parameters
    ----------
    engine : BatchSOM or MiniSomEngine
    x : ndarray (N, D)
    progress : Progress
        Gets the epochs (batch map) or updates (MiniSom) done, with the latest ``qe``, ``te``
        and ``sigma``.
    checkpoint : path, optional
        Batch map only: ``.npz`` written atomically after every epoch.
    resume : bool
        Continue from ``checkpoint`` if it exists (the result equals an uninterrupted run).
    on_epoch : callable, optional
        Called with each epoch's history entry (may raise to stop, e.g. to prune a trial).

    Returns
    -------
    engine
        Fitted.
    """
    if checkpoint is not None and not isinstance(engine, BatchSOM):
        raise ValueError("checkpoints work with the batch engine only (MiniSom has no per-epoch checkpoint)")
    start = None
    if checkpoint is not None:
        x = np.asarray(x, dtype=np.float32)
        signature = _signature(engine, x.shape[1])
        data_digest = array_digest(engine._check_x(x, fitted=False))
        if resume and Path(checkpoint).is_file():
            start = _load_checkpoint(Path(checkpoint), signature, x.shape[1], data_digest)
            _check_resumable(Path(checkpoint), *start, engine)
    steps = engine.iter_fit(x) if start is None else engine.iter_fit(x, resume_from=start)
    history = list(start[1]) if start is not None else []
    name = "batch SOM" if isinstance(engine, BatchSOM) else "MiniSom"
    task, done, fields = None, 0, {}
    for step in steps:
        if task is None:
            task = progress.task(f"{name} {engine.rows}x{engine.cols}", total=step.total)
        if step.entry is not None:
            fields = {k: step.entry[k] for k in ("qe", "te", "sigma") if k in step.entry}
        if step.done > done:
            task.advance(step.done - done, **fields)
            done = step.done
        if step.entry is None:
            continue
        history.append(step.entry)
        if checkpoint is not None:
            save_npz(
                checkpoint,
                weights=step.weights,
                epoch=np.array(len(history)),
                history=np.array(json.dumps(history)),
                signature=np.array(signature),
                data=np.array(data_digest),
            )
        if on_epoch is not None:
            on_epoch(step.entry)
    if task is not None:
        task.close()
    return engine


def _signature(engine: SomEstimator, n_features: int) -> str:
    return json.dumps({k: getattr(engine, k) for k in _SIGNATURE_KEYS} | {"n_features": n_features}, sort_keys=True)


def _check_resumable(path: Path, weights: np.ndarray, history: list[Any], engine: SomEstimator) -> None:
    """A checkpoint in ``--out`` is not covered by a manifest: what it holds must be a state
    :func:`train` could have written for this map."""
    n_neurons, epochs = int(engine.rows) * int(engine.cols), int(np.ceil(float(engine.epochs)))
    if weights.shape[0] != n_neurons or not np.isfinite(weights).all() or np.abs(weights).max(initial=0) > 1e6:
        raise FmnistError(
            f"checkpoint {path} is damaged (its weights are not a {n_neurons}-neuron map of finite, plausible "
            "values); drop --resume to start afresh"
        )
    if len(history) > epochs or not all(isinstance(h, dict) and "epoch" in h for h in history):
        raise FmnistError(
            f"checkpoint {path} is damaged (its history is not that of up to {epochs} epochs of this map); "
            "drop --resume to start afresh"
        )


def _load_checkpoint(
    path: Path, signature: str, width: int, data_digest: str
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Weights and history of a checkpoint written by :func:`train` with the same settings and data."""
    with unexpected_structure(f"checkpoint {path}", "drop --resume to start afresh"):
        return _read_checkpoint(path, signature, width, data_digest)


def _read_checkpoint(
    path: Path, signature: str, width: int, data_digest: str
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    arrays = load_npz(path, ("weights", "epoch", "history", "signature"), "train-som without --resume")
    weights = arrays["weights"]
    if weights.ndim != 2:
        raise FmnistError(f"checkpoint {path} is damaged (its weights are not a table); drop --resume to start afresh")
    if weights.shape[1] != width:
        raise FmnistError(
            f"checkpoint {path} holds a map for {weights.shape[1]}-wide features but the input has {width} "
            f"columns; pass the --input it was trained on, or drop --resume to start afresh"
        )
    stored = str(arrays["signature"].reshape(-1)[0])
    if stored != signature:
        raise FmnistError(
            f"checkpoint {path} was written with other map settings ({stored}); "
            f"use the same config, or drop --resume to start afresh"
        )
    stored_data = str(arrays["data"].reshape(-1)[0]) if "data" in arrays else None
    if stored_data != data_digest:
        raise FmnistError(
            f"checkpoint {path} was trained on other data (the training rows differ); "
            f"resume with the same --input and settings, or drop --resume to start afresh"
        )
    try:
        history = loads_json(str(arrays["history"].reshape(-1)[0]))
    except ValueError:
        history = None
    if not isinstance(history, list) or int(arrays["epoch"].reshape(-1)[0]) != len(history):
        raise FmnistError(
            f"checkpoint {path} is inconsistent (its epoch count and history differ); drop --resume to start afresh"
        )
    return weights.astype(np.float32), history
