"""What both engines share: the allowed initialisations, the fitted state and the metric
methods (``weights_`` is (K, D))."""

from __future__ import annotations

import numpy as np

from fmnist_cluster.errors import FmnistError
from fmnist_cluster.som.grid import SomGrid, best_units, quantization_error, topographic_error

INITS = ("pca", "random")


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
