"""The shared reader of ``data.npz``: pixels from ``preprocess`` and encodings from ``encode``
are read the same way by every later stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_cluster.artefacts import load_checked_npz
from fmnist_cluster.data.dataset import DATA_FILE, Dataset, check_labels
from fmnist_cluster.errors import FmnistError

FEATURE_STAGES = ("preprocess", "encode")
"""Stages whose ``data.npz`` :func:`load_dataset` reads."""


def load_dataset(
    folder: Path | str,
    producer: str = "fmnist-cluster preprocess",
    stages: tuple[str, ...] = FEATURE_STAGES,
    option: str = "--input",
) -> tuple[Dataset, str]:
    """Load the ``data.npz`` of a ``preprocess`` or ``encode`` artefact folder.

    Parameters
    ----------
    folder : path
        The upstream output folder.
    producer : str
        The command quoted in errors when the folder is missing or incomplete.
    stages : tuple of str
        Stages whose output is accepted (default ``preprocess`` and ``encode``).
    option : str
        The option naming the folder, quoted in errors.

    Returns
    -------
    (Dataset, str)
        The data and the sha256 of ``data.npz`` (for the manifest of the reading stage).

    Raises
    ------
    FmnistError
        Missing folder, manifest or file; a folder of another stage; wrong arrays; labels out of
        range; labels and features that disagree.
    """
    path, digest, arrays = load_checked_npz(folder, DATA_FILE, producer, ("x_train", "x_test"), stages, option)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != np.float32 or x.ndim not in (2, 4):
            raise FmnistError(
                f"{path}: {name} is {x.dtype} shaped {x.shape}; expected float32 (N, D) or (N, 1, 28, 28)"
            )
        if not np.isfinite(x).all():
            raise FmnistError(f"{path}: {name} holds NaN or infinite values; run `{producer}` again")
    if len(x_train) == 0:
        raise FmnistError(
            f"{path} has no training samples (x_train has no rows); run `{producer}` on a non-empty source"
        )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise FmnistError(f"{path}: x_train rows are {x_train.shape[1:]} but x_test rows are {x_test.shape[1:]}")
    ys: dict[str, np.ndarray | None] = {}
    for split, x in (("train", x_train), ("test", x_test)):
        y = arrays.get(f"y_{split}")
        if y is not None:
            if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
                raise FmnistError(f"{path}: y_{split} is {y.dtype} shaped {y.shape}; expected {len(x)} integer labels")
            check_labels(y, f"{path}: y_{split}")
            y = y.astype(np.int64)
        ys[split] = y
    names = arrays.get("class_names")
    layer = arrays.get("layer")
    dataset = Dataset(
        x_train=x_train,
        y_train=ys["train"],
        x_test=x_test,
        y_test=ys["test"],
        class_names=tuple(str(n) for n in names) if names is not None else None,
        layer=str(layer.reshape(-1)[0]) if layer is not None and layer.size == 1 else None,
    )
    return dataset, digest
