"""Loading the rows a stage clusters, embeds or explains, from any feature artefact.

A feature artefact is a ``preprocess`` folder (pixels, flattened), an ``encode`` folder
(``(N, D)`` encodings) or a ``train-som`` folder (each test image represented by its
best-matching unit's prototype). :func:`load_features` reads one split of any of them,
with labels and, where they can be found, the images of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import MANIFEST, load_checked_npz, loads_json, read_manifest, sha256_file
from fmnist_cluster.config import ReduceConfig
from fmnist_cluster.data import DATA_FILE, Dataset, load_dataset
from fmnist_cluster.errors import FmnistError

FEATURE_STAGES = ("preprocess", "encode", "train-som")
FEATURES_PRODUCER = "fmnist-cluster encode (or preprocess / train-som)"


@dataclass
class FeatureSet:
    """The rows a stage clusters or embeds.

    Attributes
    ----------
    x : ndarray of float32, shape (N, D)
        Features (images are flattened).
    y : ndarray of int64 or None
        Labels of the rows.
    split : {'test', 'train', 'all'}
    source_stage : str
        Stage that wrote the input (``preprocess``, ``encode`` or ``train-som``).
    kind : str
        ``pixels``, ``encoding`` or ``som``.
    class_names : tuple of str or None
    images : ndarray or None
        The images of the rows (N, 1, 28, 28) when known.
    digest : str
        sha256 of the input file.
    path : Path
        The input file.
    """

    x: np.ndarray
    y: np.ndarray | None
    split: str
    source_stage: str
    kind: str
    class_names: tuple[str, ...] | None
    images: np.ndarray | None
    digest: str
    path: Path


def _pick(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    if split == "train":
        return dataset.x_train, dataset.y_train
    if split == "test":
        return dataset.x_test, dataset.y_test
    y = None
    if dataset.y_train is not None and dataset.y_test is not None:
        y = np.concatenate([dataset.y_train, dataset.y_test])
    return np.concatenate([dataset.x_train, dataset.x_test]), y


def _check_split(split: str) -> None:
    if split not in ("test", "train", "all"):
        raise FmnistError(f"unknown split '{split}'; valid: test, train, all")


def _som_features(
    folder: Path, split: str, manifest: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None, np.ndarray | None, Path, str]:
    """Per-image SOM outputs of a ``train-som`` artefact: every test image is represented by
    the weight vector (prototype) of its best-matching unit, so clustering these rows clusters
    the map's prototypes weighted by their hits (the classic two-level SOM clustering).
    Labels and images come from the ``preprocess`` folder recorded in the SOM's manifest
    (read once)."""
    if split != "test":
        raise FmnistError(f"{folder} (train-som) holds best-matching units of the test images only; use --split test")
    producer = "fmnist-cluster train-som"
    path, digest, arrays = load_checked_npz(folder, "som.npz", producer, ("weights", "bmu_test"), "train-som")
    weights = np.asarray(arrays["weights"], dtype=np.float32)
    prototypes = weights.reshape(-1, weights.shape[-1])
    bmu = np.asarray(arrays["bmu_test"], dtype=np.int64)
    if bmu.size and (bmu.min() < 0 or bmu.max() >= len(prototypes)):
        raise FmnistError(f"{path}: bmu_test points outside the map; run `{producer}` again")
    y, names, pictures = None, None, None
    data_folder = recorded_images(manifest)
    if data_folder is not None:
        dataset, _ = load_dataset(data_folder)
        if len(dataset.x_test) == len(bmu):
            y, names = dataset.y_test, dataset.class_names
            pictures = dataset.x_test if dataset.is_image else None
    return prototypes[bmu], y, names, pictures, path, digest


def load_features(
    folder: Path | str, split: str = "test", images: Path | str | None = None, find_images: bool = True
) -> FeatureSet:
    """Read the rows to cluster from a ``preprocess``, ``encode`` or ``train-som`` artefact.

    Parameters
    ----------
    folder : path
        The upstream artefact folder.
    split : {'test', 'train', 'all'}
        Which rows.
    images : path or None
        A ``preprocess`` artefact holding the same rows as images (for montages and
        decoding). When None, pixels inputs are their own images, and for an encoding the
        ``preprocess`` folder recorded in its manifest is used when it is still there.
    find_images : bool
        Look for the recorded ``preprocess`` folder when ``images`` is None.

    Raises
    ------
    FmnistError
        Missing or unfinished artefact, unknown split, images whose rows do not match.
    """
    _check_split(split)
    folder = Path(folder)
    manifest = read_manifest(folder, FEATURES_PRODUCER)
    stage = str(manifest.get("stage"))
    if stage not in FEATURE_STAGES:
        raise FmnistError(
            f"{folder} was written by `{stage}`; cluster and embed read the output of {', '.join(FEATURE_STAGES)}"
        )
    class_names: tuple[str, ...] | None = None
    pictures: np.ndarray | None = None
    if stage == "train-som":
        x, y, class_names, pictures, path, digest = _som_features(folder, split, manifest)
        kind = "som"
    else:
        dataset, digest = load_dataset(folder, FEATURES_PRODUCER)
        path = folder / DATA_FILE
        x, y = _pick(dataset, split)
        class_names = dataset.class_names
        kind = "pixels" if dataset.is_image else "encoding"
        if dataset.is_image:
            pictures = x
        if len(x) == 0:
            raise FmnistError(
                f"{path} has no rows in the '{split}' split; pass another --split, or run the stage that wrote it again"
            )
        x = x.reshape(len(x), -1).astype(np.float32, copy=False)
    if images is None and pictures is None and find_images:
        images = recorded_images(manifest)
    if images is not None:
        pictures = _load_images(Path(images), split, len(x), y)
    return FeatureSet(x, y, split, stage, kind, class_names, pictures, digest, path)


def recorded_images(manifest: dict[str, Any]) -> Path | None:
    """The ``preprocess`` folder an artefact's manifest lists as an input, if still valid."""
    for raw, digest in manifest.get("inputs", {}).items():
        path = Path(raw)
        if path.name != DATA_FILE or not (path.parent / MANIFEST).is_file() or not path.is_file():
            continue
        try:
            stage = loads_json((path.parent / MANIFEST).read_text(encoding="utf-8")).get("stage")
        except (OSError, ValueError, AttributeError):  # unreadable, or not a mapping
            continue
        if stage == "preprocess" and sha256_file(path) == digest:
            return path.parent
    return None


