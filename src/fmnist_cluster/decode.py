"""Automatic decoding of mystery labels into the 10 Fashion-MNIST classes.

Nothing about the grouping is known in advance. Every image of a mystery label is given a
Fashion-MNIST class, in one or both of two ways:

* **content** -- an image of a mystery-labelled set is an original Fashion-MNIST image, so
  its pixels (rounded to 8 bits and hashed) are looked up among the original images, whose
  classes are known. Exact, when the originals are available;
* **reference** -- a 10-class model trained on the original data (``train-cnn``) predicts
  the class of each image. Approximate: the model's own confusions leak a few percent of a
  label into neighbouring classes.

For each label the shares of the classes are counted. ``members`` are the classes holding at
least ``min_share`` of the label and at least ``leak_ratio`` of the class's largest count
over all labels (a class that is almost entirely elsewhere is a confusion, not a member).
When both ways are available, content decides and the two are compared.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, read_manifest
from fmnist_cluster.cluster.metrics import contingency
from fmnist_cluster.config import DecodeConfig
from fmnist_cluster.data import DATA_FILE, load_dataset
from fmnist_cluster.device import resolve_device
from fmnist_cluster.errors import FmnistError, FmnistWarning, user_errors
from fmnist_cluster.params import is_int

N_CLASSES = 10


class DecodeWarning(FmnistWarning):
    """Decoding worked on fewer images than expected."""


# --------------------------------------------------------------------------------------
# assigning classes to images
# --------------------------------------------------------------------------------------


def image_keys(images: np.ndarray) -> list[bytes]:
    """A 16-byte hash of every image's pixels rounded to 8 bits.

    Parameters
    ----------
    images : ndarray
        (N, 1, 28, 28), (N, 28, 28) or (N, 784) float images in [0, 1].

    Raises
    ------
    ValueError
        Values outside [0, 1] (standardised images, whose pixels cannot be looked up).
    """
    array = np.asarray(images)
    if array.ndim not in (2, 3, 4) or math.prod(array.shape[1:]) != 784:
        raise ValueError(f"images must have shape (N, 1, 28, 28), (N, 28, 28) or (N, 784), got {array.shape}")
    if np.iscomplexobj(array):
        raise ValueError("images hold complex numbers; give real pixel values in [0, 1]")
    rows = array.astype(np.float32).reshape(len(array), 784)
    if rows.size and (not np.isfinite(rows).all() or rows.min() < -1e-6 or rows.max() > 1 + 1e-6):
        raise ValueError(
            "content matching needs images in [0, 1]; preprocess both the mystery images and the originals "
            "with standardize: none"
        )
    u8 = np.clip(np.rint(rows * 255.0), 0, 255).astype(np.uint8)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in u8]


class ContentMatcher(ClassifierMixin, BaseEstimator):
    """Look images up among reference images of known class, by exact pixel content.

    Parameters
    ----------
    n_classes : int, default=10
        Number of reference classes; the classes of ``fit`` are 0..n_classes-1.

    Attributes
    ----------
    classes_ : ndarray of int64
        0..n_classes-1.
    table_ : dict of bytes to ndarray
        For every distinct reference image, its count per class (a few Fashion-MNIST images
        occur twice, sometimes with two classes).
    """

    def __init__(self, *, n_classes: int = N_CLASSES) -> None:
        self.n_classes = n_classes

    def fit(self, X: np.ndarray, y: np.ndarray) -> ContentMatcher:
        """Index the reference images ``X`` (in [0, 1]) with their classes ``y``; returns self.

        Raises
        ------
        ValueError
            ``n_classes`` not a positive int, ``X`` and ``y`` of different lengths, a class
            outside 0..n_classes-1, or images outside [0, 1].
        """
        if not is_int(self.n_classes) or self.n_classes < 1:
            raise ValueError(f"n_classes must be a positive int, got {self.n_classes!r}")
        keys = image_keys(X)
        classes = np.asarray(y)
        if classes.ndim != 1 or len(classes) != len(keys):
            raise ValueError(f"{len(keys)} reference images but {classes.shape} classes; give one class per image")
        if classes.size and (
            not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0 or classes.max() >= self.n_classes
        ):
            raise ValueError(f"classes must be integers in 0..{self.n_classes - 1}")
        table: dict[bytes, np.ndarray] = {}
        for key, c in zip(keys, classes, strict=True):
            counts = table.get(key)
            if counts is None:
                counts = np.zeros(self.n_classes, dtype=np.int64)
                table[key] = counts
            counts[int(c)] += 1
        self.classes_ = np.arange(self.n_classes, dtype=np.int64)
        self.table_ = table
        return self

    def match(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class of every image (-1 when not found) and whether its match was ambiguous
        (the same pixels carry two classes among the references; the majority is used)."""
        check_is_fitted(self, "table_")
        keys = image_keys(X)
        out = np.full(len(keys), -1, dtype=np.int64)
        ambiguous = np.zeros(len(keys), dtype=bool)
        for i, key in enumerate(keys):
            counts = self.table_.get(key)
            if counts is not None:
                out[i] = int(np.argmax(counts))
                ambiguous[i] = int((counts > 0).sum()) > 1
        return out, ambiguous

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class of every image, -1 where its pixels are not among the references."""
        return self.match(X)[0]


def load_originals(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    dataset, digest = load_dataset(folder, "fmnist-cluster preprocess --source idx", option="--originals")
    if not dataset.is_image or dataset.class_names is None or len(dataset.class_names) != N_CLASSES:
        raise FmnistError(
            f"{folder} is not the original 10-class Fashion-MNIST; pass a preprocess output of the real data "
            "(e.g. --source idx, without relabel) to --originals"
        )
    if dataset.y_train is None or dataset.y_test is None:
        raise FmnistError(f"{folder} has no class labels; pass a preprocess output of the real data to --originals")
    images = np.concatenate([dataset.x_train, dataset.x_test])
    classes = np.concatenate([dataset.y_train, dataset.y_test])
    return images, classes, dataset.class_names, digest


def reference_predict(
    images: np.ndarray, model_dir: Path | str, config: DecodeConfig
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Classes predicted for ``images`` by a 10-class ``train-cnn`` model.

    Raises
    ------
    FmnistError
        Not a train-cnn artefact, or a model whose classes are not the 10 Fashion-MNIST ones.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir, "fmnist-cluster train-cnn")
    if manifest.get("stage") != "train-cnn":
        raise FmnistError(
            f"{model_dir} was written by `{manifest.get('stage')}`, not `train-cnn`; pass a model trained on "
            "the original 10-class data to --reference"
        )
    try:
        from fmnist_cluster.cnn import load_checkpoint, predict_proba
    except ImportError as exc:
        raise FmnistError(f"the CNN module cannot be loaded ({exc}); decode with --originals instead") from None
    model, info = load_checkpoint(model_dir)
    names = info.get("class_names")
    if int(info.get("n_classes", 0)) != N_CLASSES or not names or len(names) != N_CLASSES:
        raise FmnistError(
            f"{model_dir} predicts {info.get('n_classes')} classes without the 10 Fashion-MNIST names; train the "
            "reference model on the original data (preprocess --source idx, no relabel) and pass it to --reference"
        )
    with user_errors("decode.device"):
        device = str(resolve_device(config.device))
    x = np.asarray(images, dtype=np.float32).reshape(len(images), 1, 28, 28)
    flip = bool(info.get("test_flip", False))
    proba = predict_proba(model, x, batch_size=config.batch_size, device=device, test_flip=flip)
    return np.asarray(np.argmax(proba, axis=1), dtype=np.int64), tuple(str(n) for n in names)


# --------------------------------------------------------------------------------------
# from per-image classes to label compositions
# --------------------------------------------------------------------------------------


def count_matrix(y: np.ndarray, classes: np.ndarray, label_ids: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts (n_labels, n_classes) of images of each label given each class (class -1 is
    left out)."""
    counts = np.zeros((len(label_ids), n_classes), dtype=np.int64)
    row = {int(v): i for i, v in enumerate(label_ids)}
    for label, c in zip(y, classes, strict=True):
        if c >= 0:
            counts[row[int(label)], int(c)] += 1
    return counts


