"""The ``train-cnn`` stage: train the configured network on a ``preprocess`` artefact and write
``model.pt``, ``metrics.json``, ``predictions.npz``, the figures and the manifest."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun
from fmnist_cluster.cnn.checkpoint import MODEL_FILE, STATE_FILE, checkpoint_bytes
from fmnist_cluster.cnn.estimator import predict_views
from fmnist_cluster.cnn.network import Network, n_parameters
from fmnist_cluster.cnn.training import RUN_KEYS, Trainer
from fmnist_cluster.config import CnnConfig
from fmnist_cluster.data import DATA_FILE, Dataset, label_names, load_dataset
from fmnist_cluster.device import resolve_device, torch_threads
from fmnist_cluster.errors import FmnistError, FmnistWarning, user_errors

_MONTAGE_MAX = 40


class CnnWarning(FmnistWarning):
    """A training result the user should look at (shown in yellow by the CLI)."""


def _check_training_data(dataset: Dataset, where: Path) -> None:
    if not dataset.is_image:
        raise FmnistError(
            f"{where} holds features shaped {dataset.x_train.shape}, not images; train-cnn needs the output "
            "folder of `fmnist-cluster preprocess`"
        )
    for split, y in (("train", dataset.y_train), ("test", dataset.y_test)):
        if y is None:
            raise FmnistError(
                f"{where} has no {split} labels; train-cnn needs labelled images (preprocess a source with labels)"
            )
    if dataset.n_classes < 2:
        raise FmnistError(f"{where} has only one label; train-cnn needs at least 2 labels")


def run_train_cnn(
    config: CnnConfig,
    data_dir: Path | str,
    out_dir: Path | str,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
) -> dict[str, Any]:
    """The ``train-cnn`` stage: train the configured network on a ``preprocess`` artefact.

    Writes ``model.pt``, ``metrics.json``, ``predictions.npz`` (test labels, predictions and
    probabilities), ``learning_curves.png``, ``confusion_matrix.png``, ``misclassified.png``
    and ``manifest.json`` into ``out_dir``. While training, ``train-state.pt`` holds the
    state after the last finished epoch; a killed run continues from it with ``resume``.

    Parameters
    ----------
    config : CnnConfig
        Validated stage config.
    data_dir : path
        Output folder of ``preprocess`` (labelled images).
    out_dir : path
        Output folder.
    progress : Progress
        Progress reporter.
    resume : bool
        Continue an interrupted run from ``out_dir/train-state.pt``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``, and the run's ``train_seconds``,
        ``train_images_per_s`` and ``inference_images_per_s`` (in the manifest's ``timings``:
        a run's durations are not part of its outputs).
    """
    from fmnist_cluster import plots

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    dataset, digest = load_dataset(data_dir)
    _check_training_data(dataset, data_dir / DATA_FILE)
    k = dataset.n_classes
    names = label_names(k, dataset.class_names)
    state_path = out_dir / STATE_FILE
    with user_errors("device"):
        resolve_device(config.device)
    with user_errors("architecture"):
        Network(config.architecture, k)  # a layer that does not fit fails here, before any output
    with StageRun("train-cnn", out_dir, config.model_dump(mode="json"), seed=config.seed) as run:
        run.add_input(data_dir / DATA_FILE, digest)
        trainer = Trainer(progress=progress, state_path=state_path, resume=resume)
        with run.timer("train"), user_errors("train"):
            trained = trainer.train(
                dataset.x_train,
                dataset.y_train,
                n_classes=k,
                architecture=config.architecture,
                train=config.train,
                augment=config.augment,
                device=config.device,
                threads=config.threads,
                seed=config.seed,
            )
        net = trained.network
        with run.timer("test"):
            tick = time.perf_counter()
            with torch_threads(config.threads):
                views = (config.train.eval_batch_size, config.device, config.augment.test_flip)
                single, proba = predict_views(net, dataset.x_test, *views)
            infer_seconds = time.perf_counter() - tick
        y_test = dataset.y_test
        y_pred = proba.argmax(1).astype(np.int64)
        metrics = _test_metrics(y_test, y_pred, proba, names)
        metrics.update(
            {
                "n_classes": k,
                "class_names": list(dataset.class_names) if dataset.class_names is not None else None,
                "n_train": trained.n_train,
                "n_val": trained.n_val,
                "n_parameters": n_parameters(net),
                "epochs_run": len(trained.history),
                "best_epoch": trained.best_epoch,
                "resumed_from_epoch": trained.resumed_from,
                "best_val_accuracy": _best_val(trained.history, trained.best_epoch),
                "test_flip": bool(config.augment.test_flip),
                "test_accuracy_single_view": float(np.mean(single.argmax(1) == y_test)) if len(y_test) else None,
                "device": str(resolve_device(config.device)),
                "precision": trained.precision,
                "threads": torch.get_num_threads() if config.threads is None else config.threads,
                "history": [{k: v for k, v in h.items() if k not in RUN_KEYS} for h in trained.history],
            }
        )
        speeds = {
            "train_seconds": round(sum(h["seconds"] for h in trained.history), 3),
            "train_images_per_s": round(float(trained.train_images_per_s), 1),
            "inference_images_per_s": round(len(y_test) / infer_seconds, 1) if infer_seconds > 0 else None,
        }
        if metrics["test_accuracy"] < 1.0 / k + 0.05:
            warnings.warn(
                f"test accuracy {metrics['test_accuracy']:.3f} is near chance (1/K = {1 / k:.3f}); "
                "check the learning rate and the number of epochs",
                CnnWarning,
                stacklevel=2,
            )
        with run.timer("write"):
            run.save_bytes(MODEL_FILE, checkpoint_bytes(net, dataset.class_names, config.augment.test_flip))
            run.save_json("metrics.json", metrics)
            run.save_npz("predictions.npz", y_true=y_test, y_pred=y_pred, proba=proba)
            run.save_bytes(
                "learning_curves.png", plots.figure_png(plots.learning_curves(trained.history, trained.best_epoch))
            )
            run.save_bytes(
                "confusion_matrix.png",
                plots.figure_png(plots.confusion_matrix(np.asarray(metrics["confusion_matrix"]), names)),
            )
            wrong = np.flatnonzero(y_pred != y_test)[:_MONTAGE_MAX]
            run.save_bytes(
                "misclassified.png",
                plots.figure_png(
                    plots.misclassified_montage(dataset.x_test[wrong], y_test[wrong], y_pred[wrong], names)
                ),
            )
        run.extra["summary"] = {"test_accuracy": metrics["test_accuracy"], "epochs_run": metrics["epochs_run"]}
        run.measured(**speeds)
        run.commit()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path)
    return {**metrics, **speeds}


def _best_val(history: list[dict[str, Any]], best_epoch: int) -> float | None:
    for record in history:
        if record["epoch"] == best_epoch and "val_acc" in record:
            return float(record["val_acc"])
    return None


def _test_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, names: list[str]) -> dict[str, Any]:
    k = len(names)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(k)).astype(np.int64)
    eps = np.finfo(np.float64).tiny
    loss = float(-np.mean(np.log(np.maximum(proba[np.arange(len(y_true)), y_true].astype(np.float64), eps))))
    support = cm.sum(1)
    per_class = {
        str(c): {
            "name": names[c],
            "accuracy": float(cm[c, c] / support[c]) if support[c] else None,
            "n": int(support[c]),
        }
        for c in range(k)
    }
    right = int(np.trace(cm))
    return {
        "test_accuracy": right / len(y_true),
        "test_loss": loss,
        "n_test": len(y_true),
        "n_right": right,
        "n_wrong": len(y_true) - right,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
