"""The ``cluster`` stage: KMeans, DBSCAN with automatic eps, HDBSCAN and agglomerative
clustering of encodings, pixels or SOM outputs, scored against the labels when there are some.

Estimators follow the scikit-learn contract (hyperparameters in ``__init__``, ``fit``
returns self, learned state ends in ``_``):

* :class:`SilhouetteKMeans` -- KMeans whose k is given, or picked by silhouette over a range;
* :class:`AutoDBSCAN` -- DBSCAN whose ``eps`` is read off the k-distance curve and whose
  ``min_samples`` is 1 % of the points;
* :class:`SampledAgglomerative` -- a linkage tree on a sample, other points joined by their
  nearest sampled neighbour.

:func:`run_cluster` is the stage: it writes ``labels.npz`` (one label array per algorithm,
noise is -1), ``metrics.json``, figures, and, when ``--originals`` or ``--reference`` is given,
``decoding.json`` (see :mod:`fmnist_cluster.decode`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import (
    MANIFEST,
    NULL_PROGRESS,
    Progress,
    StageRun,
    load_npz,
    read_manifest,
    require_file,
    sha256_file,
)
from fmnist_cluster.config import ClusterConfig, ReduceConfig
from fmnist_cluster.data import DATA_FILE, Dataset, load_dataset
from fmnist_cluster.errors import FmnistError, FmnistWarning

ALGORITHMS = ("kmeans", "dbscan", "hdbscan", "agglomerative")
LABELS_FILE = "labels.npz"
METRICS_FILE = "metrics.json"
FEATURE_STAGES = ("preprocess", "encode", "train-som")
_PRODUCER = "fmnist-cluster encode (or preprocess / train-som)"


def figure_name(name: str) -> str:
    """Where a stage stores figure ``name`` inside its artefact folder."""
    return f"figures/{name}.png"


class ClusterWarning(FmnistWarning):
    """A clustering result the user should look at (e.g. DBSCAN found nothing)."""


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------


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
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None, Path, str]:
    """Per-image SOM outputs of a ``train-som`` artefact: every test image is represented by
    the weight vector (prototype) of its best-matching unit, so clustering these rows clusters
    the map's prototypes weighted by their hits (the classic two-level SOM clustering).
    Labels come from the ``preprocess`` folder recorded in the SOM's manifest."""
    if split != "test":
        raise FmnistError(f"{folder} (train-som) holds best-matching units of the test images only; use --split test")
    path, digest = require_file(folder, "som.npz", "fmnist-cluster train-som", stage="train-som")
    arrays = load_npz(path, ("weights", "bmu_test"), "fmnist-cluster train-som")
    weights = np.asarray(arrays["weights"], dtype=np.float32)
    prototypes = weights.reshape(-1, weights.shape[-1])
    bmu = np.asarray(arrays["bmu_test"], dtype=np.int64)
    if bmu.size and (bmu.min() < 0 or bmu.max() >= len(prototypes)):
        raise FmnistError(f"{path}: bmu_test points outside the map; run `fmnist-cluster train-som` again")
    y, names = None, None
    data_folder = recorded_images(manifest)
    if data_folder is not None:
        dataset, _ = load_dataset(data_folder)
        if dataset.y_test is not None and len(dataset.y_test) == len(bmu):
            y, names = dataset.y_test, dataset.class_names
    return prototypes[bmu], y, names, path, digest


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
    manifest = read_manifest(folder, _PRODUCER)
    stage = str(manifest.get("stage"))
    if stage not in FEATURE_STAGES:
        raise FmnistError(
            f"{folder} was written by `{stage}`; cluster and embed read the output of {', '.join(FEATURE_STAGES)}"
        )
    class_names: tuple[str, ...] | None = None
    pictures: np.ndarray | None = None
    if stage == "train-som":
        x, y, class_names, path, digest = _som_features(folder, split, manifest)
        kind = "som"
    else:
        dataset, digest = load_dataset(folder, _PRODUCER)
        path = folder / DATA_FILE
        x, y = _pick(dataset, split)
        class_names = dataset.class_names
        kind = "pixels" if dataset.is_image else "encoding"
        if dataset.is_image:
            pictures = x
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
            stage = json.loads((path.parent / MANIFEST).read_text(encoding="utf-8")).get("stage")
        except (OSError, ValueError):
            continue
        if stage == "preprocess" and sha256_file(path) == digest:
            return path.parent
    return None


