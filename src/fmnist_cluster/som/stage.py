"""The ``train-som`` stage: build the engine a config describes, train it, analyse the map
and write ``som.npz``, ``metrics.json`` and the figures."""

from __future__ import annotations

import warnings
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun
from fmnist_cluster.cluster.estimators import sample_rows
from fmnist_cluster.device import resolve_device
from fmnist_cluster.errors import FmnistError, FmnistWarning, user_errors
from fmnist_cluster.figure_workers import FigureRenderer
from fmnist_cluster.som.analysis import analyse
from fmnist_cluster.som.base import SomEstimator
from fmnist_cluster.som.batch import BatchSOM
from fmnist_cluster.som.minisom_engine import MiniSomEngine
from fmnist_cluster.som.trainer import CHECKPOINT, train


class SomWarning(FmnistWarning):
    """A map setting that works but deserves a look (shown in yellow by the CLI)."""


def make_engine(config: Any) -> BatchSOM | MiniSomEngine:
    """The engine a :class:`~fmnist_cluster.config.SomConfig` describes."""
    m, t = config.som, config.train
    shared = {k: getattr(m, k) for k in ("rows", "cols", "topology", "neighbourhood", "sigma", "init")}
    if m.engine == "batch":
        return BatchSOM(
            **shared,
            sigma_end=m.sigma_end,
            epochs=int(m.epochs),
            schedule=m.schedule,
            early_stop_tol=t.early_stop_tol,
            patience=t.patience,
            chunk_size=t.chunk_size,
            search_dims=t.search_dims,
            exact_epochs=t.exact_epochs,
            exact_candidates=t.exact_candidates,
            device=t.device,
            random_state=config.seed,
        )
    return MiniSomEngine(
        **shared,
        learning_rate=m.learning_rate,
        decay_function=m.decay_function,
        sigma_decay_function=m.sigma_decay_function,
        order=m.order,
        steps=m.steps,
        epochs=m.epochs,
        random_state=config.seed,
    )


def flatten(x: np.ndarray) -> np.ndarray:
    """Images (N, 1, 28, 28) -> (N, 784); features (N, D) unchanged."""
    return x.reshape(len(x), -1) if x.ndim > 2 else x


def _fit_data(dataset: Any, pool: bool) -> tuple[np.ndarray, np.ndarray | None]:
    x = flatten(dataset.x_train)
    y = dataset.y_train
    if pool:
        x = np.concatenate([x, flatten(dataset.x_test)])
        y = None if y is None or dataset.y_test is None else np.concatenate([y, dataset.y_test])
    return x, y


def _winner_neurons(chosen: list[int] | None, hits: np.ndarray, n: int = 4) -> list[int]:
    if chosen:
        bad = [c for c in chosen if not 0 <= c < len(hits)]
        if bad:
            raise FmnistError(f"analysis.winner_neurons {bad} out of range; neurons are 0..{len(hits) - 1}")
        return list(chosen)
    return [int(i) for i in np.argsort(-hits, kind="stable")[:n]]


def run_train_som(
    config: Any,
    input_dir: Path | str,
    out_dir: Path | str,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
    figures: FigureRenderer | None = None,
) -> dict[str, Any]:
    """The ``train-som`` stage: train a map on a feature artefact and analyse it.

    Parameters
    ----------
    config : SomConfig
    input_dir : path
        A ``preprocess`` or ``encode`` output folder (read with ``load_dataset``).
    out_dir : path
        Gets ``som.npz``, ``metrics.json``, figures and ``manifest.json``.
    progress : Progress
    resume : bool
        Continue from ``out_dir/checkpoint.npz`` (written after every epoch of the batch engine).
    figures : FigureRenderer, optional
        Draws the figures; by default the stage opens one (two workers) before it loads the
        data. The command line opens it before torch is imported, so that the workers start
        from a small process and import matplotlib while the stage's own imports run.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``, and ``train_seconds`` (the epochs' time, in the
        manifest's ``timings``: a run's durations are not part of its outputs).
    """
    from fmnist_cluster.data import load_dataset

    out_dir = Path(out_dir)
    engine = make_engine(config)
    with user_errors("train-som config"):
        engine._check_params()
    if resume and config.som.engine != "batch":
        raise FmnistError("--resume works with som.engine 'batch' only (MiniSom has no per-epoch checkpoint)")
    with user_errors("train.device"):
        resolve_device(config.train.device)
    with FigureRenderer(workers=2) if figures is None else nullcontext(figures) as figures:
        dataset, digest = load_dataset(input_dir, "fmnist-cluster preprocess (or encode)")  # refuses no rows
        x_fit, y_fit = _fit_data(dataset, config.train.pool)
        if config.train.limit is not None and config.train.limit < len(x_fit):
            pick = sample_rows(len(x_fit), config.train.limit, config.seed)
            x_fit = x_fit[pick]
            y_fit = None if y_fit is None else y_fit[pick]
        ckpt = out_dir / CHECKPOINT
        if resume and not ckpt.is_file():
            warnings.warn(f"--resume: no checkpoint in {out_dir}; training from the start", SomWarning, stacklevel=2)
        torch.manual_seed(config.seed)
        with StageRun("train-som", out_dir, config.model_dump(mode="json"), seed=config.seed) as run:
            run.add_input(Path(input_dir) / "data.npz", digest)
            with run.timer("train"):
                with user_errors("train-som"):
                    if isinstance(engine, BatchSOM):
                        train(engine, x_fit, progress=progress, checkpoint=ckpt, resume=resume)
                    else:
                        train(engine, x_fit, progress=progress)
            metrics, arrays = _analyse(run, config, engine, dataset, x_fit, y_fit)
            try:
                pngs = _draw(run, figures, config, engine, dataset, x_fit, metrics, arrays)
            except BrokenProcessPool:  # a worker died (out of memory?): the trained map is not lost
                warnings.warn(
                    "a process drawing the figures ended unexpectedly (out of memory?); drawing them here instead",
                    SomWarning,
                    stacklevel=2,
                )
                with FigureRenderer(workers=1) as inline:
                    pngs = _draw(run, inline, config, engine, dataset, x_fit, metrics, arrays)
            for name, png in pngs.items():
                run.save_bytes(name, png)
            grid = engine.grid_
            run.save_text(
                "outlier_neurons.csv",
                "neuron,row,col,hits\n"
                + "".join(f"{k},{k // grid.cols},{k % grid.cols},{arrays['hits'][k]}\n" for k in arrays["outliers"]),
            )
            run.save_npz("som.npz", **{k: v for k, v in arrays.items() if k not in ("bmu_fit", "dist_fit")})
            run.save_json("metrics.json", metrics)
            run.measured(train_seconds=engine.train_seconds_)
            run.commit()
    ckpt.unlink(missing_ok=True)
    return {**metrics, "train_seconds": round(engine.train_seconds_, 3)}


