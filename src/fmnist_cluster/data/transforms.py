"""What ``preprocess`` does to images and labels: the stratified limit, deskew, centring,
standardisation and the grouping of classes into mystery labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress
from fmnist_cluster.config import PreprocessConfig
from fmnist_cluster.data.dataset import IMAGE_SIDE, Dataset
from fmnist_cluster.errors import FmnistError


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of at most ``n`` items with the label shares of ``labels`` kept.

    Each label gets ``floor(n * share)`` items and the remainder goes to the labels with the
    largest fractional parts; within a label the items are a seeded random draw. The result
    is sorted, so the original order is kept.
    """
    total = len(labels)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / total
    quota = np.floor(exact).astype(int)
    short = n - int(quota.sum())
    if short > 0:
        order = np.argsort(-(exact - quota), kind="stable")
        quota[order[:short]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
        if q > 0
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def center_by_mass(images: np.ndarray) -> np.ndarray:
    """Shift each (1, 28, 28) image so that its centre of mass sits at the image centre."""
    from scipy import ndimage

    out = np.empty_like(images)
    centre = (IMAGE_SIDE - 1) / 2.0
    for i, img in enumerate(images[:, 0]):
        mass = img.sum()
        if mass <= 0:
            out[i, 0] = img
            continue
        cy, cx = ndimage.center_of_mass(img)
        out[i, 0] = ndimage.shift(img, (centre - cy, centre - cx), order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0)


def deskew(images: np.ndarray) -> np.ndarray:
    """Remove each image's slant: a horizontal shear by its covariance ratio about the centre
    of mass (the classic moment-based deskew)."""
    from scipy import ndimage

    out = np.empty_like(images)
    ys, xs = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE].astype(np.float64)
    centre = (IMAGE_SIDE - 1) / 2.0
    for i, img in enumerate(images[:, 0].astype(np.float64)):
        mass = img.sum()
        if mass <= 0:
            out[i, 0] = img
            continue
        my, mx = (ys * img).sum() / mass, (xs * img).sum() / mass
        var_y = (((ys - my) ** 2) * img).sum() / mass
        cov = (((ys - my) * (xs - mx)) * img).sum() / mass
        alpha = cov / var_y if var_y > 0 else 0.0
        matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
        offset = np.array([my, mx]) - matrix @ np.array([centre, centre])
        out[i, 0] = ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def transform(
    dataset: Dataset, config: PreprocessConfig, progress: Progress = NULL_PROGRESS
) -> tuple[Dataset, dict[str, Any]]:
    """Apply the stratified limit, deskew/centre and standardisation of ``config``.

    Returns
    -------
    (Dataset, dict)
        The new data set and a record of what was done (for the manifest and metrics).
    """
    record: dict[str, Any] = {}
    mapping = grouping(config)
    if mapping is not None:
        dataset = relabel(dataset, mapping)
    xs: dict[str, np.ndarray] = {"train": dataset.x_train, "test": dataset.x_test}
    ys: dict[str, np.ndarray | None] = {"train": dataset.y_train, "test": dataset.y_test}
    if config.limit is not None:
        for offset, split in enumerate(("train", "test")):
            y = ys[split]
            idx = stratified_indices(
                y if y is not None else np.zeros(len(xs[split]), int), config.limit, config.seed + offset
            )
            xs[split] = xs[split][idx]
            ys[split] = y[idx] if y is not None else None
    for name, enabled, fn in (("deskew", config.deskew, deskew), ("center", config.center, center_by_mass)):
        if enabled:
            task = progress.task(f"{name} images", total=2)
            for split in ("train", "test"):
                xs[split] = fn(xs[split]).astype(np.float32)
                task.advance()
            task.close()
    extra: dict[str, np.ndarray] = {}
    if config.standardize != "none":
        axis = None if config.standardize == "global" else 0
        mean = xs["train"].mean(axis=axis, keepdims=axis == 0, dtype=np.float64).astype(np.float32)
        std = xs["train"].std(axis=axis, keepdims=axis == 0, dtype=np.float64).astype(np.float32)
        std = np.where(std > 1e-6, std, np.float32(1.0)).astype(np.float32)
        for split in ("train", "test"):
            xs[split] = ((xs[split] - mean) / std).astype(np.float32)
        extra = {"mean": np.asarray(mean), "std": np.asarray(std)}
        record["standardize"] = config.standardize
    record.update(
        {
            "n_train": len(xs["train"]),
            "n_test": len(xs["test"]),
            "n_classes": dataset.n_classes,
            "class_counts_train": _counts(ys["train"]),
            "class_counts_test": _counts(ys["test"]),
        }
    )
    out = Dataset(xs["train"], ys["train"], xs["test"], ys["test"], dataset.class_names, dataset.layer)
    record["_extra_arrays"] = extra
    return out, record


def grouping(config: PreprocessConfig) -> np.ndarray | None:
    """The class-to-label map asked for by ``relabel`` (None when not relabelling).

    A ``random`` grouping puts each of the 10 classes into one of ``relabel_groups`` labels,
    every label non-empty, drawn from ``seed``.
    """
    if config.relabel is None:
        return None
    if config.relabel != "random":
        return np.asarray(config.relabel, dtype=np.int64)
    rng = np.random.default_rng([config.seed, 10_007])
    k = config.relabel_groups
    labels = np.concatenate([np.arange(k), rng.integers(0, k, size=10 - k)])
    return rng.permutation(labels).astype(np.int64)


def relabel(dataset: Dataset, mapping: np.ndarray) -> Dataset:
    """Replace the 10 known classes by mystery labels ``mapping[class]`` and drop the names."""
    if dataset.class_names is None or len(dataset.class_names) != len(mapping):
        raise FmnistError(
            "relabel needs a source with the 10 known Fashion-MNIST classes (sample, idx, kaggle-csv, "
            "torchvision); remove relabel for this source"
        )
    ys = [None if y is None else mapping[y] for y in (dataset.y_train, dataset.y_test)]
    return Dataset(dataset.x_train, ys[0], dataset.x_test, ys[1], None, dataset.layer)


def _counts(y: np.ndarray | None) -> dict[str, int]:
    if y is None:
        return {}
    values, counts = np.unique(y, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