def _load_images(folder: Path, split: str, n: int, y: np.ndarray | None) -> np.ndarray:
    dataset, _ = load_dataset(folder, "fmnist-cluster preprocess", option="--images")
    if not dataset.is_image:
        raise FmnistError(f"{folder} holds features, not images; pass a preprocess output folder to --images")
    pictures, y_img = _pick(dataset, split)
    if len(pictures) != n:
        raise FmnistError(
            f"{folder} has {len(pictures)} {split} images but the features have {n} rows; "
            "pass the preprocess folder the features were made from to --images"
        )
    if y is not None and y_img is not None and not np.array_equal(y, y_img):
        raise FmnistError(
            f"the labels of {folder} differ from those of the features; "
            "pass the preprocess folder the features were made from to --images"
        )
    return pictures


_SAFE_MAGNITUDE = 1e6
"""Features larger than this, or all smaller than its inverse, are divided by their largest
magnitude before the float32 methods see them (their squared distances would overflow or
vanish in float32)."""


def reduce_features(x: np.ndarray, config: ReduceConfig, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Normalise rows, standardise features and/or PCA-project ``x`` as ``config`` asks.

    Returns
    -------
    (ndarray of float32, dict)
        The features and a record (dimensions, explained variance kept).
    """
    record: dict[str, Any] = {"dims_in": int(x.shape[1])}
    x = np.asarray(x, dtype=np.float64)
    if config.normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if config.standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    if config.pca_components is not None and config.pca_components < min(x.shape):
        from sklearn.decomposition import PCA

        pca = PCA(n_components=config.pca_components, random_state=seed)
        x = pca.fit_transform(x)
        record["pca_explained_variance"] = float(pca.explained_variance_ratio_.sum())
    record["dims"] = int(x.shape[1])
    scale = float(np.abs(x).max()) if x.size else 0.0
    if np.isfinite(scale) and (scale > _SAFE_MAGNITUDE or 0 < scale < 1 / _SAFE_MAGNITUDE):
        # float32 distances of such values overflow or vanish; every method here is blind to scale
        x = x / scale
        record["divided_by"] = scale
    return x.astype(np.float32), record
