"""Self-organising maps: a batch engine in torch, a MiniSom wrapper, map metrics and the
``train-som`` stage.

Concepts, one class each:

* :class:`SomGrid` -- the neurons' positions on a rectangular or hexagonal grid, and which
  neurons are neighbours (8 around a cell on a rectangular grid, the 6 adjacent cells on a
  hexagonal one);
* :class:`BatchSOM` -- Kohonen's batch map in torch: chunked winner search (bounded memory),
  a sigma schedule, PCA or random initialisation, CPU or CUDA, deterministic for a seed;
* :class:`MiniSomEngine` -- MiniSom with its options behind the same interface.

Both engines follow the scikit-learn contract (hyperparameters in ``__init__``, ``fit``
returns ``self``, learned state in ``weights_``, ``grid_``, ``history_``) and share the
metric functions below, which all work in chunks: :func:`quantization_error`,
:func:`topographic_error`, :func:`u_matrix`, :func:`hit_map`, :func:`outlier_neurons`,
:func:`neuron_classes` and :func:`majority_accuracy`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh

from fmnist_cluster.artefacts import (
    NULL_PROGRESS,
    Progress,
    StageRun,
    array_digest,
    keep_freed_memory,
    load_npz,
    save_npz,
)
from fmnist_cluster.device import resolve_device
from fmnist_cluster.errors import FmnistError, FmnistWarning, user_errors

TOPOLOGIES = ("rectangular", "hexagonal")
BATCH_NEIGHBOURHOODS = ("gaussian", "bubble", "triangle")
MINISOM_NEIGHBOURHOODS = ("gaussian", "mexican_hat", "bubble", "triangle")
INITS = ("pca", "random")
SCHEDULES = ("exponential", "linear")
ORDERS = ("random", "sequential")
LR_DECAYS = ("asymptotic_decay", "inverse_decay_to_zero", "linear_decay_to_zero")
SIGMA_DECAYS = ("asymptotic_decay", "inverse_decay_to_one", "linear_decay_to_one")
CHECKPOINT = "checkpoint.npz"
_HEX_H = math.sqrt(3) / 2


class SomWarning(FmnistWarning):
    """A map setting that works but deserves a look (shown in yellow by the CLI)."""


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise FmnistError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")


# --------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SomGrid:
    """Positions of ``rows x cols`` neurons; neuron ``k`` sits in row ``k // cols``.

    Parameters
    ----------
    rows, cols : int
        Map size.
    topology : {'rectangular', 'hexagonal'}
        Rectangular: neuron (i, j) at (j, i); its neighbours are the 8 cells around it.
        Hexagonal: odd rows shifted right by half a cell, rows sqrt(3)/2 apart, so every
        neighbour is at distance 1 and each cell has the 6 adjacent cells as neighbours.
    coords : ndarray of shape (rows * cols, 2), optional
        Explicit positions (x, y) (used for MiniSom's own hexagonal layout).
    """

    rows: int
    cols: int
    topology: str = "rectangular"
    coords: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_choice("topology", self.topology, TOPOLOGIES)
        if self.rows < 1 or self.cols < 1:
            raise FmnistError(f"map size {self.rows}x{self.cols} is empty; rows and cols must be >= 1")
        if self.coords is None:
            i, j = np.divmod(np.arange(self.rows * self.cols), self.cols)
            if self.topology == "hexagonal":
                xy = np.stack([j + 0.5 * (i % 2), i * _HEX_H], axis=1)
            else:
                xy = np.stack([j, i], axis=1)
            object.__setattr__(self, "coords", xy.astype(np.float64))

    @property
    def n_neurons(self) -> int:
        return self.rows * self.cols

    @property
    def neighbour_radius(self) -> float:
        """Largest grid distance between neighbours (sqrt 2 with diagonals, 1 on hex)."""
        return 1.5 if self.topology == "rectangular" else 1.01

    def distances(self) -> np.ndarray:
        """(K, K) Euclidean distances between neuron positions."""
        from scipy.spatial.distance import cdist

        return cdist(self.coords, self.coords)

    def are_neighbours(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Boolean array: neurons ``a[n]`` and ``b[n]`` are adjacent (distinct) cells."""
        d = np.linalg.norm(self.coords[np.asarray(a)] - self.coords[np.asarray(b)], axis=1)
        return (d > 0) & (d <= self.neighbour_radius)

    def neighbour_pairs(self) -> np.ndarray:
        """(P, 2) int array of neighbour pairs (a < b), sorted."""
        from scipy.spatial import cKDTree

        pairs = cKDTree(self.coords).query_pairs(self.neighbour_radius, output_type="ndarray")
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        return pairs.astype(np.int64).reshape(-1, 2)


# --------------------------------------------------------------------------------------
# chunked winner search and metrics
# --------------------------------------------------------------------------------------


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def best_units(
    weights: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
    second: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best and second-best matching neuron of every row, computed in chunks.

    Parameters
    ----------
    weights : (K, D) array
    x : (N, D) array
    chunk_size : int
        Rows per chunk; memory is O(chunk_size * K).
    device : str or torch.device
    second : bool
        Also find the second-best unit (for the topographic error).

    Returns
    -------
    bmu, bmu2, dist : ndarray
        Winner index (N,), runner-up index (N,; -1 when ``second`` is False) and the
        Euclidean distance to the winner (N,, float64).
    """
    dev = torch.device(device) if isinstance(device, str) else device
    w = _as_tensor(weights).to(dev, torch.float32)
    xt = _as_tensor(x)
    n = xt.shape[0]
    bmu = np.empty(n, np.int64)
    bmu2 = np.full(n, -1, np.int64)
    dist = np.empty(n, np.float64)
    wn = (w * w).sum(1)
    for s in range(0, n, chunk_size):
        xc = xt[s : s + chunk_size].to(dev, torch.float32)
        d = torch.addmm(wn, xc, w.T, alpha=-2.0)
        if second and w.shape[0] > 1:
            _, idx = torch.topk(d, 2, dim=1, largest=False)
            b1 = idx[:, 0]
            bmu2[s : s + len(xc)] = idx[:, 1].cpu().numpy()
        else:
            b1 = d.argmin(1)
        bmu[s : s + len(xc)] = b1.cpu().numpy()
        dist[s : s + len(xc)] = torch.linalg.vector_norm(xc - w[b1], dim=1).double().cpu().numpy()
    return bmu, bmu2, dist


def quantization_error(weights: np.ndarray, x: np.ndarray, chunk_size: int = 2048) -> float:
    """Mean Euclidean distance from each row of ``x`` to its winning neuron."""
    if len(x) == 0:
        return float("nan")
    return float(best_units(weights, x, chunk_size, second=False)[2].mean())


def topographic_error(weights: np.ndarray, x: np.ndarray, grid: SomGrid, chunk_size: int = 2048) -> float:
    """Share of rows whose best and second-best neurons are not neighbours on ``grid``.

    On a rectangular grid the 8 surrounding cells are neighbours (as in MiniSom); on a
    hexagonal grid the 6 adjacent cells are.
    """
    if len(x) == 0 or grid.n_neurons < 2:
        return float("nan")
    bmu, bmu2, _ = best_units(weights, x, chunk_size)
    return float(1.0 - grid.are_neighbours(bmu, bmu2).mean())


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


def epoch_metrics(grid: SomGrid, bmu: np.ndarray, bmu2: np.ndarray, dist: np.ndarray) -> dict[str, float]:
    """Quantisation error (mean distance to the best unit) and topographic error (share of rows
    whose two best units are not neighbours; NaN on a one-neuron map)."""
    te = float(1.0 - grid.are_neighbours(bmu, bmu2).mean()) if grid.n_neurons > 1 else float("nan")
    return {"qe": float(dist.mean()), "te": te}


# --------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------


class _SomBase:
    """Shared state and metric methods of the engines (``weights_`` is (K, D))."""

    weights_: np.ndarray
    grid_: SomGrid
    history_: list[dict[str, float]]

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise FmnistError(f"{type(self).__name__} is not fitted; call fit first")

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise FmnistError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
        if hasattr(self, "weights_") and x.shape[1] != self.weights_.shape[1]:
            raise FmnistError(f"features have {x.shape[1]} columns but the map was trained on {self.weights_.shape[1]}")
        return x

    def winners(self, x: np.ndarray) -> np.ndarray:
        """Index of the winning neuron of each row."""
        self._check_fitted()
        return best_units(self.weights_, self._check_x(x), second=False)[0]

    def quantization_error(self, x: np.ndarray) -> float:
        """Mean distance of each row to its winning neuron."""
        self._check_fitted()
        return quantization_error(self.weights_, self._check_x(x))

    def topographic_error(self, x: np.ndarray) -> float:
        """Share of rows whose two best neurons are not grid neighbours."""
        self._check_fitted()
        return topographic_error(self.weights_, self._check_x(x), self.grid_)


def _pca_weights(x: torch.Tensor, grid: SomGrid) -> torch.Tensor:
    """Weights spread over the plane of the first two principal components, scaled by
    their standard deviations (grid positions mapped to [-2, 2] standard deviations)."""
    mean = x.sum(0, dtype=torch.float64) / len(x)
    cov = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for s in range(0, len(x), 8192):
        c = x[s : s + 8192].double() - mean
        cov += c.T @ c
    cov /= max(len(x) - 1, 1)
    d = cov.shape[0]
    vals_np, vecs_np = eigh(cov.numpy(), subset_by_index=[d - 2, d - 1])
    vals = torch.from_numpy(vals_np[::-1].copy()).clamp_min(0)
    vecs = torch.from_numpy(vecs_np[:, ::-1].copy())
    signs = torch.sign(vecs[vecs.abs().argmax(0), torch.arange(2)])
    vecs = vecs * torch.where(signs == 0, 1.0, signs)
    pos = torch.from_numpy(grid.coords)
    span = (pos.max(0).values - pos.min(0).values).clamp_min(1e-12)
    unit = 2.0 * (pos - pos.min(0).values) / span - 1.0  # [-1, 1]
    # longer map side along the first component
    if span[1] > span[0]:
        unit = unit.flip(1)
    w = mean + 2.0 * (unit[:, :1] * vals[0].sqrt() * vecs[:, 0] + unit[:, 1:] * vals[1].sqrt() * vecs[:, 1])
    return w.float()


class _Subspace:
    """The data's first ``dims`` principal components, for the approximate winner search."""

    def __init__(self, x: torch.Tensor, dims: int, dev: torch.device) -> None:
        mean = x.sum(0, dtype=torch.float64) / len(x)
        cov = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        for s in range(0, len(x), 8192):
            c = x[s : s + 8192].double() - mean
            cov += c.T @ c
        d = cov.shape[0]
        dims = min(dims, d)
        _, vecs = eigh(cov.numpy(), subset_by_index=[d - dims, d - 1])
        self.mean = mean.float().to(dev)
        self.basis = torch.from_numpy(vecs[:, ::-1].copy()).float().to(dev)
        self.rows = torch.cat([self.project(x[s : s + 8192].to(dev)) for s in range(0, len(x), 8192)])

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return (v.float() - self.mean) @ self.basis


class BatchSOM(_SomBase):
    """Kohonen's batch self-organising map, vectorised in torch.

    Each epoch finds every sample's winning neuron (in chunks, so memory stays at
    ``chunk_size x K``), then sets each neuron to the neighbourhood-weighted mean of the
    samples: ``w_k = sum_n h(k, bmu_n) x_n / sum_n h(k, bmu_n)``. The neighbourhood width
    shrinks from ``sigma`` to ``sigma_end`` over the epochs. The same winner search also
    gives the epoch's quantisation and topographic errors, so metrics cost nothing extra.

    Parameters
    ----------
    rows, cols : int
        Map size.
    topology : {'rectangular', 'hexagonal'}
    neighbourhood : {'gaussian', 'bubble', 'triangle'}
        ``gaussian``: exp(-d^2 / 2 sigma^2); ``bubble``: 1 within distance sigma, else 0;
        ``triangle``: max(0, 1 - d / sigma). ``d`` is the distance between grid positions.
    sigma : float or None
        Neighbourhood width in the first epoch; None means ``max(rows, cols) / 2``.
    sigma_end : float
        Width in the last epoch.
    epochs : int
        Number of batch epochs.
    schedule : {'exponential', 'linear'}
        How sigma goes from ``sigma`` to ``sigma_end``.
    init : {'pca', 'random'}
        ``pca``: the plane of the first two principal components; ``random``: random
        samples of the data (seeded).
    early_stop_tol : float or None
        Stop when the quantisation error improved by less than this fraction for
        ``patience`` epochs in a row; None trains all epochs.
    patience : int
        See ``early_stop_tol``.
    chunk_size : int
        Rows per chunk of the winner search.
    search_dims : int
        0: every epoch searches winners exactly. ``p > 0``: all but the last ``exact_epochs``
        epochs search winners among the data's first ``p`` principal components (about 12x
        less work for 784 pixels and p = 64; on Fashion-MNIST about 9 in 10 winners are the
        exact ones). Updates always use the full rows; the last epochs and every reported
        final metric use the exact search.
    exact_epochs : int
        Epochs at the end that search exactly when ``search_dims > 0``.
    device : {'auto', 'cpu', 'cuda'}
    random_state : int
        Seed of the random initialisation.

    Attributes
    ----------
    weights_ : ndarray (rows * cols, D)
    grid_ : SomGrid
    history_ : list of dict
        One entry per epoch: ``epoch``, ``sigma`` and the ``qe`` / ``te`` of the map at the
        start of that epoch (on the training data); the last entry (``sigma`` None) is the
        trained map.
    n_epochs_ : int
        Epochs actually run (fewer after an early stop).
    train_seconds_ : float
    fit_units_ : tuple of ndarray
        Best unit, second-best unit and distance to the best unit of every training row under
        the trained map (the last ``history_`` entry's QE and TE come from them).
    """

    def __init__(
        self,
        rows: int = 50,
        cols: int = 50,
        topology: str = "rectangular",
        neighbourhood: str = "gaussian",
        sigma: float | None = None,
        sigma_end: float = 1.0,
        epochs: int = 10,
        schedule: str = "exponential",
        init: str = "pca",
        early_stop_tol: float | None = None,
        patience: int = 2,
        chunk_size: int = 2048,
        search_dims: int = 0,
        exact_epochs: int = 2,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.rows = rows
        self.cols = cols
        self.topology = topology
        self.neighbourhood = neighbourhood
        self.sigma = sigma
        self.sigma_end = sigma_end
        self.epochs = epochs
        self.search_dims = search_dims
        self.exact_epochs = exact_epochs
        self.schedule = schedule
        self.init = init
        self.early_stop_tol = early_stop_tol
        self.patience = patience
        self.chunk_size = chunk_size
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        _check_choice("topology", self.topology, TOPOLOGIES)
        _check_choice("neighbourhood", self.neighbourhood, BATCH_NEIGHBOURHOODS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("init", self.init, INITS)
        if self.epochs < 1:
            raise FmnistError(f"epochs must be >= 1, got {self.epochs}")
        if self.sigma_end <= 0 or (self.sigma is not None and self.sigma < self.sigma_end):
            raise FmnistError(f"sigma ({self.sigma}) must be >= sigma_end ({self.sigma_end}) > 0")
        if self.chunk_size < 1:
            raise FmnistError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.search_dims < 0 or self.exact_epochs < 0:
            raise FmnistError(f"search_dims and exact_epochs must be >= 0, got {self.search_dims}, {self.exact_epochs}")

    def sigmas(self) -> np.ndarray:
        """Neighbourhood width of each epoch."""
        start = self.sigma if self.sigma is not None else max(self.rows, self.cols) / 2
        if self.epochs == 1:
            return np.array([float(self.sigma_end)])
        t = np.arange(self.epochs) / (self.epochs - 1)
        if self.schedule == "linear":
            return start + t * (self.sigma_end - start)
        return start * (self.sigma_end / start) ** t

    def _signature(self, n_features: int) -> str:
        keys = ("rows", "cols", "topology", "neighbourhood", "sigma", "sigma_end", "epochs", "schedule", "init")
        keys += ("search_dims", "exact_epochs")
        return json.dumps({k: getattr(self, k) for k in keys} | {"n_features": n_features}, sort_keys=True)

    def _neighbourhood(self, dist: torch.Tensor, sigma: float) -> torch.Tensor:
        if self.neighbourhood == "gaussian":
            return torch.exp(-(dist**2) / (2 * sigma * sigma))
        if self.neighbourhood == "bubble":
            return (dist <= sigma + 1e-9).to(dist.dtype)
        return (1.0 - dist / sigma).clamp_min(0.0)

    def init_weights(self, x: np.ndarray) -> np.ndarray:
        """Initial weights (K, D) for data ``x`` (PCA plane or random samples)."""
        self._check_params()
        grid = SomGrid(self.rows, self.cols, self.topology)
        xt = _as_tensor(self._check_x(x))
        if self.init == "pca" and xt.shape[1] >= 2 and len(xt) >= 2:
            return _pca_weights(xt, grid).numpy()
        gen = torch.Generator().manual_seed(int(self.random_state))
        pick = torch.randint(len(xt), (grid.n_neurons,), generator=gen)
        return xt[pick].clone().numpy()

    def fit(
        self,
        x: np.ndarray,
        y: Any = None,
        *,
        progress: Progress = NULL_PROGRESS,
        checkpoint: Path | str | None = None,
        resume: bool = False,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> BatchSOM:
        """Train the map on ``x`` (N, D).

        Parameters
        ----------
        x : ndarray (N, D)
        y : ignored
        progress : Progress
            Gets one step per epoch with the epoch's ``qe``, ``te`` and ``sigma``.
        checkpoint : path, optional
            ``.npz`` written atomically after every epoch.
        resume : bool
            Continue from ``checkpoint`` if it exists (the result equals an uninterrupted run).
        callback : callable, optional
            Called with each epoch's history entry (may raise to stop, e.g. pruning).
        """
        self._check_params()
        keep_freed_memory()
        t0 = time.perf_counter()
        x = self._check_x(x)
        dev = resolve_device(self.device)
        grid = SomGrid(self.rows, self.cols, self.topology)
        sigmas = self.sigmas()
        signature = self._signature(x.shape[1])
        data_digest = array_digest(x) if checkpoint is not None else ""
        start_epoch, history = 0, []
        if resume and checkpoint is not None and Path(checkpoint).is_file():
            weights, start_epoch, history = self._load_checkpoint(Path(checkpoint), signature, x.shape[1], data_digest)
        else:
            weights = self.init_weights(x)
        xt = _as_tensor(x)
        if dev.type == "cuda":
            xt = xt.to(dev)
        w = torch.from_numpy(weights).to(dev)
        gd = torch.from_numpy(grid.distances()).to(dev, torch.float32)
        task = progress.task(f"batch SOM {self.rows}x{self.cols}", total=self.epochs)
        if start_epoch:
            task.advance(start_epoch)
        stalled = 0
        sub = None
        if 0 < self.search_dims < x.shape[1] and self.epochs - start_epoch > self.exact_epochs:
            sub = _Subspace(_as_tensor(x), self.search_dims, dev)
        for epoch in range(start_epoch, self.epochs):
            approx = sub if (sub is not None and epoch < self.epochs - self.exact_epochs) else None
            sums, counts, bmu, bmu2, dist = self._accumulate(xt, w, dev, approx)
            entry = {"epoch": epoch, "sigma": float(sigmas[epoch]), **epoch_metrics(grid, bmu, bmu2, dist)}
            if sub is not None:
                entry["search"] = "exact" if approx is None else f"pca{self.search_dims}"
            history.append(entry)
            h = self._neighbourhood(gd, float(sigmas[epoch]))
            num = h @ sums
            den = h @ counts
            ok = den > 1e-12
            w = torch.where(ok[:, None], num / den.clamp_min(1e-12)[:, None], w)
            task.advance(1, qe=entry["qe"], te=entry["te"], sigma=entry["sigma"])
            if checkpoint is not None:
                save_npz(
                    checkpoint,
                    weights=w.cpu().numpy(),
                    epoch=np.array(epoch + 1),
                    history=np.array(json.dumps(history)),
                    signature=np.array(signature),
                    data=np.array(data_digest),
                )
            if callback is not None:
                callback(entry)
            if self.early_stop_tol is not None and len(history) >= 2:
                prev = history[-2]["qe"]
                stalled = stalled + 1 if (prev - entry["qe"]) < self.early_stop_tol * prev else 0
                if stalled >= self.patience:
                    break
        task.close()
        self.train_seconds_ = time.perf_counter() - t0
        n_run = len(history)
        bmu, bmu2, dist = best_units(w, xt, self.chunk_size, dev)
        history.append({"epoch": n_run, "sigma": None, **epoch_metrics(grid, bmu, bmu2, dist)})
        self.fit_units_ = (bmu, bmu2, dist)
        self.weights_ = w.cpu().numpy()
        self.grid_ = grid
        self.history_ = history
        self.n_epochs_ = n_run
        return self

    def _accumulate(
        self, xt: torch.Tensor, w: torch.Tensor, dev: torch.device, sub: _Subspace | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        k = w.shape[0]
        sums = torch.zeros_like(w)
        counts = torch.zeros(k, dtype=w.dtype, device=dev)
        n = xt.shape[0]
        bmu = np.empty(n, np.int64)
        bmu2 = np.full(n, -1, np.int64)
        dist = np.empty(n, np.float64)
        ws = sub.project(w) if sub is not None else w
        wn = (ws * ws).sum(1)
        for s in range(0, n, self.chunk_size):
            xc = xt[s : s + self.chunk_size].to(dev, torch.float32)
            xs = sub.rows[s : s + self.chunk_size] if sub is not None else xc
            d = torch.addmm(wn, xs, ws.T, alpha=-2.0)
            if k > 1:
                _, idx = torch.topk(d, 2, dim=1, largest=False)
                b1, b2 = idx[:, 0], idx[:, 1]
            else:
                b1, b2 = d.argmin(1), None
            if b2 is not None:
                bmu2[s : s + len(xc)] = b2.cpu().numpy()
            sums.index_add_(0, b1, xc)
            counts += torch.bincount(b1, minlength=k).to(w.dtype)
            bmu[s : s + len(xc)] = b1.cpu().numpy()
            dist[s : s + len(xc)] = torch.linalg.vector_norm(xc - w[b1], dim=1).double().cpu().numpy()
        return sums, counts, bmu, bmu2, dist

    def _load_checkpoint(
        self, path: Path, signature: str, width: int, data_digest: str
    ) -> tuple[np.ndarray, int, list[dict]]:
        arrays = load_npz(path, ("weights", "epoch", "history", "signature"), "train-som without --resume")
        weights = arrays["weights"]
        if weights.ndim != 2 or weights.shape[1] != width:
            raise FmnistError(
                f"checkpoint {path} holds a map for {weights.shape[-1]}-wide features but the input has {width} "
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
        epoch = int(arrays["epoch"].reshape(-1)[0])
        return weights.astype(np.float32), epoch, json.loads(str(arrays["history"].reshape(-1)[0]))


class MiniSomEngine(_SomBase):
    """MiniSom behind the engine interface (online updates, one sample at a time).

    Parameters
    ----------
    rows, cols : int
        Map size.
    topology : {'rectangular', 'hexagonal'}
    neighbourhood : {'gaussian', 'mexican_hat', 'bubble', 'triangle'}
    sigma : float or None
        Initial neighbourhood width; None means ``max(rows, cols) / 2``.
    learning_rate : float
        Initial learning rate.
    decay_function : {'asymptotic_decay', 'inverse_decay_to_zero', 'linear_decay_to_zero'}
        Learning-rate decay.
    sigma_decay_function : {'asymptotic_decay', 'inverse_decay_to_one', 'linear_decay_to_one'}
    init : {'random', 'pca'}
        MiniSom's ``random_weights_init`` (random samples) or ``pca_weights_init``.
    order : {'random', 'sequential'}
        ``train_random`` (shuffled samples) or ``train_batch`` (samples in order).
    steps : int or None
        Number of single-sample updates; None means ``epochs * N``.
    epochs : float
        Passes over the data when ``steps`` is None.
    random_state : int

    Attributes
    ----------
    weights_, grid_, history_, n_epochs_, train_seconds_
        As in :class:`BatchSOM`; ``history_`` has the map's errors after each full pass
        (and at the end).
    """

    def __init__(
        self,
        rows: int = 50,
        cols: int = 50,
        topology: str = "rectangular",
        neighbourhood: str = "gaussian",
        sigma: float | None = None,
        learning_rate: float = 0.5,
        decay_function: str = "asymptotic_decay",
        sigma_decay_function: str = "asymptotic_decay",
        init: str = "random",
        order: str = "random",
        steps: int | None = None,
        epochs: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.rows = rows
        self.cols = cols
        self.topology = topology
        self.neighbourhood = neighbourhood
        self.sigma = sigma
        self.learning_rate = learning_rate
        self.decay_function = decay_function
        self.sigma_decay_function = sigma_decay_function
        self.init = init
        self.order = order
        self.steps = steps
        self.epochs = epochs
        self.random_state = random_state

    def _check_params(self) -> None:
        _check_choice("topology", self.topology, TOPOLOGIES)
        _check_choice("neighbourhood", self.neighbourhood, MINISOM_NEIGHBOURHOODS)
        _check_choice("decay_function", self.decay_function, LR_DECAYS)
        _check_choice("sigma_decay_function", self.sigma_decay_function, SIGMA_DECAYS)
        _check_choice("init", self.init, INITS)
        _check_choice("order", self.order, ORDERS)
        if self.steps is not None and self.steps < 1:
            raise FmnistError(f"steps must be >= 1, got {self.steps}")
        if self.epochs <= 0:
            raise FmnistError(f"epochs must be > 0, got {self.epochs}")

    def build(self, n_features: int) -> Any:
        """A fresh ``minisom.MiniSom`` with these settings."""
        from minisom import MiniSom

        self._check_params()
        sigma = self.sigma if self.sigma is not None else max(self.rows, self.cols) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MiniSom(
                self.rows,
                self.cols,
                n_features,
                sigma=sigma,
                learning_rate=self.learning_rate,
                decay_function=self.decay_function,
                neighborhood_function=self.neighbourhood,
                topology=self.topology,
                random_seed=self.random_state,
                sigma_decay_function=self.sigma_decay_function,
            )

    def _grid(self, som: Any) -> SomGrid:
        if self.topology == "rectangular":
            return SomGrid(self.rows, self.cols, "rectangular")
        xx, yy = som.get_euclidean_coordinates()
        coords = np.stack([np.asarray(xx).reshape(-1), np.asarray(yy).reshape(-1)], axis=1)
        return SomGrid(self.rows, self.cols, "hexagonal", coords=coords.astype(np.float64))

    def fit(
        self,
        x: np.ndarray,
        y: Any = None,
        *,
        progress: Progress = NULL_PROGRESS,
        callback: Callable[[dict[str, float]], None] | None = None,
        max_steps: int | None = None,
    ) -> MiniSomEngine:
        """Train with MiniSom's own update rule, reporting progress and errors per pass.

        ``max_steps`` stops after that many updates of the planned schedule (used to time
        a long run and extrapolate); the schedule itself is unchanged.
        """
        self._check_params()
        x = self._check_x(x).astype(np.float64)
        t0 = time.perf_counter()
        som = self.build(x.shape[1])
        if self.init == "pca":
            som.pca_weights_init(x)
        else:
            som.random_weights_init(x)
        self.init_seconds_ = time.perf_counter() - t0
        grid = self._grid(som)
        n = len(x)
        total = int(self.steps) if self.steps is not None else max(1, round(self.epochs * n))
        order = np.arange(total) % n
        if self.order == "random":
            som._random_generator.shuffle(order)
        run = total if max_steps is None else min(total, max_steps)
        task = progress.task(f"MiniSom {self.rows}x{self.cols}", total=run)
        history: list[dict[str, float]] = []
        step_block = max(1, run // 100)
        for t in range(run):
            xi = x[order[t]]
            som.update(xi, som.winner(xi), t, total)
            if (t + 1) % step_block == 0:
                task.advance(step_block)
            if (t + 1) % n == 0 and t + 1 < run:
                w = som.get_weights().reshape(-1, x.shape[1])
                entry = {"epoch": (t + 1) // n, "step": t + 1, **self._errors(w, x, grid)}
                history.append(entry)
                if callback is not None:
                    callback(entry)
        task.close()
        self.train_seconds_ = time.perf_counter() - t0
        self.weights_ = som.get_weights().reshape(-1, x.shape[1]).astype(np.float32)
        self.grid_ = grid
        history.append({"epoch": run / n, "step": run, **self._errors(self.weights_, x, grid)})
        self.history_ = history
        self.n_epochs_ = run / n
        self.steps_ = run
        self.minisom_ = som
        return self

    @staticmethod
    def _errors(w: np.ndarray, x: np.ndarray, grid: SomGrid) -> dict[str, float]:
        bmu, bmu2, dist = best_units(w, x)
        return epoch_metrics(grid, bmu, bmu2, dist)


# --------------------------------------------------------------------------------------
# the train-som stage
# --------------------------------------------------------------------------------------


def make_engine(config: Any) -> BatchSOM | MiniSomEngine:
    """The engine a :class:`~fmnist_cluster.config.SomConfig` describes."""
    m, t = config.som, config.train
    if m.engine == "batch":
        return BatchSOM(
            rows=m.rows,
            cols=m.cols,
            topology=m.topology,
            neighbourhood=m.neighbourhood,
            sigma=m.sigma,
            sigma_end=m.sigma_end,
            epochs=int(m.epochs),
            schedule=m.schedule,
            init=m.init,
            early_stop_tol=t.early_stop_tol,
            patience=t.patience,
            chunk_size=t.chunk_size,
            search_dims=t.search_dims,
            exact_epochs=t.exact_epochs,
            device=t.device,
            random_state=config.seed,
        )
    return MiniSomEngine(
        rows=m.rows,
        cols=m.cols,
        topology=m.topology,
        neighbourhood=m.neighbourhood,
        sigma=m.sigma,
        learning_rate=m.learning_rate,
        decay_function=m.decay_function,
        sigma_decay_function=m.sigma_decay_function,
        init=m.init,
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


def analyse(
    som: _SomBase,
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

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from fmnist_cluster import plots
    from fmnist_cluster.data import label_names, load_dataset

    out_dir = Path(out_dir)
    engine = make_engine(config)
    engine._check_params()
    dataset, digest = load_dataset(input_dir, "fmnist-cluster preprocess (or encode)")
    if len(dataset.x_train) == 0:
        raise FmnistError(
            f"{Path(input_dir) / 'data.npz'} has no training samples; run preprocess on a non-empty source"
        )
    x_fit, y_fit = _fit_data(dataset, config.train.pool)
    x_test = flatten(dataset.x_test)
    y_test = dataset.y_test
    if config.train.limit is not None and config.train.limit < len(x_fit):
        pick = np.sort(np.random.default_rng(config.seed).choice(len(x_fit), config.train.limit, replace=False))
        x_fit = x_fit[pick]
        y_fit = None if y_fit is None else y_fit[pick]
    if resume and config.som.engine != "batch":
        raise FmnistError("--resume works with som.engine 'batch' only (MiniSom has no per-epoch checkpoint)")
    ckpt = out_dir / CHECKPOINT
    if resume and not ckpt.is_file():
        warnings.warn(f"--resume: no checkpoint in {out_dir}; training from the start", SomWarning, stacklevel=2)
    with user_errors("train.device"):
        resolve_device(config.train.device)
    torch.manual_seed(config.seed)
    with StageRun("train-som", out_dir, config.model_dump(mode="json"), seed=config.seed) as run:
        run.add_input(Path(input_dir) / "data.npz", digest)
        with run.timer("train"):
            if isinstance(engine, BatchSOM):
                engine.fit(x_fit, progress=progress, checkpoint=ckpt, resume=resume)
            else:
                engine.fit(x_fit, progress=progress)
        with run.timer("analyse"):
            n_classes = dataset.n_classes
            units = getattr(engine, "fit_units_", None)
            metrics, arrays = analyse(engine, x_fit, y_fit, x_test, y_test, n_classes, config.train.chunk_size, units)
            if config.train.pool:  # the test rows were trained on: their scores are in-sample, and say so
                for key in [k for k in ("test_qe", "test_te", "test_accuracy") if k in metrics]:
                    metrics[f"{key}_in_sample"] = metrics.pop(key)
        metrics = {
            "engine": config.som.engine,
            "n_fit": len(x_fit),
            "n_test": len(x_test),
            "pooled": config.train.pool,
            "test_is_held_out": not config.train.pool,
            "in_sample": ["qe", "te", "train_accuracy"]
            + ([f"{k}_in_sample" for k in ("test_qe", "test_te", "test_accuracy")] if config.train.pool else []),
            "n_features": int(x_fit.shape[1]),
            "epochs_run": engine.n_epochs_,
            "train_seconds": round(engine.train_seconds_, 3),
            **metrics,
            "history": engine.history_,
        }
        with run.timer("figures"):
            names = label_names(n_classes, dataset.class_names)
            _save_figures(run, plots, config, engine, arrays, metrics, names, x_fit, dataset.is_image)
        run.save_npz("som.npz", **{k: v for k, v in arrays.items() if k not in ("bmu_fit", "dist_fit")})
        run.save_json("metrics.json", metrics)
        run.commit()
    ckpt.unlink(missing_ok=True)
    return metrics


def _save_figures(
    run: StageRun,
    plots: Any,
    config: Any,
    engine: _SomBase,
    arrays: dict[str, np.ndarray],
    metrics: dict[str, Any],
    names: list[str],
    x_fit: np.ndarray,
    is_image: bool,
) -> None:
    grid = engine.grid_
    png = plots.figure_png
    title = f"{config.som.engine} {grid.rows}x{grid.cols} {grid.topology}"
    run.save_bytes("history.png", png(plots.som_history(engine.history_, title)))
    run.save_bytes(
        "u_matrix.png",
        png(plots.som_u_matrix(arrays["u_matrix"], grid.coords, grid.topology, arrays.get("dominant"), names, title)),
    )
    run.save_bytes("hit_map.png", png(plots.som_hit_map(arrays["hits"], grid.coords, grid.topology, title)))
    run.save_bytes(
        "outliers.png",
        png(plots.som_outliers(arrays["hits"], arrays["outliers"], grid.cols, *metrics["outlier_fences"])),
    )
    run.save_text(
        "outlier_neurons.csv",
        "neuron,row,col,hits\n"
        + "".join(f"{k},{k // grid.cols},{k % grid.cols},{arrays['hits'][k]}\n" for k in arrays["outliers"]),
    )
    if "dominant" in arrays:
        run.save_bytes(
            "labels_map.png",
            png(plots.som_labels_map(arrays["dominant"], arrays["purity"], grid.coords, grid.topology, names, title)),
        )
    if x_fit.shape[1] == 784:
        run.save_bytes("prototypes.png", png(plots.som_prototypes(engine.weights_, grid.rows, grid.cols)))
        if is_image:
            chosen = _winner_neurons(config.analysis.winner_neurons, arrays["hits"])
            groups = []
            for k in chosen:
                members = np.nonzero(arrays["bmu_fit"] == k)[0]
                members = members[np.argsort(arrays["dist_fit"][members], kind="stable")]
                groups.append((k, x_fit[members[: config.analysis.n_winner_samples]], len(members)))
            run.save_bytes("winners.png", png(plots.som_winner_samples(groups, grid.cols)))
            n = min(config.analysis.n_largest_qe, len(x_fit))
            worst = np.argsort(-arrays["dist_fit"], kind="stable")[:n]
            titles = [f"qe {arrays['dist_fit'][i]:.2f}" for i in worst]
            run.save_bytes(
                "largest_qe.png",
                png(
                    plots.montage(
                        x_fit[worst], titles, ncols=10, suptitle=f"{n} samples with the largest quantisation error"
                    )
                ),
            )
