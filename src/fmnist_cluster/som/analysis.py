"""Per-neuron analysis of a fitted map: hits, U-matrix, outlier neurons, class labels and
:func:`analyse`, which gathers them into the ``train-som`` metrics and arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist_cluster.som.base import SomEstimator
from fmnist_cluster.som.grid import SomGrid, best_units, epoch_metrics


def u_matrix(weights: np.ndarray, grid: SomGrid) -> np.ndarray:
    """Mean Euclidean weight distance from each neuron to its grid neighbours, shape (K,).

    Neighbours follow the grid's topology (8 cells rectangular, 6 hexagonal), so border
    neurons average over fewer neighbours. Values are not rescaled.
    """
    w = np.asarray(weights, dtype=np.float64)
    pairs = grid.neighbour_pairs()
    total = np.zeros(grid.n_neurons)
    count = np.zeros(grid.n_neurons)
    if len(pairs):
        d = np.linalg.norm(w[pairs[:, 0]] - w[pairs[:, 1]], axis=1)
        np.add.at(total, pairs[:, 0], d)
        np.add.at(total, pairs[:, 1], d)
        np.add.at(count, pairs[:, 0], 1)
        np.add.at(count, pairs[:, 1], 1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def hit_map(bmu: np.ndarray, n_neurons: int) -> np.ndarray:
    """How often each neuron wins, shape (K,) int64."""
    return np.bincount(np.asarray(bmu, dtype=np.int64), minlength=n_neurons).astype(np.int64)


def outlier_neurons(hits: np.ndarray, whisker: float = 1.5) -> tuple[np.ndarray, float, float]:
    """Neurons whose hit count lies outside ``[Q1 - whisker*IQR, Q3 + whisker*IQR]``.

    Returns
    -------
    indices, low, high : ndarray, float, float
        Outlier neuron indices (sorted by hit count, largest first) and the two fences.
    """
    q1, q3 = np.percentile(hits, [25, 75])
    iqr = q3 - q1
    low, high = q1 - whisker * iqr, q3 + whisker * iqr
    idx = np.nonzero((hits < low) | (hits > high))[0]
    return idx[np.argsort(-hits[idx], kind="stable")], float(low), float(high)


def neuron_classes(
    bmu: np.ndarray, y: np.ndarray, n_neurons: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-neuron class counts, dominant class (-1 if never hit) and purity.

    Returns
    -------
    counts : (K, C) int64
    dominant : (K,) int64
    purity : (K,) float64
        Share of the neuron's samples in its dominant class (NaN if never hit).
    """
    counts = np.zeros((n_neurons, n_classes), np.int64)
    np.add.at(counts, (np.asarray(bmu), np.asarray(y)), 1)
    total = counts.sum(1)
    dominant = np.where(total > 0, counts.argmax(1), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(total > 0, counts.max(1) / np.maximum(total, 1), np.nan)
    return counts, dominant, purity


def neuron_labels(weights: np.ndarray, dominant: np.ndarray) -> np.ndarray:
    """Dominant class of every neuron, neurons never hit taking that of the nearest (in
    weight space) neuron that was hit."""
    labels = dominant.copy()
    empty = np.nonzero(dominant < 0)[0]
    hit = np.nonzero(dominant >= 0)[0]
    if len(empty) and len(hit):
        near, _, _ = best_units(weights[hit], weights[empty], second=False)
        labels[empty] = dominant[hit[near]]
    return labels


def majority_accuracy(labels: np.ndarray, bmu: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of predicting ``labels[bmu]`` (the neuron-majority classifier) for ``y``."""
    if len(y) == 0:
        return float("nan")
    return float((labels[np.asarray(bmu)] == np.asarray(y)).mean())


def analyse(
    som: SomEstimator,
    x_fit: np.ndarray,
    y_fit: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    n_classes: int,
    chunk_size: int = 2048,
    fit_units: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics and per-neuron arrays of a fitted map; ``fit_units`` are the best units,
    second-best units and distances of ``x_fit`` when already known (the batch engine's
    ``fit_units_``), so that they are not searched twice.

    Returns
    -------
    metrics : dict
        ``qe``, ``te`` (fit data), ``test_qe``, ``test_te``, neuron usage, outlier count,
        mean purity and the neuron-majority classifier's test accuracy.
    arrays : dict
        ``weights``, ``coords``, ``bmu_fit``, ``dist_fit``, ``bmu_test``, ``hits``,
        ``u_matrix``, ``outliers``, and with labels ``class_counts``, ``dominant``,
        ``purity``, ``neuron_label``.
    """
    grid, w = som.grid_, som.weights_
    k = grid.n_neurons
    bmu, bmu2, dist = fit_units if fit_units is not None else best_units(w, x_fit, chunk_size)
    hits = hit_map(bmu, k)
    outliers, low, high = outlier_neurons(hits)
    metrics: dict[str, Any] = {
        **epoch_metrics(grid, bmu, bmu2, dist),
        "neurons": k,
        "neurons_used": int((hits > 0).sum()),
        "neuron_usage": float((hits > 0).mean()),
        "outlier_neurons": len(outliers),
        "outlier_fences": [low, high],
    }
    arrays: dict[str, np.ndarray] = {
        "weights": w.reshape(grid.rows, grid.cols, -1),
        "coords": grid.coords,
        "bmu_fit": bmu,
        "dist_fit": dist,
        "hits": hits,
        "u_matrix": u_matrix(w, grid),
        "outliers": outliers,
    }
    if len(x_test):
        tb, tb2, td = best_units(w, x_test, chunk_size)
        test = epoch_metrics(grid, tb, tb2, td)
        metrics.update(test_qe=test["qe"], test_te=test["te"])
        arrays["bmu_test"] = tb
    if y_fit is not None and n_classes > 0:
        counts, dominant, purity = neuron_classes(bmu, y_fit, k, n_classes)
        labels = neuron_labels(w, dominant)
        metrics["mean_purity"] = float(np.nanmean(purity)) if (dominant >= 0).any() else float("nan")
        metrics["weighted_purity"] = float(counts.max(1).sum() / max(counts.sum(), 1))
        metrics["train_accuracy"] = majority_accuracy(labels, bmu, y_fit)
        if y_test is not None and len(x_test):
            metrics["test_accuracy"] = majority_accuracy(labels, arrays["bmu_test"], y_test)
        arrays.update(class_counts=counts, dominant=dominant, purity=purity, neuron_label=labels)
    return metrics, arrays
