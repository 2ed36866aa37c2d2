"""MiniSom behind the engine interface (online updates, one sample at a time)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from fmnist_cluster.config.som import LR_DECAYS, NEIGHBOURHOODS, ORDERS, SIGMA_DECAYS
from fmnist_cluster.params import check_choice, check_positive
from fmnist_cluster.som.base import SomEstimator, Step
from fmnist_cluster.som.grid import SomGrid, best_units, epoch_metrics

MINISOM_NEIGHBOURHOODS = NEIGHBOURHOODS


class MiniSomEngine(SomEstimator):
    """MiniSom behind the engine interface (online updates, one sample at a time), a
    scikit-learn estimator like :class:`~fmnist_cluster.som.batch.BatchSOM`.

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
    init_seconds_ : float
        Time of the weight initialisation (part of ``train_seconds_``).
    steps_ : int
        Single-sample updates run.
    minisom_ : minisom.MiniSom
        The trained MiniSom.
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
        self._check_shared_params()
        check_choice("neighbourhood", self.neighbourhood, MINISOM_NEIGHBOURHOODS)
        check_choice("decay_function", self.decay_function, LR_DECAYS)
        check_choice("sigma_decay_function", self.sigma_decay_function, SIGMA_DECAYS)
        check_choice("order", self.order, ORDERS)
        if self.steps is not None:
            check_positive("steps", self.steps, integer=True)
        check_positive("epochs", self.epochs)
        check_positive("learning_rate", self.learning_rate)

    def build(self, n_features: int) -> Any:
        """A fresh ``minisom.MiniSom`` with these settings."""
        from minisom import MiniSom

        self._check_params()
        sigma = self._start_sigma()
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

    def iter_fit(self, X: np.ndarray, y: Any = None) -> Iterator[Step]:
        """Train with MiniSom's own update rule; :meth:`fit` runs this to its end.

        Yields a :class:`Step` before the first update, after every hundredth of the updates
        and at the end of every full pass but the last (with that pass's ``history_`` entry and
        the weights); the fitted attributes are set when the generator is exhausted.
        """
        self._check_params()
        x32 = self._check_x(X, fitted=False)
        x = x32.astype(np.float64)  # MiniSom's own arithmetic
        t0 = time.perf_counter()
        som = self.build(x.shape[1])
        if self.init == "pca":
            som.pca_weights_init(x)
        else:
            som.random_weights_init(x)
        init_seconds = time.perf_counter() - t0
        grid = self._grid(som)
        n = len(x)
        run = int(self.steps) if self.steps is not None else max(1, round(self.epochs * n))
        order = np.arange(run) % n
        if self.order == "random":
            som._random_generator.shuffle(order)
        yield Step(0, run)
        history: list[dict[str, Any]] = []
        step_block = max(1, run // 100)
        for t in range(run):
            xi = x[order[t]]
            som.update(xi, som.winner(xi), t, run)
            entry, w = None, None
            if (t + 1) % n == 0 and t + 1 < run:
                w = som.get_weights().reshape(-1, x.shape[1])
                entry = {"epoch": (t + 1) // n, "step": t + 1, **epoch_metrics(grid, *best_units(w, x32))}
                history.append(entry)
            if entry is not None or (t + 1) % step_block == 0:
                yield Step(t + 1, run, entry, w)
        self.init_seconds_ = init_seconds
        self.train_seconds_ = time.perf_counter() - t0
        self.weights_ = som.get_weights().reshape(-1, x.shape[1]).astype(np.float32)
        self.grid_ = grid
        self.fit_units_ = best_units(self.weights_, x32)
        history.append({"epoch": run / n, "step": run, **epoch_metrics(grid, *self.fit_units_)})
        self.history_ = history
        self.n_epochs_ = run / n
        self.steps_ = run
        self.minisom_ = som