def compose(
    counts: np.ndarray,
    label_ids: np.ndarray,
    class_names: tuple[str, ...],
    min_share: float = 0.10,
    leak_ratio: float = 0.25,
) -> list[dict[str, Any]]:
    """Describe every label by its classes and shares, and name its members.

    Parameters
    ----------
    counts : ndarray (n_labels, n_classes)
        From :func:`count_matrix`.
    label_ids : ndarray
        The label of every row.
    class_names : tuple of str
    min_share : float
        Smallest share of the label a member holds.
    leak_ratio : float
        A member holds at least this fraction of the class's largest count over the labels.

    Returns
    -------
    list of dict
        One entry per label: ``label``, ``n_decoded``, ``classes`` (name, id, count, share;
        largest first, zero shares left out), ``members``, ``member_ids`` and ``summary``
        (e.g. ``label 3 ≈ Bag 51 % + Sneaker 49 %``).
    """
    col_max = counts.max(axis=0)
    out = []
    for i, label in enumerate(label_ids):
        total = int(counts[i].sum())
        shares = counts[i] / total if total else np.zeros(counts.shape[1])
        order = np.argsort(-shares, kind="stable")
        classes = [
            {"id": int(j), "name": class_names[j], "count": int(counts[i, j]), "share": round(float(shares[j]), 4)}
            for j in order
            if counts[i, j] > 0
        ]
        member_ids = [
            int(j) for j in order if total and shares[j] >= min_share and counts[i, j] >= leak_ratio * col_max[j]
        ]
        parts = " + ".join(f"{class_names[j]} {shares[j] * 100:.0f} %" for j in member_ids)
        rest = 1.0 - float(sum(shares[j] for j in member_ids))
        if member_ids and rest >= 0.005:
            parts += f" (other {rest * 100:.0f} %)"
        out.append(
            {
                "label": int(label),
                "n_decoded": total,
                "classes": classes,
                "members": [class_names[j] for j in member_ids],
                "member_ids": member_ids,
                "summary": f"label {int(label)} ≈ {parts or 'nothing decoded'}",
            }
        )
    return out


