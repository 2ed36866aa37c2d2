"""The ``embed`` stage: 2-D maps of features for looking at them.

* PCA, with the explained variance of the first ``pca_components`` components;
* t-SNE on the first 50 principal components: openTSNE's FFT-accelerated t-SNE by default,
  scikit-learn's Barnes-Hut with ``tsne.method: barnes-hut``;
* UMAP when the optional ``umap-learn`` package is installed (recorded as skipped otherwise).

``embedding.npz`` holds ``index`` (rows of the chosen split), ``y`` when labelled, and one
(N, 2) array per method (``pca``, ``tsne``, ``umap``); rows a method did not embed (t-SNE on a
sample) are NaN. ``report`` reuses these coordinates and never recomputes them.
``metrics.json`` scores every map by trustworthiness and k-NN preservation
(:mod:`fmnist_cluster.quality`; on a sample of rows when there are many).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun, figure_name
from fmnist_cluster.cluster.estimators import sample_rows
from fmnist_cluster.config import TSNE_METHODS, EmbedConfig, ReduceConfig
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.features import FeatureSet, load_features

EMBEDDING_FILE = "embedding.npz"
METHOD_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def axis_titles(method: str) -> tuple[str, str]:
    """The names of the two axes of a 2-D embedding: ``PC1``, ``PC2`` or ``t-SNE 1``, ``t-SNE 2``..."""
    if method == "pca":
        return "PC1", "PC2"
    return f"{METHOD_TITLES[method]} 1", f"{METHOD_TITLES[method]} 2"


def umap_available() -> bool:
    """True when the optional ``umap-learn`` package can be imported."""
    return importlib.util.find_spec("umap") is not None


def pca_embedding(x: np.ndarray, n_components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal-component scores and the explained-variance ratios of the
    first ``n_components`` components."""
    from sklearn.decomposition import PCA

    n_components = max(2, min(n_components, x.shape[0], x.shape[1]))
    pca = PCA(n_components=n_components, random_state=seed)
    scores = pca.fit_transform(np.asarray(x, dtype=np.float64))
    return scores[:, :2].astype(np.float32), pca.explained_variance_ratio_.astype(np.float64)


EARLY_EXAGGERATION_ITER = 250
#: openTSNE's interpolation grid gets one interval per this many units of the embedding's span
#: (its default, 1, spends most of the time on a grid finer than t-SNE needs: on 10,000 x 64,
#: 2 is 3.7x faster with the same trustworthiness, docs/benchmarks.md)
FFT_INTS_IN_INTERVAL = 2


def _exact_neighbours_index() -> type:
    from openTSNE.nearest_neighbors import KNNIndex

    from fmnist_cluster.quality import exact_neighbours

    class ExactNeighbours(KNNIndex):
        """openTSNE's neighbour search replaced by an exact, deterministic one in torch (faster
        than its approximate default on up to 70,000 rows of 50 principal components)."""

        VALID_METRICS = ("euclidean",)

        def build(self) -> tuple[np.ndarray, np.ndarray]:
            return exact_neighbours(self.data, self.k)

    return ExactNeighbours


def _ExactNeighbours(x: np.ndarray, k: int) -> Any:  # builds the class lazily: openTSNE is imported late
    return _exact_neighbours_index()(x, k)


