"""Clustering estimators with automatic choices, following scikit-learn's contract
(keyword-only hyperparameters stored as given, ``fit(X, y=None)`` returns self, learned state
ends in ``_``, ``ValueError`` for bad hyperparameters, ``clone`` works):

* :class:`SilhouetteKMeans` -- KMeans whose k is given, or picked by silhouette over a range;
* :class:`AutoDBSCAN` -- DBSCAN whose ``eps`` is read off the k-distance curve and whose
  ``min_samples`` is 1 % of the points;
* :class:`SampledAgglomerative` -- a linkage tree on a sample, other points joined by their
  nearest sampled neighbour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from fmnist_cluster.config.cluster import EPS_RULES, LINKAGES
from fmnist_cluster.params import check_positive, check_seed, is_int, is_number


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` rows of ``n`` drawn without replacement (seeded, sorted); all rows when ``n <= size``."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


class SilhouetteKMeans(ClusterMixin, BaseEstimator):
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
    scan : bool
        With a given k, still compute the silhouette of every k in ``k_range``.

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
        *,
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
        if self.k != "auto" and not (is_int(self.k) and self.k >= 2):
            raise ValueError(f"unknown kmeans k '{self.k}'; valid: an integer >= 2, auto")
        k_range = tuple(self.k_range) if isinstance(self.k_range, tuple | list) else ()
        if not (len(k_range) == 2 and all(is_int(v) for v in k_range) and 2 <= k_range[0] <= k_range[1]):
            raise ValueError(f"kmeans k_range must be (low, high) ints with 2 <= low <= high, got {self.k_range!r}")
        for name, least in (("n_init", 1), ("sample_size", 2)):  # a silhouette needs two rows at least
            check_positive(f"kmeans {name}", getattr(self, name), integer=True, least=least)
        check_seed("kmeans random_state", self.random_state)
        low = self.k if self.k != "auto" else k_range[0]
        if n <= low:
            raise ValueError(f"kmeans needs more than {low} points, got {n}; lower kmeans.k or cluster more rows")

    def fit(self, X: np.ndarray, y: Any = None) -> SilhouetteKMeans:
        """Cluster ``X`` (N, D); ``y`` is ignored. Returns self."""
        x = np.asarray(X)
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        self._check_params(len(x))
        self.silhouette_scores_: dict[int, float] = {}
        best: tuple[float, int] | None = None
        if self.k == "auto" or self.scan:
            rows = sample_rows(len(x), self.sample_size, self.random_state)
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


class AutoDBSCAN(ClusterMixin, BaseEstimator):
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
        *,
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
        if self.eps != "auto" and not (is_number(self.eps) and self.eps > 0):
            raise ValueError(f"unknown dbscan eps '{self.eps}'; valid: a number > 0, auto")
        if self.min_samples != "auto" and not (is_int(self.min_samples) and self.min_samples >= 1):
            raise ValueError(f"unknown dbscan min_samples '{self.min_samples}'; valid: an integer >= 1, auto")
        if self.eps_rule not in EPS_RULES:
            raise ValueError(f"unknown dbscan eps_rule '{self.eps_rule}'; valid: {', '.join(EPS_RULES)}")
        noise = self.max_noise
        if not is_number(noise) or not 0 < noise < 1:
            raise ValueError(f"dbscan max_noise {self.max_noise!r} must be a number in (0, 1)")
        if n < 5:
            raise ValueError(f"dbscan needs at least 5 points, got {n}; cluster more rows or set dbscan.enabled=false")

    def fit(self, X: np.ndarray, y: Any = None) -> AutoDBSCAN:
        """Cluster ``X`` (N, D); ``y`` is ignored. Returns self."""
        x = np.asarray(X)
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


class SampledAgglomerative(ClusterMixin, BaseEstimator):
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
        self, *, n_clusters: int = 2, linkage: str = "ward", max_samples: int = 5000, random_state: int = 0
    ) -> None:
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.max_samples = max_samples
        self.random_state = random_state

    def _check_params(self, n: int) -> None:
        if self.linkage not in LINKAGES:
            raise ValueError(f"unknown linkage '{self.linkage}'; valid: {', '.join(LINKAGES)}")
        if not is_int(self.n_clusters) or self.n_clusters < 2:
            raise ValueError(f"agglomerative n_clusters {self.n_clusters!r} must be an integer >= 2")
        check_positive("agglomerative max_samples", self.max_samples, integer=True, least=2)
        check_seed("agglomerative random_state", self.random_state)
        if n <= self.n_clusters:
            raise ValueError(f"agglomerative clustering needs more than {self.n_clusters} points, got {n}")

    def fit(self, X: np.ndarray, y: Any = None) -> SampledAgglomerative:
        """Cluster ``X`` (N, D); ``y`` is ignored. Returns self."""
        x = np.asarray(X)
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.neighbors import NearestNeighbors

        self._check_params(len(x))
        rows = sample_rows(len(x), self.max_samples, self.random_state)
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