def _load_images(folder: Path, split: str, n: int, y: np.ndarray | None) -> np.ndarray:
    dataset, _ = load_dataset(folder, "fmnist-cluster preprocess")
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
    return x.astype(np.float32), record


# --------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------


def _sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


class SilhouetteKMeans:
    """KMeans with a given k, or the k of a range with the best silhouette.

    Parameters
    ----------
    k : int or 'auto'
        Number of clusters, or ``auto`` to pick it by silhouette.
    k_range : tuple of 2 ints
        Inclusive range tried by ``auto``.
    n_init : int
        KMeans restarts of the final fit (the search over k uses at most 2 per k).
    sample_size : int
        Points used for each silhouette.
    random_state : int
        Seed.

    Attributes
    ----------
    n_clusters_ : int
    labels_ : ndarray of int64
    cluster_centers_ : ndarray
    silhouette_scores_ : dict of int to float
        Silhouette of every k tried (empty when k is given and ``scan`` is off).
    """

    def __init__(
        self,
        k: int | str = "auto",
        k_range: tuple[int, int] = (2, 12),
        n_init: int = 10,
        sample_size: int = 3000,
        random_state: int = 0,
        scan: bool = False,
    ) -> None:
        self.k = k
        self.k_range = k_range
        self.n_init = n_init
        self.sample_size = sample_size
        self.random_state = random_state
        self.scan = scan

    def _check_params(self, n: int) -> None:
        if self.k != "auto" and not (isinstance(self.k, int) and self.k >= 2):
            raise FmnistError(f"unknown kmeans k '{self.k}'; valid: an integer >= 2, auto")
        low = self.k if self.k != "auto" else self.k_range[0]
        if n <= low:
            raise FmnistError(f"kmeans needs more than {low} points, got {n}; lower kmeans.k or cluster more rows")

    def fit(self, x: np.ndarray) -> SilhouetteKMeans:
        """Cluster ``x`` (N, D); returns self."""
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        self._check_params(len(x))
        self.silhouette_scores_: dict[int, float] = {}
        best: tuple[float, int] | None = None
        if self.k == "auto" or self.scan:
            rows = _sample_rows(len(x), self.sample_size, self.random_state)
            search_init = min(self.n_init, 2)
            for k in range(self.k_range[0], min(self.k_range[1], len(x) - 1) + 1):
                model = KMeans(n_clusters=k, n_init=search_init, random_state=self.random_state).fit(x)
                labels = model.labels_[rows]
                score = float(silhouette_score(x[rows], labels)) if len(np.unique(labels)) > 1 else -1.0
                self.silhouette_scores_[k] = score
                if best is None or score > best[0]:
                    best = (score, k)
        chosen = best[1] if self.k == "auto" and best is not None else int(self.k)
        model = KMeans(n_clusters=chosen, n_init=self.n_init, random_state=self.random_state).fit(x)
        self.n_clusters_ = int(model.n_clusters)
        self.labels_ = model.labels_.astype(np.int64)
        self.cluster_centers_ = model.cluster_centers_
        return self


EPS_RULES = ("most-clusters", "knee")
MAX_AUTO_MIN_SAMPLES = 500


