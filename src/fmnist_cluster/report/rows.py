"""The images behind the rows of a ``cluster`` or ``embed`` run, as 8-bit 28×28 arrays.

Both stages record their input file (``input``, ``input_sha256``, ``split``, ``n`` in their
``metrics.json``); the images are found the way ``cluster`` finds them
(:func:`fmnist_cluster.features.load_features`: pixels are their own images, an encoding names
its ``preprocess`` folder in its manifest). When the input moved or changed, there are none.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import read_manifest
from fmnist_cluster.errors import FmnistError


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) images as uint8: values in [0, 1] are scaled by 255, anything else (a
    standardised set) is stretched per image to 0..255."""
    x = np.asarray(images, dtype=np.float32)
    if x.size == 0:
        return x.astype(np.uint8)
    if np.nanmin(x) >= -1e-3 and np.nanmax(x) <= 1 + 1e-3:
        return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    low = np.nanmin(x.reshape(len(x), -1), axis=1)[:, None, None]
    high = np.nanmax(x.reshape(len(x), -1), axis=1)[:, None, None]
    return np.round(255 * (x - low) / np.maximum(high - low, 1e-12)).astype(np.uint8)


class RowImages:
    """Finds and caches the images of the rows a run's ``metrics.json`` describes."""

    def __init__(self, inputs: dict[str, str]) -> None:
        self._inputs = inputs
        self._cache: dict[tuple[str, str], np.ndarray | None] = {}
        self._names: dict[tuple[str, str], tuple[str, ...] | None] = {}
        self._sources: dict[tuple[str, str], set[str]] = {}

    def class_names(self, metrics: dict[str, Any]) -> tuple[str, ...] | None:
        """Class names of the rows' labels, when the data has them (call after ``__call__``)."""
        return self._names.get((str(metrics.get("input")), str(metrics.get("split"))))

    def sources(self, metrics: dict[str, Any]) -> set[str]:
        """sha256 of the rows' input file and of every file its manifest lists as an input."""
        return self._sources.get((str(metrics.get("input")), str(metrics.get("split"))), set())

    def __call__(self, metrics: dict[str, Any]) -> np.ndarray | None:
        """(N, 28, 28) uint8 images of the rows, or None when they cannot be found."""
        from fmnist_cluster.features import load_features
        from fmnist_cluster.plots import as_images

        raw, split = metrics.get("input"), metrics.get("split")
        if not isinstance(raw, str) or not isinstance(split, str):
            return None
        key = (raw, split)
        if key not in self._cache:
            images = None
            self._names[key] = None
            self._sources[key] = {str(metrics.get("input_sha256"))}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    features = load_features(Path(raw).parent, split)
                if (
                    features.digest == metrics.get("input_sha256")
                    and features.images is not None
                    and len(features.images) == metrics.get("n")
                ):
                    images = to_uint8(as_images(features.images))
                    self._inputs[str(features.path)] = features.digest
                if features.digest == metrics.get("input_sha256"):
                    self._names[key] = features.class_names
                    manifest = read_manifest(Path(raw).parent, "fmnist-cluster encode (or preprocess)")
                    self._sources[key] |= {str(v) for v in manifest.get("inputs", {}).values()}
            except (FmnistError, OSError, ValueError):
                images = None
            self._cache[key] = images
        return self._cache[key]
