"""Kohonen's batch map in torch: chunked winner search (bounded memory), a sigma schedule,
PCA or random initialisation, CPU or CUDA, deterministic for a seed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh

from fmnist_cluster.device import resolve_device
from fmnist_cluster.params import check_choice, check_positive
from fmnist_cluster.som.base import SomEstimator, Step
from fmnist_cluster.som.grid import (
    BATCH_NEIGHBOURHOODS,
    SCHEDULES,
    SomGrid,
    _as_tensor,
    best_units,
    epoch_metrics,
    flush_subnormal,
    neighbourhood,
    sigma_schedule,
    two_smallest,
)

_CHUNK = 8192


def _scatter(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the rows (float64) and their scatter matrix ``sum_n (x_n - mean)(x_n - mean)^T``,
    float32 products of chunks of rows summed in float64."""
    mean = x.sum(0, dtype=torch.float64) / len(x)
    centre = mean.float()
    scatter = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for s in range(0, len(x), _CHUNK):
        c = x[s : s + _CHUNK].float() - centre
        scatter += (c.T @ c).double()
    return mean, scatter


def _top_eigen(m: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenvalues of the symmetric ``m`` and their eigenvectors (columns),
    largest first."""
    d = m.shape[0]
    vals, vecs = eigh(m.numpy(), subset_by_index=[d - k, d - 1])
    return torch.from_numpy(vals[::-1].copy()), torch.from_numpy(vecs[:, ::-1].copy())


def _pca_weights(moments: tuple[torch.Tensor, torch.Tensor], n: int, grid: SomGrid) -> torch.Tensor:
    """Weights spread over the plane of the first two principal components of ``n`` rows with
    ``moments`` (:func:`_scatter`), scaled by their standard deviations (grid positions mapped
    to [-2, 2] standard deviations)."""
    mean, scatter = moments
    vals, vecs = _top_eigen(scatter / max(n - 1, 1), 2)
    vals = vals.clamp_min(0)
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

    def __init__(
        self, x: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor], dims: int, dev: torch.device
    ) -> None:
        mean, scatter = moments
        _, vecs = _top_eigen(scatter, min(dims, scatter.shape[0]))
        self.mean = mean.float().to(dev)
        self.basis = vecs.float().to(dev)
        self.rows = torch.cat([self.project(x[s : s + _CHUNK].to(dev)) for s in range(0, len(x), _CHUNK)])

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return (v.float() - self.mean) @ self.basis


def _axis_distances(n: int, dev: torch.device) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float32, device=dev)
    return (i[:, None] - i[None, :]).abs()


def _neighbourhood_sums(
    sums: torch.Tensor, counts: torch.Tensor, grid: SomGrid, sigma: float, kind: str, gd: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h @ sums`` and ``h @ counts`` for the (K, K) neighbourhood matrix ``h`` of ``grid``.

    A gaussian on a rectangular grid is separable, exp(-(di^2 + dj^2) / 2 sigma^2) = exp(-di^2 /
    2 sigma^2) exp(-dj^2 / 2 sigma^2), so it is applied along the columns, then along the rows:
    O(K (rows + cols) D) instead of O(K^2 D). ``gd`` (the grid distances) serves the other cases.
    """
    if kind == "gaussian" and grid.topology == "rectangular":
        r, c, d = grid.rows, grid.cols, sums.shape[1]
        hr = neighbourhood(_axis_distances(r, sums.device), sigma, kind)
        hc = neighbourhood(_axis_distances(c, sums.device), sigma, kind)
        num = (hr @ (hc @ sums.view(r, c, d)).reshape(r, c * d)).reshape(r * c, d)
        return num, (hr @ counts.view(r, c) @ hc).reshape(-1)
    h = neighbourhood(gd, sigma, kind)
    return h @ sums, h @ counts


class BatchSOM(SomEstimator):
    """Kohonen's batch self-organising map, vectorised in torch.

    Each epoch finds every sample's winning neuron (in chunks, so memory stays at
    ``chunk_size x K``), then sets each neuron to the neighbourhood-weighted mean of the
    samples: ``w_k = sum_n h(k, bmu_n) x_n / sum_n h(k, bmu_n)``. The neighbourhood width
    shrinks from ``sigma`` to ``sigma_end`` over the epochs. The same winner search also
    gives the epoch's quantisation and topographic errors, so metrics cost nothing extra.

    A scikit-learn estimator (see :class:`~fmnist_cluster.som.base.SomEstimator`): keyword-only
    hyperparameters, checked by ``fit`` (``ValueError``, ``TypeError``); ``predict`` gives each
    row's winning neuron, ``transform`` its grid position; :meth:`iter_fit` trains epoch by epoch.

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
    exact_candidates : int
        0: the exact epochs compare every row with every neuron. ``c >= 2`` (with
        ``search_dims > 0``): they take the ``c`` best neurons of the subspace search and
        keep the two nearest by exact distance (60,000 Fashion-MNIST images, 50 x 50, p = 64,
        c = 8: 0.56 s per epoch instead of 1.2-1.7 s on 2 cores, and about 1 row in 700 misses
        its exact winner). The final metrics are always searched exactly.
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
        *,
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
        exact_candidates: int = 0,
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
        self.schedule = schedule
        self.init = init
        self.early_stop_tol = early_stop_tol
        self.patience = patience
        self.chunk_size = chunk_size
        self.search_dims = search_dims
        self.exact_epochs = exact_epochs
        self.exact_candidates = exact_candidates
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        self._check_shared_params()
        check_choice("neighbourhood", self.neighbourhood, BATCH_NEIGHBOURHOODS)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "chunk_size", "patience"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("sigma_end", self.sigma_end)
        if self.sigma is not None and self.sigma < self.sigma_end:
            raise ValueError(f"sigma ({self.sigma}) must be >= sigma_end ({self.sigma_end}) > 0")
        for name in ("search_dims", "exact_epochs", "exact_candidates"):
            check_positive(name, getattr(self, name), integer=True, zero=True)
        if self.exact_candidates == 1:
            raise ValueError(f"exact_candidates must be 0 or >= 2, got {self.exact_candidates}")
        if self.early_stop_tol is not None:
            check_positive("early_stop_tol", self.early_stop_tol, zero=True)

    def sigmas(self) -> np.ndarray:
        """Neighbourhood width of each epoch."""
        return sigma_schedule(self._start_sigma(), self.sigma_end, self.epochs, self.schedule)

    def init_weights(self, X: np.ndarray) -> np.ndarray:
        """Initial weights (K, D) for data ``X`` (PCA plane or random samples)."""
        self._check_params()
        return self._init_weights(_as_tensor(self._check_x(X, fitted=False)), None)

    def _uses_pca_init(self, xt: torch.Tensor) -> bool:
        return self.init == "pca" and xt.shape[1] >= 2 and len(xt) >= 2

    def _init_weights(self, xt: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor] | None) -> np.ndarray:
        grid = SomGrid(self.rows, self.cols, self.topology)
        if self._uses_pca_init(xt):
            return _pca_weights(moments or _scatter(xt), len(xt), grid).numpy()
        gen = torch.Generator().manual_seed(int(self.random_state))
        pick = torch.randint(len(xt), (grid.n_neurons,), generator=gen)
        return xt[pick].clone().numpy()

    def iter_fit(
        self, X: np.ndarray, y: Any = None, *, resume_from: tuple[np.ndarray, list[dict[str, Any]]] | None = None
    ) -> Iterator[Step]:
        """Train on ``X`` (N, D) epoch by epoch; :meth:`fit` runs this to its end.

        Yields a :class:`Step` before the first epoch and one after every epoch (with the
        epoch's ``history_`` entry and the updated weights); the fitted attributes are set
        when the generator is exhausted. Stopping early leaves the estimator unfitted.

        Parameters
        ----------
        X : ndarray (N, D)
        y : ignored
        resume_from : (weights, history), optional
            Weights (K, D) after the epochs ``history`` lists and those entries: training goes
            on from there, and the result equals an uninterrupted run.
        """
        self._check_params()
        t0 = time.perf_counter()
        x = self._check_x(X, fitted=False)
        dev = resolve_device(self.device)
        grid = SomGrid(self.rows, self.cols, self.topology)
        sigmas = self.sigmas()
        start_epoch = 0 if resume_from is None else len(resume_from[1])
        x_cpu = _as_tensor(x)
        searched = 0 < self.search_dims < x.shape[1]
        searched &= self.epochs - start_epoch > self.exact_epochs or self.exact_candidates > 0
        fresh_pca = resume_from is None and self._uses_pca_init(x_cpu)
        moments = _scatter(x_cpu) if searched or fresh_pca else None  # shared by the PCA init and the subspace
        if resume_from is not None:
            weights, history = np.asarray(resume_from[0], dtype=np.float32), list(resume_from[1])
            if weights.shape != (grid.n_neurons, x.shape[1]):
                raise ValueError(
                    f"resume weights have shape {weights.shape}; this map and data need {(grid.n_neurons, x.shape[1])}"
                )
        else:
            weights, history = self._init_weights(x_cpu, moments), []
        xt = x_cpu.to(dev) if dev.type == "cuda" else x_cpu
        w = torch.from_numpy(weights).to(dev)
        separable = self.neighbourhood == "gaussian" and grid.topology == "rectangular"
        gd = None if separable else torch.from_numpy(grid.distances()).to(dev, torch.float32)
        yield Step(start_epoch, self.epochs)
        stalled = 0
        sub = _Subspace(x_cpu, moments, self.search_dims, dev) if searched and moments is not None else None
        for epoch in range(start_epoch, self.epochs):
            exact = sub is None or epoch >= self.epochs - self.exact_epochs
            candidates = self.exact_candidates if exact else 0
            approx = sub if (sub is not None and (not exact or candidates > 0)) else None
            sums, counts, bmu, bmu2, dist = self._accumulate(xt, w, dev, approx, candidates)
            entry = {"epoch": epoch, "sigma": float(sigmas[epoch]), **epoch_metrics(grid, bmu, bmu2, dist)}
            if sub is not None:
                entry["search"] = self._search_label(approx, candidates)
            history.append(entry)
            num, den = _neighbourhood_sums(sums, counts, grid, float(sigmas[epoch]), self.neighbourhood, gd)
            ok = den > 1e-12
            w = flush_subnormal(torch.where(ok[:, None], num / den.clamp_min(1e-12)[:, None], w))
            yield Step(epoch + 1, self.epochs, entry, w.cpu().numpy())
            if self.early_stop_tol is not None and len(history) >= 2:
                prev = history[-2]["qe"]
                stalled = stalled + 1 if (prev - entry["qe"]) < self.early_stop_tol * prev else 0
                if stalled >= self.patience:
                    break
        self.train_seconds_ = time.perf_counter() - t0
        n_run = len(history)
        bmu, bmu2, dist = best_units(w, xt, self.chunk_size, dev)
        history.append({"epoch": n_run, "sigma": None, **epoch_metrics(grid, bmu, bmu2, dist)})
        self.fit_units_ = (bmu, bmu2, dist)
        self.weights_ = w.cpu().numpy()
        self.grid_ = grid
        self.history_ = history
        self.n_epochs_ = n_run

    def _search_label(self, sub: _Subspace | None, candidates: int) -> str:
        if sub is None:
            return "exact"
        return f"pca{self.search_dims}, exact among {candidates}" if candidates else f"pca{self.search_dims}"

    def _accumulate(
        self, xt: torch.Tensor, w: torch.Tensor, dev: torch.device, sub: _Subspace | None = None, candidates: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        """Sums and counts of the rows each neuron wins, with every row's best and second-best
        unit and distance to the best; ``sub``: search the subspace, and with ``candidates``
        >= 2 re-rank that many of its best units by exact distance."""
        k = w.shape[0]
        sums = torch.zeros_like(w)
        counts = torch.zeros(k, dtype=w.dtype, device=dev)
        n = xt.shape[0]
        bmu = np.empty(n, np.int64)
        bmu2 = np.full(n, -1, np.int64)
        dist = np.empty(n, np.float64)
        ws = sub.project(w) if sub is not None else w
        wn = (ws * ws).sum(1)
        w_norms = (w * w).sum(1)
        rerank = sub is not None and candidates >= 2
        for s in range(0, n, self.chunk_size):
            xc = xt[s : s + self.chunk_size].to(dev, torch.float32)
            xs = sub.rows[s : s + self.chunk_size] if sub is not None else xc
            d = torch.addmm(wn, xs, ws.T, alpha=-2.0)
            if k > 1 and rerank:
                _, idx = torch.topk(d, min(candidates, k), dim=1, largest=False, sorted=True)
                # exact squared distances (less |x|^2) to the candidates, the best two kept
                exact = w_norms[idx] - 2.0 * torch.bmm(w[idx], xc[:, :, None]).squeeze(2)
                idx = torch.gather(idx, 1, torch.topk(exact, 2, dim=1, largest=False, sorted=True).indices)
                b1, b2 = idx[:, 0], idx[:, 1]
            elif k > 1:
                b1, b2 = two_smallest(d)
            else:
                b1, b2 = d.argmin(1), None
            if b2 is not None:
                bmu2[s : s + len(xc)] = b2.cpu().numpy()
            sums.index_add_(0, b1, xc)
            counts += torch.bincount(b1, minlength=k).to(w.dtype)
            bmu[s : s + len(xc)] = b1.cpu().numpy()
            dist[s : s + len(xc)] = torch.linalg.vector_norm(xc - w[b1], dim=1).double().cpu().numpy()
        return sums, counts, bmu, bmu2, dist
