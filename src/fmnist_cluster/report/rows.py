"""The images behind the rows of a ``cluster`` or ``embed`` run, as 8-bit 28×28 arrays.

Both stages record their rows (``input_sha256``, ``split``, ``n`` in their ``metrics.json``) and,
in their manifest, the input file with that sha256; the images are found the way ``cluster`` finds them
(:func:`fmnist_cluster.features.load_features`: pixels are their own images, an encoding names
its ``preprocess`` folder in its manifest). When the input moved or changed, there are none.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fmnist_cluster.artefacts import read_manifest
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.report.document import Section


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


def rows_file(sec: Section) -> str | None:
    """The file a ``cluster`` or ``embed`` run read its rows from: the input of its manifest
    with the sha256 its ``metrics.json`` records (None when there is none)."""
    digest = sec.metrics.get("input_sha256")
    inputs = sec.manifest.get("inputs")
    if not isinstance(digest, str) or not isinstance(inputs, dict):
        return None
    return next((str(path) for path, d in inputs.items() if d == digest), None)


class RowImages:
    """Finds and caches the images of the rows of a ``cluster`` or ``embed`` section."""

    def __init__(self, inputs: dict[str, str]) -> None:
        self._inputs = inputs
        self._cache: dict[tuple[str, str], np.ndarray | None] = {}
        self._names: dict[tuple[str, str], tuple[str, ...] | None] = {}
        self._sources: dict[tuple[str, str], set[str]] = {}

    @staticmethod
    def _key(sec: Section) -> tuple[str, str]:
        return str(rows_file(sec)), str(sec.metrics.get("split"))

    def class_names(self, sec: Section) -> tuple[str, ...] | None:
        """Class names of the rows' labels, when the data has them (call after ``__call__``)."""
        return self._names.get(self._key(sec))

    def sources(self, sec: Section) -> set[str]:
        """sha256 of the rows' input file and of every file its manifest lists as an input."""
        return self._sources.get(self._key(sec), set())

    def __call__(self, sec: Section) -> np.ndarray | None:
        """(N, 28, 28) uint8 images of the rows, or None when they cannot be found."""
        from fmnist_cluster.features import load_features
        from fmnist_cluster.plots import as_images

        metrics = sec.metrics
        raw, split = rows_file(sec), metrics.get("split")
        if raw is None or not isinstance(split, str):
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