def _analyse(
    run: StageRun, config: Any, engine: SomEstimator, dataset: Any, x_fit: np.ndarray, y_fit: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Analyse the trained map: (metrics, arrays)."""
    with run.timer("analyse"):
        analysed, arrays = analyse(
            engine,
            x_fit,
            y_fit,
            flatten(dataset.x_test),
            dataset.y_test,
            dataset.n_classes,
            config.train.chunk_size,
            engine.fit_units_,
        )
    return _summary(config, engine, len(x_fit), len(dataset.x_test), x_fit.shape[1], analysed), arrays


def _draw(
    run: StageRun,
    figures: FigureRenderer,
    config: Any,
    engine: SomEstimator,
    dataset: Any,
    x_fit: np.ndarray,
    metrics: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> dict[str, bytes]:
    """Every figure of the analysed map, drawn by ``figures`` side by side: file name -> PNG."""
    from fmnist_cluster.data import label_names

    grid = engine.grid_
    coords, topology = grid.coords, grid.topology
    title = f"{config.som.engine} {grid.rows}x{grid.cols} {grid.topology}"
    names = label_names(dataset.n_classes, dataset.class_names)
    with run.timer("figures"):
        pngs = {
            "history.png": figures.submit("som_history", engine.history_, title),
            "u_matrix.png": figures.submit(
                "som_u_matrix", arrays["u_matrix"], coords, topology, arrays.get("dominant"), names, title
            ),
            "hit_map.png": figures.submit("som_hit_map", arrays["hits"], coords, topology, title),
            "outliers.png": figures.submit(
                "som_outliers", arrays["hits"], arrays["outliers"], grid.cols, *metrics["outlier_fences"]
            ),
        }
        if "dominant" in arrays:
            pngs["labels_map.png"] = figures.submit(
                "som_labels_map", arrays["dominant"], arrays["purity"], coords, topology, names, title
            )
        if x_fit.shape[1] == 784:
            pngs["prototypes.png"] = figures.submit("som_prototypes", engine.weights_, grid.rows, grid.cols)
            if dataset.is_image:
                _submit_samples(pngs, figures, config, grid.cols, arrays, x_fit)
        return {name: future.result() for name, future in pngs.items()}


def _summary(
    config: Any, engine: SomEstimator, n_fit: int, n_test: int, n_features: int, analysed: dict[str, Any]
) -> dict[str, Any]:
    """``metrics.json``: the run, the analysis and the training history."""
    pooled = config.train.pool
    if pooled:  # the test rows were trained on: their scores are in-sample, and say so
        for key in [k for k in ("test_qe", "test_te", "test_accuracy") if k in analysed]:
            analysed[f"{key}_in_sample"] = analysed.pop(key)
    return {
        "engine": config.som.engine,
        "n_fit": n_fit,
        "n_test": n_test,
        "pooled": pooled,
        "test_is_held_out": not pooled,
        "in_sample": ["qe", "te", "train_accuracy"]
        + ([f"{k}_in_sample" for k in ("test_qe", "test_te", "test_accuracy")] if pooled else []),
        "n_features": int(n_features),
        "epochs_run": engine.n_epochs_,
        **analysed,
        "history": engine.history_,
    }


def _submit_samples(
    pngs: dict[str, Any],
    figures: FigureRenderer,
    config: Any,
    cols: int,
    arrays: dict[str, np.ndarray],
    x_fit: np.ndarray,
) -> None:
    """Hand the two montages of training images (the winners' samples, the largest errors) to
    ``figures``, into ``pngs``."""
    groups = []
    for k in _winner_neurons(config.analysis.winner_neurons, arrays["hits"]):
        members = np.nonzero(arrays["bmu_fit"] == k)[0]
        members = members[np.argsort(arrays["dist_fit"][members], kind="stable")]
        groups.append((k, x_fit[members[: config.analysis.n_winner_samples]], len(members)))
    pngs["winners.png"] = figures.submit("som_winner_samples", groups, cols)
    n = min(config.analysis.n_largest_qe, len(x_fit))
    worst = np.argsort(-arrays["dist_fit"], kind="stable")[:n]
    titles = [f"qe {arrays['dist_fit'][i]:.2f}" for i in worst]
    suptitle = f"The {n} training samples with the largest quantisation error"
    pngs["largest_qe.png"] = figures.submit("montage", x_fit[worst], titles, ncols=10, suptitle=suptitle)
