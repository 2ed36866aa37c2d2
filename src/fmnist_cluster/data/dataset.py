"""The in-memory data set every stage passes around, and the checks every loader shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist_cluster.errors import FmnistError

DATA_FILE = "data.npz"
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
MAX_LABEL = 999
"""Largest label any stage accepts (K <= 1000): one bound, checked where labels enter."""


@dataclass
class Dataset:
    """Images or features with labels, as stored in ``data.npz``.

    Attributes
    ----------
    x_train, x_test : ndarray of float32
        Images shaped (N, 1, 28, 28) or features shaped (N, D).
    y_train, y_test : ndarray of int64 or None
        Labels 0..K-1 (None where an artefact has none).
    class_names : tuple of str or None
        Names of labels 0..K-1 where known (Fashion-MNIST), None for mystery labels.
    layer : str or None
        For encodings, the network layer the features were taken from.
    """

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    class_names: tuple[str, ...] | None = None
    layer: str | None = None

    @property
    def n_classes(self) -> int:
        """K: one more than the largest label in either split."""
        labels = [y for y in (self.y_train, self.y_test) if y is not None and y.size]
        return int(max(int(y.max()) for y in labels)) + 1 if labels else 0

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"x_train": self.x_train, "x_test": self.x_test}
        if self.y_train is not None:
            arrays["y_train"] = self.y_train
        if self.y_test is not None:
            arrays["y_test"] = self.y_test
        if self.class_names is not None:
            arrays["class_names"] = np.array(self.class_names, dtype=str)
        if self.layer is not None:
            arrays["layer"] = np.array(self.layer, dtype=str)
        return arrays

    @classmethod
    def from_pixels(cls, arrays: Mapping[str, np.ndarray], class_names: tuple[str, ...] | None) -> Dataset:
        """A data set of 8-bit images: ``x_train``/``x_test`` uint8 (N, 28, 28) become float32
        (N, 1, 28, 28) in [0, 1]; ``y_train``/``y_test`` are kept."""
        return cls(
            x_train=to_float_images(arrays["x_train"]),
            y_train=arrays["y_train"],
            x_test=to_float_images(arrays["x_test"]),
            y_test=arrays["y_test"],
            class_names=class_names,
        )


def label_names(n_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """Names of labels 0..K-1: the class names where known, else ``label k`` (mystery labels)."""
    if class_names is not None and len(class_names) >= n_classes:
        return [str(n) for n in class_names[:n_classes]]
    return [f"label {k}" for k in range(n_classes)]


def check_labels(labels: np.ndarray, path: Path | str, max_label: int = MAX_LABEL) -> None:
    """The one range check of labels wherever they enter: integers in ``0..max_label``.

    Raises
    ------
    FmnistError
        A negative label or one above ``max_label`` (by default :data:`MAX_LABEL`), named with its file.
    """
    if labels.size and labels.min() < 0:
        raise FmnistError(f"{path} holds label {int(labels.min())}; labels must be integers in 0..{max_label}")
    if labels.size and labels.max() > max_label:
        raise FmnistError(
            f"{path} holds label {int(labels.max())}; labels must be integers in 0..{max_label} "
            f"(at most {max_label + 1} labels)"
        )


def to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) as float32 (N, 1, 28, 28) in [0, 1]."""
    return (images.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


def data_folder(folder: Path | str, holding: str) -> Path:
    """``folder`` as a path, checked to be a folder; ``holding`` says what it should hold.

    Raises
    ------
    FmnistError
        The folder does not exist (the message asks for ``--path``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FmnistError(f"data folder {folder} does not exist; pass the folder holding {holding} with --path")
    return folder