def tsne_embedding(
    x: np.ndarray,
    perplexity: float = 30.0,
    max_iter: int = 750,
    pca_components: int = 50,
    seed: int = 0,
    threads: int | None = None,
    method: str = "fft",
) -> np.ndarray:
    """2-D t-SNE of ``x`` after a projection on its first ``pca_components`` principal
    components, with PCA initialisation and automatic learning rate, on ``threads`` CPU
    threads (None: one per core).

    ``method`` is ``fft`` (openTSNE's FFT-accelerated interpolation: time linear in the rows)
    or ``barnes-hut`` (scikit-learn). ``max_iter`` counts every step, the first 250 with early
    exaggeration, for both.
    """
    from sklearn.decomposition import PCA

    if method not in TSNE_METHODS:
        raise ValueError(f"unknown t-SNE method '{method}'; valid: {', '.join(TSNE_METHODS)}")
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 5:
        raise FmnistError(f"t-SNE needs at least 5 rows, got {len(x)}; disable it with --set tsne.enabled=false")
    if x.shape[1] > pca_components and len(x) > pca_components:
        x = PCA(n_components=pca_components, random_state=seed).fit_transform(x).astype(np.float32)
    perplexity = min(perplexity, (len(x) - 1) / 3.0)
    n_jobs = threads or os.cpu_count() or 1
    if method == "fft":
        from openTSNE import TSNE as OpenTSNE
        from openTSNE.affinity import PerplexityBasedNN

        model: Any = OpenTSNE(
            n_components=2,
            early_exaggeration_iter=EARLY_EXAGGERATION_ITER,
            n_iter=max_iter - EARLY_EXAGGERATION_ITER,
            learning_rate="auto",
            negative_gradient_method="fft",
            ints_in_interval=FFT_INTS_IN_INTERVAL,
            random_state=seed,
            n_jobs=n_jobs,
        )
        k = min(len(x) - 1, int(3 * perplexity))

        def fit(x: np.ndarray) -> Any:
            affinities = PerplexityBasedNN(perplexity=perplexity, knn_index=_ExactNeighbours(x, k), n_jobs=n_jobs)
            return model.fit(X=x, affinities=affinities, initialization="pca")

    else:
        from sklearn.manifold import TSNE

        model = TSNE(
            n_components=2,
            perplexity=perplexity,
            max_iter=max_iter,
            init="pca",
            learning_rate="auto",
            random_state=seed,
            n_jobs=n_jobs,
        )
        fit = model.fit_transform
    from threadpoolctl import threadpool_limits

    # an OpenMP runtime left at its default spins on idle cores; pin every pool to the threads used
    with threadpool_limits(limits=n_jobs):
        return np.asarray(fit(x), dtype=np.float32)


UMAP_MIN_ROWS = 4
"""Fewest rows ``embed`` gives UMAP (its spectral start fails on 3 rows or fewer)."""


def umap_embedding(x: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """2-D UMAP of ``x`` (needs ``umap-learn``)."""
    import umap

    model = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, random_state=seed)
    return np.asarray(model.fit_transform(np.asarray(x, dtype=np.float32)), dtype=np.float32)


def _label_names(features: FeatureSet) -> list[str] | None:
    return list(features.class_names) if features.class_names is not None else None


