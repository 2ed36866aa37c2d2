"""The evidence the explainer weighs (:class:`Evidence`: labels, image properties, pixels and
classes of both splits) and gathering it from artefact folders.

* **pixels** come from a ``preprocess`` folder (the ``cluster`` input itself when it holds
  images, else ``--images`` or the folder recorded in the input's manifest). Properties are computed only
  when the pixels are the original 8-bit values (no deskew, centring or standardisation);
* **classes** come from ``--originals`` (exact image content, via
  :class:`~fmnist_cluster.decode.ContentMatcher`) or ``--reference`` (a 10-class model's
  predictions); content decides when at least half of the images are found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress
from fmnist_cluster.config import DecodeConfig
from fmnist_cluster.data import DATA_FILE, Dataset, load_dataset
from fmnist_cluster.decode import ContentMatcher, load_originals, reference_predict
from fmnist_cluster.errors import FmnistError, user_errors
from fmnist_cluster.explain.properties import image_properties, pixel_index, to_pixel_scale


@dataclass
class Evidence:
    """What is known of every row of both splits.

    Attributes
    ----------
    y_train, y_test : ndarray of int64
        The mystery labels.
    properties_train, properties_test : dict of str to ndarray
        Image properties (empty when the pixels are not available on the 0..255 scale).
    pixels_train, pixels_test : ndarray (N, 784) of whole numbers in 0..255, or None
        The pixels themselves, from which single pixels are screened as properties.
    class_train, class_test : ndarray of int64 or None
        Fashion-MNIST class of every row (-1 unknown), None without class evidence.
    class_names : tuple of str
    class_source : str or None
        ``content`` or ``reference``.
    notes : list of str
        Why a family could not be tried.
    """

    y_train: np.ndarray
    y_test: np.ndarray
    properties_train: dict[str, np.ndarray] = field(default_factory=dict)
    properties_test: dict[str, np.ndarray] = field(default_factory=dict)
    class_train: np.ndarray | None = None
    class_test: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    class_source: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
    pixels_train: np.ndarray | None = None
    pixels_test: np.ndarray | None = None

    def values(self, name: str, split: str) -> np.ndarray:
        """Property ``name`` of every row of ``split`` ('train' or 'test'): an image property,
        or a pixel (``pixel_rR_cC``) read from the pixels."""
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; valid: train, test")
        named = self.properties_train if split == "train" else self.properties_test
        if name in named:
            return named[name]
        index = pixel_index(name)
        pixels = self.pixels_train if split == "train" else self.pixels_test
        if index is None or pixels is None:
            raise KeyError(f"no property {name!r} in the evidence")
        return np.asarray(pixels).reshape(len(pixels), -1)[:, index].astype(np.float64)


_PRODUCER = "fmnist-cluster preprocess"


def _pixels(folder: Path) -> tuple[Dataset, str]:
    dataset, digest = load_dataset(folder, _PRODUCER)
    if not dataset.is_image:
        raise FmnistError(f"{folder} holds features, not images; pass a preprocess output folder to --images")
    if dataset.y_train is None or dataset.y_test is None:
        raise FmnistError(f"{folder} has no labels in both splits; explaining labels needs a mystery-labelled set")
    return dataset, digest


def gather(
    folder: Path,
    originals_dir: Path | str | None,
    reference_dir: Path | str | None,
    decode: DecodeConfig,
    progress: Progress = NULL_PROGRESS,
) -> tuple[Evidence, dict[str, Any]]:
    """Everything known of the rows of both splits of the images in ``folder``.

    Parameters
    ----------
    folder : Path
        A ``preprocess`` folder of mystery-labelled images.
    originals_dir, reference_dir : path or None
        Class evidence: the original 10-class data, or a 10-class ``train-cnn`` model.
    decode : DecodeConfig
        Batch size and device of the reference model.

    Returns
    -------
    (Evidence, dict)
        The evidence, and ``inputs`` (files read with their sha256), ``images`` (the pixel
        dataset) for figures, ``match_rate`` with ``--originals``.

    Raises
    ------
    FmnistError
        A folder without images or labels, or unreadable class evidence.
    """
    dataset, digest = _pixels(folder)
    assert dataset.y_train is not None and dataset.y_test is not None
    evidence = Evidence(y_train=dataset.y_train, y_test=dataset.y_test)
    extra: dict[str, Any] = {"inputs": {str(folder / DATA_FILE): digest}, "images": dataset}
    task = progress.task("gathering evidence", total=3)
    pixels_train, exact_train = to_pixel_scale(dataset.x_train)
    pixels_test, exact_test = to_pixel_scale(dataset.x_test)
    if exact_train and exact_test:
        evidence.properties_train = image_properties(pixels_train)
        evidence.properties_test = image_properties(pixels_test)
        evidence.pixels_train = pixels_train.reshape(len(pixels_train), -1).astype(np.uint8)
        evidence.pixels_test = pixels_test.reshape(len(pixels_test), -1).astype(np.uint8)
    else:
        evidence.notes["properties"] = (
            f"skipped: the images in {folder} are not the original 8-bit pixels (deskew, center or standardize); "
            "pass an untransformed preprocess folder to --images"
        )
    task.advance(1)
    if originals_dir is not None:
        originals, classes, names, originals_digest = load_originals(Path(originals_dir))
        extra["inputs"][str(Path(originals_dir) / DATA_FILE)] = originals_digest
        with user_errors("--originals"):
            matcher = ContentMatcher(n_classes=len(names)).fit(originals, classes)
            found_train, found_test = matcher.predict(dataset.x_train), matcher.predict(dataset.x_test)
        rate = float(np.mean(np.concatenate([found_train, found_test]) >= 0))
        extra["match_rate"] = round(rate, 4)
        if rate >= 0.5 or reference_dir is None:
            evidence.class_train, evidence.class_test = found_train, found_test
            evidence.class_names, evidence.class_source = tuple(names), "content"
    task.advance(1)
    if evidence.class_source is None and reference_dir is not None:
        evidence.class_train, names = reference_predict(dataset.x_train, reference_dir, decode)
        evidence.class_test, _ = reference_predict(dataset.x_test, reference_dir, decode)
        evidence.class_names, evidence.class_source = tuple(names), "reference"
    task.advance(1)
    task.close()
    return evidence, extra
