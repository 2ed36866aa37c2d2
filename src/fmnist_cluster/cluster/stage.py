"""The ``cluster`` stage: run every enabled algorithm on the prepared features, score them
against the labels, draw the figures, decode and explain mystery labels.

:func:`run_cluster` writes ``labels.npz`` (one label array per algorithm, noise is -1),
``metrics.json``, figures, and, when ``--originals`` or ``--reference`` is given,
``decoding.json`` (see :mod:`fmnist_cluster.decode`); with mystery labels, the explainer's
``explanation.json`` (see :mod:`fmnist_cluster.explain`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun, figure_name, read_manifest
from fmnist_cluster.cluster.estimators import AutoDBSCAN, SampledAgglomerative, SilhouetteKMeans
from fmnist_cluster.cluster.metrics import score_clustering
from fmnist_cluster.config import ClusterConfig
from fmnist_cluster.errors import FmnistError, FmnistWarning
from fmnist_cluster.features import FEATURES_PRODUCER, FeatureSet, load_features, recorded_images, reduce_features

ALGORITHMS = ("kmeans", "dbscan", "hdbscan", "agglomerative")
LABELS_FILE = "labels.npz"
METRICS_FILE = "metrics.json"


class ClusterWarning(FmnistWarning):
    """A clustering result the user should look at (e.g. DBSCAN found nothing)."""


def _fit(name: str, estimator: Any, x: np.ndarray) -> Any:
    """Fit one clustering estimator; its ``ValueError`` becomes our one-line error."""
    try:
        return estimator.fit(x)
    except ValueError as exc:
        raise FmnistError(f"{name}: {exc}") from None


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
                return "auto", "auto (the input has no labels)" if n_labels is None else "auto (one label only)"
            return int(n_labels), "labels"
        return value, value if isinstance(value, str) else "given"

    if "kmeans" in names:
        cfg = config.kmeans
        k, k_mode = resolve_k(cfg.k)
        km = _fit(
            "kmeans",
            SilhouetteKMeans(
                k=k,
                k_range=tuple(cfg.k_range),
                n_init=cfg.n_init,
                sample_size=config.silhouette_sample,
                random_state=config.seed,
                scan=cfg.k == "labels",
            ),
            x,
        )
        labels["kmeans"], k_used = km.labels_, km.n_clusters_
        params["kmeans"] = {"k": km.n_clusters_, "k_mode": k_mode}
        if km.silhouette_scores_:
            params["kmeans"]["k_best_silhouette"] = max(km.silhouette_scores_, key=km.silhouette_scores_.get)
        curves["silhouette_by_k"] = km.silhouette_scores_
        task.advance(1, k=km.n_clusters_)
    if "dbscan" in names:
        cfg = config.dbscan
        x_db, db_reduce = reduce_features(x, cfg.reduce, config.seed)
        if cfg.eps != "auto" and "divided_by" in db_reduce:
            warnings.warn(
                f"the features were divided by {db_reduce['divided_by']:.3g} (too large or too small for float32), "
                f"so dbscan.eps {cfg.eps} applies to the divided features; try dbscan.eps=auto",
                ClusterWarning,
                stacklevel=2,
            )
        db = _fit(
            "dbscan",
            AutoDBSCAN(eps=cfg.eps, min_samples=cfg.min_samples, max_noise=cfg.max_noise, eps_rule=cfg.eps_rule),
            x_db,
        )
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
            if db.eps_ <= 0:
                fix = "the rows lie on top of each other and cannot be split"
            elif cfg.eps == "auto":  # chosen under the noise cap: a smaller eps marks more rows as noise
                fix = (
                    f"eps was chosen under dbscan.max_noise={cfg.max_noise:g}; raise it to allow a smaller eps, "
                    "or set dbscan.eps"
                )
            else:
                fix = "lower dbscan.eps"
            warnings.warn(
                f"DBSCAN put {np.bincount(db.labels_[db.labels_ >= 0]).max() / len(x):.0%} of the points in one "
                f"cluster (eps={db.eps_:.4g}); {fix}",
                ClusterWarning,
                stacklevel=2,
            )
        task.advance(1, eps=db.eps_)
    if "hdbscan" in names:
        cfg = config.hdbscan
        size = max(5, len(x) // 100) if cfg.min_cluster_size == "auto" else int(cfg.min_cluster_size)
        size = min(size, max(2, len(x) // 2))
        if cfg.min_samples is not None and cfg.min_samples > len(x):
            raise FmnistError(
                f"hdbscan.min_samples={cfg.min_samples} is more than the {len(x)} rows clustered; "
                f"set it to at most {len(x)} (or null, the default)"
            )
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
        agg = _fit(
            "agglomerative",
            SampledAgglomerative(
                n_clusters=int(k), linkage=cfg.linkage, max_samples=cfg.max_samples, random_state=config.seed
            ),
            x,
        )
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
            "input_sha256": features.digest,
            "reduce": reduce_record,
            "n_labels": len(np.unique(features.y)) if features.y is not None else None,
            "algorithms": scores,
            "silhouette_by_k": {str(k): v for k, v in curves.get("silhouette_by_k", {}).items()},
        }
        with run.timer("figures"):
            figures = []
            if curves.get("silhouette_by_k"):
                final = scores.get("kmeans", {}).get("silhouette")
                figures.append(
                    (
                        "silhouette-by-k",
                        plots.silhouette_by_k(curves["silhouette_by_k"], params["kmeans"]["k"], final),
                    )
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
        decoding: dict[str, Any] | None = None
        if decoding_wanted:
            from fmnist_cluster.decode import decode_labels

            with run.timer("decode"):
                decoding = decode_labels(
                    features.images, features.y, config.decode, originals_dir, reference_dir, labels, progress
                )
                for path, digest in decoding.pop("_inputs", {}).items():
                    run.add_input(path, digest)
                assigned = decoding.pop("_assigned")
                run.save_json("decoding.json", decoding)
            summary_lines = [entry["summary"] for entry in decoding["labels"]]
            metrics["decoding_method"] = decoding["method"]
        explanation: list[str] = []
        verdict: str | None = None
        if config.explain.enabled and features.y is not None and features.class_names is None:
            verdict, explanation = _explain(
                run, config, features, input_dir, images_dir, originals_dir, reference_dir, labels, progress
            )
            metrics["explanation_verdict"] = verdict
        if decoding is not None:
            from fmnist_cluster.decode import decoding_figures

            # a label the explainer drew (its montage titled with the label's rule) is not drawn again
            drawn = {
                e["label"] for e in decoding["labels"] if run.path(figure_name(f"explain-label-{e['label']}")).exists()
            }
            with run.timer("decode"):
                for name, fig in decoding_figures(
                    decoding,
                    features.images,
                    features.y,
                    assigned,
                    labels,
                    config.decode.montage_images,
                    config.seed,
                    skip_montages=drawn,
                ):
                    run.save_bytes(figure_name(name), plots.figure_png(fig))
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
) -> tuple[str | None, list[str]]:
    """Run the mystery-label explainer when the images of the input can be found."""
    from fmnist_cluster.explain.stage import run_explainer

    folder = Path(images_dir) if images_dir is not None else None
    if folder is None:
        manifest = read_manifest(input_dir, FEATURES_PRODUCER)
        folder = Path(input_dir) if manifest.get("stage") == "preprocess" else recorded_images(manifest)
    if folder is None:
        warnings.warn(
            f"the images of {input_dir} were not found, so its mystery labels are not explained; "
            "pass their preprocess folder with --images",
            ClusterWarning,
            stacklevel=2,
        )
        return None, []
    with run.timer("explain"):
        return run_explainer(run, folder, config, labels, features.y, originals_dir, reference_dir, progress)