def run_embed(
    config: EmbedConfig, input_dir: Path | str, out_dir: Path | str, progress: Progress = NULL_PROGRESS
) -> dict[str, Any]:
    """The ``embed`` stage.

    Parameters
    ----------
    config : EmbedConfig
    input_dir : path
        A ``preprocess``, ``encode`` or ``train-som`` artefact.
    out_dir : path
        Output folder: ``embedding.npz``, ``metrics.json`` and ``figures/*.png``.

    Returns
    -------
    dict
        Rows, methods computed, variance of the first two components, neighbourhood quality and
        seconds per method (the seconds are in the manifest's ``timings``, not in ``metrics.json``:
        a run's durations are not part of its outputs).
    """
    from fmnist_cluster import plots
    from fmnist_cluster.features import reduce_features

    features = load_features(input_dir, config.split, images=None, find_images=False)
    methods = ["pca"] + (["tsne"] if config.tsne.enabled else [])
    skipped: dict[str, str] = {}
    if config.umap.enabled:
        if umap_available():
            methods.append("umap")
        else:
            skipped["umap"] = "the optional package umap-learn is not installed (pip install umap-learn)"
    n = len(features.x)
    if n < 2:
        raise FmnistError(f"{features.path} has {n} {config.split} row(s); embed needs at least 2 (try --split all)")
    if features.x.shape[1] < 2:
        raise FmnistError(f"{features.path} has {features.x.shape[1]} feature column(s); a 2-D map needs at least 2")
    if "umap" in methods and n < UMAP_MIN_ROWS:
        raise FmnistError(
            f"UMAP needs at least {UMAP_MIN_ROWS} rows, got {n}; disable it with --set umap.enabled=false"
        )
    with StageRun("embed", Path(out_dir), config.model_dump(mode="json"), seed=config.seed) as run:
        run.add_input(features.path, features.digest)
        x, _ = reduce_features(features.x, ReduceConfig(standardize=config.standardize), config.seed)
        if not (x != x[0]).any():
            hint = (
                "a layer that gives the same output for every image? encode another --layer"
                if (features.kind == "encoding")
                else "every image is the same"
            )
            raise FmnistError(
                f"every {config.split} row of {features.path} has the same features: there is nothing to embed ({hint})"
            )
        task = progress.task("embedding", total=len(methods))
        coords: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        with run.timer("pca"):
            coords["pca"], ratios = pca_embedding(x, config.pca_components, config.seed)
        task.advance(1)
        if "tsne" in methods:
            limit = config.tsne.max_points
            rows = np.arange(n) if limit is None else sample_rows(n, limit, config.seed)
            full = np.full((n, 2), np.nan, dtype=np.float32)
            with run.timer("tsne"):
                full[rows] = tsne_embedding(
                    x[rows],
                    config.tsne.perplexity,
                    config.tsne.max_iter,
                    config.tsne.pca_components,
                    config.seed,
                    config.threads,
                    config.tsne.method,
                )
            coords["tsne"] = full
            task.advance(1)
        if "umap" in methods:
            with run.timer("umap"):
                coords["umap"] = umap_embedding(x, config.umap.n_neighbors, config.umap.min_dist, config.seed)
            task.advance(1)
        task.close()
        seconds = {m: run.timings.get(m, 0.0) for m in methods}
        with run.timer("quality"):
            quality = _quality(x, coords, config)
        arrays: dict[str, np.ndarray] = {
            "index": np.arange(n, dtype=np.int64),
            **coords,
            "explained_variance_ratio": ratios,
        }
        if features.y is not None:
            arrays["y"] = features.y
        run.save_npz(EMBEDDING_FILE, **arrays)
        names = _label_names(features)
        with run.timer("figures"):
            run.save_bytes(figure_name("pca-variance"), plots.figure_png(plots.explained_variance(ratios)))
            for method, pts in coords.items():
                ok = ~np.isnan(pts[:, 0])
                axis = axis_titles(method)
                title = f"{METHOD_TITLES[method]} of {features.kind} ({int(ok.sum())} {config.split} rows), by label"
                fig = plots.scatter_2d(pts[ok], None if features.y is None else features.y[ok], title, names, axis)
                run.save_bytes(figure_name(f"{method}-by-label"), plots.figure_png(fig))
        metrics = {
            "split": config.split,
            "n": n,
            "kind": features.kind,
            "input_sha256": features.digest,
            "dims": int(x.shape[1]),
            "methods": methods,
            "skipped": skipped,
            "quality": quality,
            "explained_variance_ratio": [round(float(r), 6) for r in ratios],
            "pca_2_variance": float(ratios[:2].sum()),
        }
        run.save_json("metrics.json", metrics)
        run.commit()
    return {
        "n": n,
        "methods": methods,
        "skipped": skipped,
        "pca_2_variance": metrics["pca_2_variance"],
        "seconds": seconds,
        "quality": quality,
    }


def _quality(x: np.ndarray, coords: dict[str, np.ndarray], config: EmbedConfig) -> dict[str, Any]:
    """Trustworthiness and k-NN preservation of every map, on the rows it embedded."""
    from fmnist_cluster.quality import neighbourhood_scores

    scores: dict[str, Any] = {}
    for method, pts in coords.items():
        ok = np.flatnonzero(~np.isnan(pts[:, 0]))
        k = min(config.quality.k, (len(ok) - 1) // 2)
        if k < 1:
            continue
        scores[method] = neighbourhood_scores(x[ok], pts[ok], k, config.quality.points, config.seed)
    return scores