def auto_min_samples(n: int) -> int:
    """DBSCAN's automatic ``min_samples`` for ``n`` points: 1 % of them, clipped to [4, 500]."""
    return int(min(max(4, n // 100), MAX_AUTO_MIN_SAMPLES))


def knee_index(curve: np.ndarray) -> int:
    """Index of the knee of an increasing curve (Kneedle: the point farthest below the chord
    from the first to the last point, after scaling both axes to [0, 1]).

    Parameters
    ----------
    curve : ndarray, shape (N,)
        Sorted increasing values, N >= 3.
    """
    y = np.asarray(curve, dtype=np.float64)
    if len(y) < 3 or y[-1] <= y[0]:
        return len(y) // 2
    t = np.linspace(0.0, 1.0, len(y))
    yn = (y - y[0]) / (y[-1] - y[0])
    return int(np.argmax(t - yn))


class AutoDBSCAN:
    """DBSCAN with an automatic ``eps`` and ``min_samples``.

    ``min_samples`` defaults to 1 % of the points, clipped to [4, 500]. The
    sorted distance of every point to its ``min_samples``-th neighbour (the k-distance curve)
    rises slowly through the clusters and steeply among outliers. Two rules pick ``eps`` on it:

    * ``most-clusters`` (default): try ``eps`` at 34 evenly spaced quantiles of the curve from
      the median to the 99.5th percentile; among the runs that leave at most ``max_noise`` of
      the points as noise, keep the one with the most clusters holding at least 1 % of the
      points (ties: the least noise). A small eps splits dense groups into crumbs, a large one
      lets the thin bridges between groups merge them; this keeps the widest clean split.
      Falls back to ``knee`` when no run qualifies.
    * ``knee``: the knee of the curve; when DBSCAN there marks more than ``max_noise`` of the
      points as noise, ``eps`` is raised along the curve (in steps of 2 % of the points) until
      the noise share is at most ``max_noise``.

    Parameters
    ----------
    eps : float or 'auto'
    min_samples : int or 'auto'
    max_noise : float
        In (0, 1).
    eps_rule : {'most-clusters', 'knee'}
        How an automatic ``eps`` is chosen.

    Attributes
    ----------
    eps_ : float
    min_samples_ : int
    k_distances_ : ndarray
        The sorted k-distance curve.
    knee_eps_ : float
        The knee value (before the noise guard).
    labels_ : ndarray of int64
        Cluster per point, -1 for noise.
    noise_share_ : float
    n_clusters_ : int
    """

    def __init__(
        self,
        eps: float | str = "auto",
        min_samples: int | str = "auto",
        max_noise: float = 0.10,
        eps_rule: str = "most-clusters",
    ) -> None:
        self.eps = eps
        self.min_samples = min_samples
        self.max_noise = max_noise
        self.eps_rule = eps_rule

    def _check_params(self, n: int) -> None:
        if self.eps != "auto" and not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise FmnistError(f"unknown dbscan eps '{self.eps}'; valid: a number > 0, auto")
        if self.min_samples != "auto" and not (isinstance(self.min_samples, int) and self.min_samples >= 1):
            raise FmnistError(f"unknown dbscan min_samples '{self.min_samples}'; valid: an integer >= 1, auto")
        if self.eps_rule not in EPS_RULES:
            raise FmnistError(f"unknown dbscan eps_rule '{self.eps_rule}'; valid: {', '.join(EPS_RULES)}")
        if not 0 < self.max_noise < 1:
            raise FmnistError(f"dbscan max_noise {self.max_noise} must be in (0, 1)")
        if n < 5:
            raise FmnistError(f"dbscan needs at least 5 points, got {n}")

    def fit(self, x: np.ndarray) -> AutoDBSCAN:
        """Cluster ``x`` (N, D); returns self."""
        from sklearn.cluster import DBSCAN
        from sklearn.neighbors import NearestNeighbors

        n = len(x)
        self._check_params(n)
        if self.min_samples == "auto":
            self.min_samples_ = auto_min_samples(n)
        else:
            self.min_samples_ = int(self.min_samples)
        k = min(self.min_samples_, n - 1)
        # the point itself counts as a neighbour in DBSCAN, as in kneighbors on the fitted data
        dist, _ = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
        self.k_distances_ = np.sort(dist[:, -1])
        knee = knee_index(self.k_distances_)
        self.knee_eps_ = float(self.k_distances_[knee])

        def run(eps: float) -> np.ndarray:
            return DBSCAN(eps=max(eps, 1e-12), min_samples=self.min_samples_).fit(x).labels_.astype(np.int64)

        chosen = self._most_clusters(run, n) if self.eps == "auto" and self.eps_rule == "most-clusters" else None
        if chosen is not None:
            self.eps_, self.labels_ = chosen
        elif self.eps == "auto":
            self.eps_ = self.knee_eps_
            self.labels_ = run(self.eps_)
            step = max(1, n // 50)
            position = knee
            while np.mean(self.labels_ < 0) > self.max_noise and position < n - 1:
                position = min(position + step, n - 1)
                self.eps_ = float(self.k_distances_[position])
                self.labels_ = run(self.eps_)
        else:
            self.eps_ = float(self.eps)
            self.labels_ = run(self.eps_)
        self.noise_share_ = float(np.mean(self.labels_ < 0))
        self.n_clusters_ = len(np.unique(self.labels_[self.labels_ >= 0]))
        return self

    def _most_clusters(self, run: Callable[[float], np.ndarray], n: int) -> tuple[float, np.ndarray] | None:
        """The ``most-clusters`` rule: (eps, labels) of the widest clean split, or None."""
        best: tuple[tuple[int, float], float, np.ndarray] | None = None
        tried: set[float] = set()
        for q in np.linspace(0.5, 0.995, 34):
            eps = float(self.k_distances_[int(q * (n - 1))])
            if eps in tried:
                continue
            tried.add(eps)
            labels = run(eps)
            noise = float(np.mean(labels < 0))
            if noise > self.max_noise:
                continue
            sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, int)
            key = (int(np.sum(sizes >= 0.01 * n)), -noise)
            if best is None or key > best[0]:
                best = (key, eps, labels)
        return None if best is None else (best[1], best[2])


class SampledAgglomerative:
    """Agglomerative clustering on a seeded sample; other points take the cluster of their
    nearest sampled point.

    Parameters
    ----------
    n_clusters : int
    linkage : {'ward', 'average', 'complete', 'single'}
    max_samples : int
    random_state : int

    Attributes
    ----------
    labels_ : ndarray of int64
    sample_index_ : ndarray
        Rows the tree was built on.
    """

    def __init__(
        self, n_clusters: int = 2, linkage: str = "ward", max_samples: int = 5000, random_state: int = 0
    ) -> None:
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.max_samples = max_samples
        self.random_state = random_state

    def _check_params(self, n: int) -> None:
        if self.linkage not in ("ward", "average", "complete", "single"):
            raise FmnistError(f"unknown linkage '{self.linkage}'; valid: ward, average, complete, single")
        if not isinstance(self.n_clusters, int) or self.n_clusters < 2:
            raise FmnistError(f"agglomerative n_clusters {self.n_clusters!r} must be an integer >= 2")
        if n <= self.n_clusters:
            raise FmnistError(f"agglomerative clustering needs more than {self.n_clusters} points, got {n}")

    def fit(self, x: np.ndarray) -> SampledAgglomerative:
        """Cluster ``x`` (N, D); returns self."""
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.neighbors import NearestNeighbors

        self._check_params(len(x))
        rows = _sample_rows(len(x), self.max_samples, self.random_state)
        model = AgglomerativeClustering(n_clusters=self.n_clusters, linkage=self.linkage).fit(x[rows])
        labels = np.empty(len(x), dtype=np.int64)
        labels[rows] = model.labels_
        rest = np.setdiff1d(np.arange(len(x)), rows)
        if len(rest):
            _, nearest = NearestNeighbors(n_neighbors=1).fit(x[rows]).kneighbors(x[rest])
            labels[rest] = model.labels_[nearest[:, 0]]
        self.sample_index_ = rows
        self.labels_ = labels
        return self


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def contingency(y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """Counts of each (label, cluster) pair.

    Returns
    -------
    (ndarray, list, list)
        Table (n_labels, n_clusters), the label values (rows), the cluster values (columns;
        -1 is noise).
    """
    rows, y_idx = np.unique(y, return_inverse=True)
    cols, c_idx = np.unique(labels, return_inverse=True)
    table = np.zeros((len(rows), len(cols)), dtype=np.int64)
    np.add.at(table, (y_idx, c_idx), 1)
    return table, [int(v) for v in rows], [int(v) for v in cols]


def purity(y: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose cluster's majority label is their own (noise, -1, counts as one
    cluster)."""
    table, _, _ = contingency(y, labels)
    return float(table.max(axis=0).sum() / max(len(y), 1))


def majority_counts(y: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, int]]:
    """Per label, how many points sit in a cluster whose majority label is theirs (correct)
    and how many do not (incorrect, noise included)."""
    table, rows, cols = contingency(y, labels)
    majority = {c: rows[int(np.argmax(table[:, j]))] for j, c in enumerate(cols) if c >= 0}
    out: dict[str, dict[str, int]] = {}
    for i, label in enumerate(rows):
        correct = int(sum(table[i, j] for j, c in enumerate(cols) if c >= 0 and majority[c] == label))
        out[str(label)] = {"correct": correct, "incorrect": int(table[i].sum()) - correct}
    return out


def score_clustering(
    x: np.ndarray, labels: np.ndarray, y: np.ndarray | None = None, sample_size: int = 3000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of one clustering.

    Always: number of clusters, noise share, cluster sizes, silhouette (on a seeded sample,
    noise left out; None with fewer than 2 clusters). With labels ``y``: ARI, NMI,
    homogeneity, completeness, V-measure and purity on all points (noise counts as one
    cluster), ARI on the clustered points only, the contingency table and the
    correct/incorrect counts by majority label.
    """
    from sklearn import metrics as skm

    labels = np.asarray(labels)
    clustered = labels >= 0
    sizes = {str(int(c)): int(n) for c, n in zip(*np.unique(labels, return_counts=True), strict=True)}
    out: dict[str, Any] = {
        "n_clusters": len(np.unique(labels[clustered])),
        "noise_share": float(1.0 - clustered.mean()) if len(labels) else 0.0,
        "sizes": sizes,
        "largest_share": float(max(sizes.values()) / len(labels)) if len(labels) else 0.0,
    }
    rows = _sample_rows(len(x), sample_size, seed)
    rows = rows[clustered[rows]]
    kept = labels[rows]
    n_kept = len(np.unique(kept))
    out["silhouette"] = float(skm.silhouette_score(x[rows], kept)) if 1 < n_kept < len(rows) else None
    if y is not None:
        h, c, v = skm.homogeneity_completeness_v_measure(y, labels)
        table, row_ids, col_ids = contingency(y, labels)
        out.update(
            {
                "ari": float(skm.adjusted_rand_score(y, labels)),
                "nmi": float(skm.normalized_mutual_info_score(y, labels)),
                "homogeneity": float(h),
                "completeness": float(c),
                "v_measure": float(v),
                "purity": purity(y, labels),
                "ari_clustered": float(skm.adjusted_rand_score(y[clustered], labels[clustered]))
                if clustered.any()
                else None,
                "contingency": {"labels": row_ids, "clusters": col_ids, "counts": table.tolist()},
                "majority": majority_counts(y, labels),
            }
        )
    return out


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


def _enabled(config: ClusterConfig) -> list[str]:
    return [name for name in ALGORITHMS if getattr(config, name).enabled]


def cluster_all(
    x: np.ndarray, y: np.ndarray | None, config: ClusterConfig, progress: Progress = NULL_PROGRESS
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Run every enabled algorithm on prepared features.

    Returns
    -------
    (dict, dict, dict)
        Labels per algorithm; per-algorithm parameters chosen (k, eps, ...); curves for the
        figures (silhouette by k, k-distances).
    """
    from sklearn.cluster import HDBSCAN

    names = _enabled(config)
    if not names:
        raise FmnistError("every algorithm is disabled; enable at least one of kmeans, dbscan, hdbscan, agglomerative")
    task = progress.task("clustering", total=len(names))
    labels: dict[str, np.ndarray] = {}
    params: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    k_used: int | None = None
    n_labels = len(np.unique(y)) if y is not None else None

    def resolve_k(value: int | str) -> tuple[int | str, str]:
        if value == "labels":
            if n_labels is None or n_labels < 2:
                return "auto", "auto (the input has no labels)"
            return int(n_labels), "labels"
        return value, value if isinstance(value, str) else "given"

    if "kmeans" in names:
        cfg = config.kmeans
        k, k_mode = resolve_k(cfg.k)
        km = SilhouetteKMeans(
            k, tuple(cfg.k_range), cfg.n_init, config.silhouette_sample, config.seed, scan=cfg.k == "labels"
        ).fit(x)
        labels["kmeans"], k_used = km.labels_, km.n_clusters_
        params["kmeans"] = {"k": km.n_clusters_, "k_mode": k_mode}
        if km.silhouette_scores_:
            params["kmeans"]["k_best_silhouette"] = max(km.silhouette_scores_, key=km.silhouette_scores_.get)
        curves["silhouette_by_k"] = km.silhouette_scores_
        task.advance(1, k=km.n_clusters_)
    if "dbscan" in names:
        cfg = config.dbscan
        x_db, db_reduce = reduce_features(x, cfg.reduce, config.seed)
        db = AutoDBSCAN(cfg.eps, cfg.min_samples, cfg.max_noise, cfg.eps_rule).fit(x_db)
        labels["dbscan"] = db.labels_
        params["dbscan"] = {
            "eps": db.eps_,
            "knee_eps": db.knee_eps_,
            "min_samples": db.min_samples_,
            "eps_mode": f"auto ({cfg.eps_rule})" if cfg.eps == "auto" else "given",
            "reduce": db_reduce,
        }
        curves["k_distances"] = db.k_distances_
        curves["eps"], curves["knee_eps"], curves["min_samples"] = db.eps_, db.knee_eps_, db.min_samples_
        if db.noise_share_ >= 0.9:
            warnings.warn(
                f"DBSCAN marked {db.noise_share_:.0%} of the points as noise (eps={db.eps_:.4g}); "
                "raise dbscan.eps or lower dbscan.min_samples",
                ClusterWarning,
                stacklevel=2,
            )
        elif len(x) and np.bincount(db.labels_[db.labels_ >= 0]).max(initial=0) >= 0.9 * len(x) and (n_labels or 2) > 1:
            warnings.warn(
                f"DBSCAN put {np.bincount(db.labels_[db.labels_ >= 0]).max() / len(x):.0%} of the points in one "
                f"cluster (eps={db.eps_:.4g}); lower dbscan.eps",
                ClusterWarning,
                stacklevel=2,
            )
        task.advance(1, eps=db.eps_)
    if "hdbscan" in names:
        cfg = config.hdbscan
        size = max(5, len(x) // 100) if cfg.min_cluster_size == "auto" else int(cfg.min_cluster_size)
        size = min(size, max(2, len(x) // 2))
        model = HDBSCAN(min_cluster_size=size, min_samples=cfg.min_samples, copy=True).fit(x)
        labels["hdbscan"] = model.labels_.astype(np.int64)
        params["hdbscan"] = {"min_cluster_size": size, "min_samples": cfg.min_samples}
        task.advance(1)
    if "agglomerative" in names:
        cfg = config.agglomerative
        k = cfg.n_clusters
        if k == "kmeans":
            if k_used is None:
                raise FmnistError(
                    "agglomerative.n_clusters is 'kmeans' but kmeans is disabled; "
                    "set agglomerative.n_clusters to a number"
                )
            k = k_used
        agg = SampledAgglomerative(int(k), cfg.linkage, cfg.max_samples, config.seed).fit(x)
        labels["agglomerative"] = agg.labels_
        params["agglomerative"] = {"n_clusters": int(k), "linkage": cfg.linkage, "sampled": len(agg.sample_index_)}
        task.advance(1)
    task.close()
    return labels, params, curves


def run_cluster(
    config: ClusterConfig,
    input_dir: Path | str,
    out_dir: Path | str,
    images_dir: Path | str | None = None,
    originals_dir: Path | str | None = None,
    reference_dir: Path | str | None = None,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:
    """The ``cluster`` stage.

    Parameters
    ----------
    config : ClusterConfig
    input_dir : path
        A ``preprocess``, ``encode`` or ``train-som`` artefact.
    out_dir : path
        Output folder: ``labels.npz``, ``metrics.json``, ``figures/*.png`` and, when decoding,
        ``decoding.json``.
    images_dir : path or None
        The ``preprocess`` artefact with the images of the input rows (found from the input's
        manifest when omitted).
    originals_dir : path or None
        A ``preprocess`` artefact of the original 10-class Fashion-MNIST, for decoding the
        mystery labels by image content.
    reference_dir : path or None
        A 10-class ``train-cnn`` model trained on the original data, for decoding by prediction.

    Returns
    -------
    dict
        Summary: rows, dims, per-algorithm k / ARI / noise, decoding lines.
    """
    from fmnist_cluster import plots

    features = load_features(input_dir, config.split, images_dir)
    decoding_wanted = originals_dir is not None or reference_dir is not None
    if decoding_wanted:
        if features.y is None:
            raise FmnistError(f"{features.path} has no labels to decode; decoding needs a mystery-labelled input")
        if features.images is None:
            raise FmnistError(
                f"decoding needs the images of {features.path}; pass their preprocess folder with --images"
            )
    with StageRun("cluster", Path(out_dir), config.model_dump(mode="json"), seed=config.seed) as run:
        run.add_input(features.path, features.digest)
        for extra in (images_dir, originals_dir, reference_dir):
            if extra is not None:
                run.extra.setdefault("input_folders", []).append(str(extra))
        with run.timer("reduce"):
            x, reduce_record = reduce_features(features.x, config.reduce, config.seed)
        with run.timer("cluster"):
            labels, params, curves = cluster_all(x, features.y, config, progress)
        with run.timer("metrics"):
            scores = {
                name: {**params[name], **score_clustering(x, lab, features.y, config.silhouette_sample, config.seed)}
                for name, lab in labels.items()
            }
        index = np.arange(len(x), dtype=np.int64)
        arrays: dict[str, np.ndarray] = {"index": index, **labels}
        if features.y is not None:
            arrays["y"] = features.y
        run.save_npz(LABELS_FILE, **arrays)
        metrics = {
            "split": config.split,
            "n": len(x),
            "source_stage": features.source_stage,
            "kind": features.kind,
            "input": str(features.path),
            "input_sha256": features.digest,
            "reduce": reduce_record,
            "n_labels": len(np.unique(features.y)) if features.y is not None else None,
            "algorithms": scores,
            "silhouette_by_k": {str(k): v for k, v in curves.get("silhouette_by_k", {}).items()},
        }
        with run.timer("figures"):
            figures = []
            if curves.get("silhouette_by_k"):
                figures.append(
                    ("silhouette-by-k", plots.silhouette_by_k(curves["silhouette_by_k"], params["kmeans"]["k"]))
                )
            if "k_distances" in curves:
                figures.append(
                    (
                        "dbscan-k-distance",
                        plots.k_distance_curve(
                            curves["k_distances"], curves["eps"], curves["knee_eps"], curves["min_samples"]
                        ),
                    )
                )
            if features.y is not None:
                for name in labels:
                    table = scores[name]["contingency"]
                    figures.append(
                        (
                            f"contingency-{name}",
                            plots.contingency_heatmap(
                                np.array(table["counts"]),
                                table["labels"],
                                table["clusters"],
                                f"{name}: mystery label × cluster",
                            ),
                        )
                    )
                figures.append(
                    ("correct-incorrect", plots.correct_incorrect({n: scores[n]["majority"] for n in labels}))
                )
            if features.images is not None:
                if features.y is not None:
                    figures.append(
                        ("mean-image-per-label", plots.mean_images(features.images, features.y, features.class_names))
                    )
                for name in ("kmeans", "dbscan"):
                    if name in labels:
                        figures.append(
                            (
                                f"images-per-cluster-{name}",
                                plots.images_per_cluster(
                                    features.images, labels[name], config.images_per_cluster, config.seed, name
                                ),
                            )
                        )
            for name, fig in figures:
                run.save_bytes(figure_name(name), plots.figure_png(fig))
        summary_lines: list[str] = []
        if decoding_wanted:
            from fmnist_cluster.decode import decode_labels, decoding_figures

            with run.timer("decode"):
                decoding = decode_labels(
                    features.images, features.y, config.decode, originals_dir, reference_dir, labels, progress
                )
                for path, digest in decoding.pop("_inputs", {}).items():
                    run.add_input(path, digest)
                assigned = decoding.pop("_assigned")
                run.save_json("decoding.json", decoding)
                for name, fig in decoding_figures(
                    decoding, features.images, features.y, assigned, labels, config.decode.montage_images, config.seed
                ):
                    run.save_bytes(figure_name(name), plots.figure_png(fig))
            summary_lines = [entry["summary"] for entry in decoding["labels"]]
            metrics["decoding_method"] = decoding["method"]
        explanation: list[str] = []
        if config.explain.enabled and features.y is not None and features.class_names is None:
            explanation = _explain(
                run, config, features, input_dir, images_dir, originals_dir, reference_dir, labels, progress
            )
            metrics["explained"] = bool(explanation)
        run.save_json(METRICS_FILE, metrics)
        run.commit()
    return {
        "n": metrics["n"],
        "dims": reduce_record["dims"],
        "algorithms": {
            name: {k: s.get(k) for k in ("n_clusters", "ari", "noise_share", "silhouette")}
            for name, s in scores.items()
        },
        "decoding": summary_lines,
        "explanation": explanation,
    }


def _explain(
    run: StageRun,
    config: ClusterConfig,
    features: FeatureSet,
    input_dir: Path | str,
    images_dir: Path | str | None,
    originals_dir: Path | str | None,
    reference_dir: Path | str | None,
    labels: dict[str, np.ndarray],
    progress: Progress,
) -> list[str]:
    """Run the mystery-label explainer when the images of the input can be found."""
    from fmnist_cluster.explain.stage import run_explainer

    folder = Path(images_dir) if images_dir is not None else None
    if folder is None:
        manifest = read_manifest(input_dir, _PRODUCER)
        folder = Path(input_dir) if manifest.get("stage") == "preprocess" else recorded_images(manifest)
    if folder is None:
        warnings.warn(
            f"the images of {input_dir} were not found, so its mystery labels are not explained; "
            "pass their preprocess folder with --images",
            ClusterWarning,
            stacklevel=2,
        )
        return []
    with run.timer("explain"):
        return run_explainer(run, folder, config, labels, features.y, originals_dir, reference_dir, progress)
