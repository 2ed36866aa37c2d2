"""What both engines share: the scikit-learn estimator base, the checks of the shared
hyperparameters and of the data, the fitted state and the methods that use it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from fmnist_cluster.config.som import INITS
from fmnist_cluster.params import check_choice, check_positive, check_seed
from fmnist_cluster.som.grid import (
    TOPOLOGIES,
    SomGrid,
    best_units,
    quantization_error,
    topographic_error,
)


@dataclass(frozen=True)
class Step:
    """What an engine's ``iter_fit`` yields while it trains.

    Attributes
    ----------
    done, total : int
        Work done so far and in all (epochs of the batch map, single-sample updates of MiniSom).
    entry : dict or None
        At the end of an epoch, its ``history_`` entry; otherwise None.
    weights : ndarray (K, D) or None
        With ``entry``: the map's weights at that point (a checkpoint's content).
    """

    done: int
    total: int
    entry: dict[str, Any] | None = None
    weights: np.ndarray | None = field(default=None, repr=False)


class SomEstimator(TransformerMixin, BaseEstimator):
    """Base of the engines, following scikit-learn's contract: hyperparameters are stored as
    given and checked by ``fit`` (``ValueError``/``TypeError``), ``fit`` runs ``iter_fit`` to its
    end and returns ``self``, learned state ends in ``_``, ``clone`` works. ``predict`` gives each
    row's winning neuron and ``transform`` its grid position.

    ``iter_fit`` is the epoch-by-epoch form of ``fit``: the ``train-som`` stage's trainer
    (:func:`fmnist_cluster.som.trainer.train`) drives it to report progress, write checkpoints
    and resume, which ``fit`` itself never does.

    Attributes
    ----------
    weights_ : ndarray (rows * cols, D)
    grid_ : SomGrid
    history_ : list of dict
    """

    weights_: np.ndarray
    grid_: SomGrid
    history_: list[dict[str, Any]]

    def iter_fit(self, X: np.ndarray, y: Any = None) -> Iterator[Step]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: Any = None) -> SomEstimator:
        """Train the map on ``X`` (N, D); ``y`` is ignored. Returns ``self``."""
        for _ in self.iter_fit(X):
            pass
        return self

    def _check_shared_params(self) -> None:
        check_choice("topology", self.topology, TOPOLOGIES)
        check_choice("init", self.init, INITS)
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"map size {self.rows}x{self.cols} is empty; rows and cols must be >= 1")
        if self.sigma is not None:
            check_positive("sigma", self.sigma)
        check_seed("random_state", self.random_state)

    def _start_sigma(self) -> float:
        """``sigma``, or half the longer map side when it is None."""
        return self.sigma if self.sigma is not None else max(self.rows, self.cols) / 2

    def _check_x(self, X: np.ndarray, fitted: bool = True) -> np.ndarray:
        """``X`` as a float32 (N, D) array; with ``fitted`` also as wide as the trained map."""
        if fitted:
            check_is_fitted(self, "weights_")
        if np.iscomplexobj(X):
            raise ValueError("features are complex numbers; give real values")
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
            x = np.asarray(X, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
            raise ValueError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features hold NaN or infinite values (or values too large for float32)")
        if fitted:
            if x.shape[1] != self.weights_.shape[1]:
                raise ValueError(
                    f"features have {x.shape[1]} columns but the map was trained on {self.weights_.shape[1]}"
                )
        return x

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index of the winning neuron of each row, shape (N,) int64."""
        x = self._check_x(X)
        return best_units(self.weights_, x, second=False)[0]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Grid position (x, y) of each row's winning neuron, shape (N, 2): the map as a 2-D embedding."""
        winners = self.predict(X)  # checks that the map is fitted first
        return self.grid_.coords[winners]

    def quantization_error(self, X: np.ndarray) -> float:
        """Mean distance of each row to its winning neuron."""
        x = self._check_x(X)
        return quantization_error(self.weights_, x)

    def topographic_error(self, X: np.ndarray) -> float:
        """Share of rows whose two best neurons are not grid neighbours."""
        x = self._check_x(X)
        return topographic_error(self.weights_, x, self.grid_)