def cluster_view(y: np.ndarray, label_ids: np.ndarray, clusters: dict[str, np.ndarray]) -> dict[str, dict[str, list]]:
    """For each label and algorithm, the clusters holding at least 2 % of the label."""
    view: dict[str, dict[str, list]] = {str(int(v)): {} for v in label_ids}
    for name, assigned in clusters.items():
        for v in label_ids:
            mask = y == v
            values, counts = np.unique(assigned[mask], return_counts=True)
            share = counts / max(int(mask.sum()), 1)
            order = np.argsort(-share, kind="stable")
            view[str(int(v))][name] = [
                {"cluster": int(values[j]), "share": round(float(share[j]), 4)} for j in order if share[j] >= 0.02
            ]
    return view


def decode_labels(
    images: np.ndarray,
    y: np.ndarray,
    config: DecodeConfig,
    originals_dir: Path | str | None = None,
    reference_dir: Path | str | None = None,
    clusters: dict[str, np.ndarray] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:
    """Decode every mystery label of ``images`` / ``y``.

    Parameters
    ----------
    images : ndarray (N, 1, 28, 28)
    y : ndarray (N,)
        Mystery labels.
    config : DecodeConfig
    originals_dir : path or None
        ``preprocess`` artefact of the original data (content matching).
    reference_dir : path or None
        10-class ``train-cnn`` artefact (model predictions).
    clusters : dict of str to ndarray, optional
        Cluster labels of the same rows per algorithm, for the cluster-level view.

    Returns
    -------
    dict
        ``method`` (content or reference), ``labels`` (see :func:`compose`, each with
        ``n`` and ``clusters``), ``content`` / ``reference`` details, ``class_names``, and the
        private keys ``_inputs`` (files read, with sha256) and ``_assigned`` (class per image).
    """
    if originals_dir is None and reference_dir is None:
        raise FmnistError("decoding needs --originals DATA_DIR or --reference MODEL_DIR (or both)")
    if len(images) != len(y):
        raise FmnistError(f"{len(images)} images but {len(y)} labels to decode")
    label_ids = np.unique(y)
    task = progress.task("decoding labels", total=int(originals_dir is not None) + int(reference_dir is not None))
    result: dict[str, Any] = {
        "n_images": len(y),
        "_inputs": {},
        "min_share": config.min_share,
        "leak_ratio": config.leak_ratio,
    }
    assigned: dict[str, np.ndarray] = {}
    class_names: tuple[str, ...] | None = None
    if originals_dir is not None:
        originals, classes, class_names, digest = load_originals(Path(originals_dir))
        result["_inputs"][str(Path(originals_dir) / DATA_FILE)] = digest
        with user_errors("--originals"):
            found, ambiguous = ContentMatcher().fit(originals, classes).match(images)
        matched = found >= 0
        counts = count_matrix(y, found, label_ids)
        result["content"] = {
            "n_matched": int(matched.sum()),
            "match_rate": round(float(matched.mean()), 4),
            "n_ambiguous": int(ambiguous.sum()),
            "labels": compose(counts, label_ids, class_names, config.min_share, config.leak_ratio),
        }
        assigned["content"] = found
        task.advance(1)
        if not matched.any():
            message = (
                f"no image was found among the originals in {originals_dir} (none of the {len(y)} images decoded): "
                "either they are not Fashion-MNIST images as they come (transformed: mirrored, shifted, noisy), or "
                "the two folders were preprocessed differently (they need the same deskew/center and standardize "
                "none); leave out --originals (--reference decodes transformed images) or preprocess both alike"
            )
            if reference_dir is None:
                raise FmnistError(message)
            warnings.warn(message, DecodeWarning, stacklevel=2)
        elif matched.mean() < 0.99:
            warnings.warn(
                f"only {matched.mean():.1%} of the images were found among the originals in {originals_dir}; "
                "shares are over the matched images",
                DecodeWarning,
                stacklevel=2,
            )
    if reference_dir is not None:
        predicted, ref_names = reference_predict(images, reference_dir, config)
        class_names = class_names or ref_names
        counts = count_matrix(y, predicted, label_ids)
        result["reference"] = {"labels": compose(counts, label_ids, ref_names, config.min_share, config.leak_ratio)}
        assigned["reference"] = predicted
        if "content" in assigned:
            both = assigned["content"] >= 0
            if both.any():
                result["reference"]["agreement_with_content"] = round(
                    float(np.mean(predicted[both] == assigned["content"][both])), 4
                )
            same = [
                set(a["member_ids"]) == set(b["member_ids"])
                for a, b in zip(result["content"]["labels"], result["reference"]["labels"], strict=True)
            ]
            result["reference"]["same_members_as_content"] = bool(all(same))
        task.advance(1)
    task.close()
    use_content = (
        "content" in result
        and result["content"]["n_matched"] > 0
        and (result["content"]["match_rate"] >= 0.5 or "reference" not in result)
    )
    method = "content" if use_content else "reference"
    result["method"] = method
    result["class_names"] = list(class_names or ())
    view = cluster_view(y, label_ids, clusters or {})
    sizes = {int(v): int((y == v).sum()) for v in label_ids}
    result["labels"] = [
        {**entry, "n": sizes[entry["label"]], "clusters": view[str(entry["label"])]}
        for entry in result[method]["labels"]
    ]
    result["_assigned"] = assigned[method]
    return result


def decoding_figures(
    decoding: dict[str, Any],
    images: np.ndarray,
    y: np.ndarray,
    assigned: np.ndarray,
    clusters: dict[str, np.ndarray],
    per_label: int = 20,
    seed: int = 0,
    skip_montages: Collection[int] = (),
) -> list[tuple[str, Any]]:
    """Figures of a decoding: composition bars, one montage per label (each image titled by
    its class; left out for the labels in ``skip_montages``, whose montage the explainer drew,
    titled with the label's rule), and classes × clusters for the first clustering available."""
    from fmnist_cluster import plots

    names = decoding["class_names"]
    entries = decoding["labels"]
    shares = np.zeros((len(entries), len(names)))
    for i, entry in enumerate(entries):
        for c in entry["classes"]:
            shares[i, c["id"]] = c["share"]
    rows = [f"label {e['label']} ({e['n']})" for e in entries]
    figures: list[tuple[str, Any]] = [
        (
            "decode-composition",
            plots.label_composition(rows, shares, names, f"Mystery labels decoded ({decoding['method']})"),
        )
    ]
    rng = np.random.default_rng(seed)
    for entry in entries:
        if entry["label"] in skip_montages:
            continue
        members = np.flatnonzero(y == entry["label"])
        pick = np.sort(rng.choice(members, size=min(per_label, len(members)), replace=False))
        titles = [names[assigned[i]] if assigned[i] >= 0 else "?" for i in pick]
        figures.append(
            (
                f"decode-label-{entry['label']}",
                plots.titled_tiles(images[pick], titles, ncols=10, suptitle=entry["summary"]),
            )
        )
    for algo in ("kmeans", "agglomerative", "dbscan", "hdbscan"):
        if algo in clusters:
            known = assigned >= 0
            table, row_ids, col_ids = contingency(assigned[known], clusters[algo][known])
            figures.append(
                (
                    f"decode-class-by-cluster-{algo}",
                    plots.contingency_heatmap(
                        table,
                        row_ids,
                        col_ids,
                        f"Decoded class × {algo} cluster",
                        row_title="class",
                        row_names=[names[r] for r in row_ids],
                    ),
                )
            )
            break
    return figures
