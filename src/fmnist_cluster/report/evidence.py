"""The evidence part of the report: one section per artefact folder, in pipeline order.

Each ``--input`` folder is a finished artefact; its stage is read from its ``manifest.json``.
A section holds the folder's metrics as tables with readable names, its PNG figures grouped by
subject, and the figures that need two stages at once: the ``embed`` coordinates coloured by
the ``cluster`` labels of the same rows. Embeddings are read, never recomputed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import load_checked_npz, loads_json, read_checked, read_manifest, require_file
from fmnist_cluster.config import ReportConfig
from fmnist_cluster.errors import FmnistError, unexpected_structure
from fmnist_cluster.explain.search import hypothesis_name
from fmnist_cluster.report.document import Figure, Section, Table, fmt, pct, slug

STAGE_ORDER = ("preprocess", "train-som", "tune", "train-cnn", "encode", "cluster", "embed")
STAGE_TITLES = {
    "preprocess": "Data",
    "train-som": "Self-organising map",
    "tune": "SOM tuning",
    "train-cnn": "CNN training",
    "encode": "Encoding",
    "cluster": "Clustering",
    "embed": "Embeddings",
}
DEFAULT_INPUTS = tuple(
    Path("outputs") / name for name in ("data", "som", "tune", "cnn", "encoding", "cluster", "embed")
)
# an output name a manifest may list and the report may open: relative, no '..', plain characters
_SAFE_OUTPUT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
_CLUSTER_METRIC_COLUMNS = (
    ("n_clusters", "clusters"),
    ("k", "k"),
    ("k_best_silhouette", "k of the best silhouette"),
    ("eps", "eps"),
    ("min_samples", "min samples"),
    ("noise_share", "noise"),
    ("ari", "ARI"),
    ("ari_clustered", "ARI (clustered points)"),
    ("nmi", "NMI"),
    ("homogeneity", "homogeneity"),
    ("completeness", "completeness"),
    ("purity", "purity"),
    ("silhouette", "silhouette"),
)
METRIC_LABELS = {
    "test_accuracy": "test accuracy",
    "test_accuracy_single_view": "test accuracy (one view per image)",
    "test_loss": "test loss",
    "best_val_accuracy": "best validation accuracy",
    "best_epoch": "best epoch",
    "epochs_run": "epochs run",
    "n_parameters": "parameters",
    "n_train": "training rows",
    "n_val": "validation rows",
    "n_test": "test rows",
    "n_right": "test rows right",
    "n_wrong": "test rows wrong",
    "n_fit": "rows fitted",
    "n_classes": "labels (K)",
    "train_seconds": "training time (s)",
    "train_images_per_s": "training speed (images/s)",
    "inference_images_per_s": "inference speed (images/s)",
    "images_per_s": "speed (images/s)",
    "precision": "training precision",
    "test_flip": "mirrored test views",
    "qe": "quantisation error (fitted rows)",
    "te": "topographic error (fitted rows)",
    "test_qe": "quantisation error (test)",
    "test_te": "topographic error (test)",
    "train_accuracy": "neuron-majority accuracy (fitted rows, in-sample)",
    "mean_purity": "mean neuron purity",
    "weighted_purity": "weighted neuron purity",
    "neuron_usage": "share of neurons used",
    "neurons_used": "neurons used",
    "outlier_neurons": "outlier neurons",
    "pooled": "train and test pooled",
    "test_is_held_out": "test rows held out",
    "n_features": "features per row",
    "best_qe": "best trial: held-out QE",
    "best_te": "best trial: held-out TE",
    "best_score": "best trial: score",
    "best_trial": "best trial",
    "n_complete": "finished trials",
    "n_pruned": "pruned trials",
    "n_failed": "failed trials",
    "n_trials_total": "trials",
    "seconds_this_run": "seconds (this run)",
    "trials_this_run": "trials the study finished while this run ran (the others before it)",
    "in_sample": "measured on the rows it trained on (in-sample)",
    "wall_s": "the stage, from its start to publishing its output (s)",
    "seconds": "seconds",
    "dim": "features per row",
    "zero_share": "share of zero features",
    "pca_2_variance": "variance in the first two components",
    "class_counts_test": "rows per label (test)",
    "class_counts_train": "rows per label (train)",
}
# keys too long or too raw for a table; their content is in figures or dedicated tables
_SKIP_KEYS = {
    "history",
    "confusion_matrix",
    "per_class",
    "input_sha256",
    "outlier_fences",
    "pareto_trials",
    "explained_variance_ratio",
    "silhouette_by_k",
    "class_names",
    "storage",
    "quality",
}
_FIGURE_GROUPS = (
    ("history-", "Search"),  # tune's history-qe, history-te; a map's own history.png is training
    ("history", "Training"),
    ("learning-curves", "Training"),
    ("confusion-matrix", "Errors"),
    ("misclassified", "Errors"),
    ("importances", "Search"),
    ("pareto", "Search"),
    ("explain-", "Explainer"),
    ("decode-", "Decoding of the mystery labels"),
    ("contingency-", "Mystery label × cluster"),
    ("images-per-cluster", "Images per cluster"),
    ("mean-image", "Images per cluster"),
    ("silhouette", "Choosing k and eps"),
    ("dbscan-k-distance", "Choosing k and eps"),
    ("correct-incorrect", "Mystery label × cluster"),
    ("u-matrix", "Maps"),
    ("hit-map", "Maps"),
    ("labels-map", "Maps"),
    ("outliers", "Maps"),
    ("prototypes", "Prototypes and samples"),
    ("winners", "Prototypes and samples"),
    ("largest-qe", "Prototypes and samples"),
    ("pca", "PCA"),
    ("tsne", "t-SNE"),
    ("umap", "UMAP"),
)


_ANY_PRODUCER = "fmnist-cluster preprocess|train-som|tune|train-cnn|encode|cluster|embed"


def producer(stage: str) -> str:
    """The command that writes a stage's folder (for error messages)."""
    return f"fmnist-cluster {stage}" if stage in STAGE_ORDER else _ANY_PRODUCER


def metric_label(key: str) -> str:
    """A readable name for a (dotted) metrics key."""
    head, _, rest = key.partition(".")
    label = METRIC_LABELS.get(head, head.replace("_", " "))
    return f"{label}: {rest.replace('_', ' ').replace('.', ' › ')}" if rest else label


def metric_value(key: str, value: Any) -> str:
    """A metrics value as short text: an accuracy (a share in 0..1) as a percentage, as in the
    findings; anything else as :func:`fmt` writes it."""
    if "accuracy" in key.rsplit(".", 1)[-1] and isinstance(value, float) and 0 <= value <= 1:
        return pct(value)
    return fmt(value)


GROUP_ORDER = tuple(dict.fromkeys(group for _, group in _FIGURE_GROUPS))


def figure_group(stem: str) -> str:
    """The heading a figure is shown under, from its file name."""
    name = slug(stem)
    if name.startswith("embed-"):
        name = name[len("embed-") :]
    for prefix, group in _FIGURE_GROUPS:
        if name.startswith(prefix):
            return group
    return "Figures"


def safe_output(name: str) -> bool:
    """True for an output name that stays inside its folder."""
    return bool(_SAFE_OUTPUT.match(name)) and ".." not in name.split("/")


def _flatten(
    obj: Any, prefix: str = "", depth: int = 0, out: list[tuple[str, Any]] | None = None
) -> list[tuple[str, Any]]:
    """Scalar (and short-list) leaves of nested metrics as ``dotted.key`` rows."""
    out = [] if out is None else out
    if (
        isinstance(obj, dict)
        and prefix
        and 0 < len(obj) <= 12
        and all(not isinstance(v, (dict, list)) for v in obj.values())
    ):
        out.append((prefix, ", ".join(f"{k}: {fmt(v)}" for k, v in obj.items())))
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            if depth < 3 and not (depth == 0 and key in _SKIP_KEYS):
                _flatten(obj[key], f"{prefix}.{key}" if prefix else str(key), depth + 1, out)
    elif isinstance(obj, (list, tuple)):
        if len(obj) <= 12 and all(not isinstance(v, (dict, list)) for v in obj):
            out.append((prefix, list(obj)))
    else:
        out.append((prefix, obj))
    return out


def read_json(
    folder: Path, name: str, stage: str, inputs: dict[str, str], manifest: dict[str, Any] | None = None
) -> Any:
    """A JSON output of an artefact, checked against its manifest (read from the folder unless
    given); recorded in ``inputs``."""
    path, digest, content = read_checked(folder, name, producer(stage), manifest=manifest)
    inputs[str(path)] = digest
    try:
        return loads_json(content.tobytes())
    except ValueError:
        raise FmnistError(f"{path} is not valid JSON; run `{producer(stage)}` again") from None


_PER_ROW = {
    "embedding.npz": ("index", "pca", "tsne", "umap", "y"),
    "labels.npz": ("index", "y", "kmeans", "dbscan", "hdbscan", "agglomerative"),
    "explanation.npz": ("index", "y", "rule_label", "class_id"),
    "predictions.npz": ("y_true", "y_pred", "proba"),
}
"""The arrays of an output that hold one entry per row, so share one length."""
_POINTS = ("pca", "tsne", "umap")  # (rows, 2) coordinates


def read_npz(folder: Path, name: str, stage: str, inputs: dict[str, str], required: tuple[str, ...] = ()) -> Any:
    """An ``.npz`` output of an artefact, checked against its manifest and, when it holds one
    entry per row, for arrays of one length; recorded in ``inputs``."""
    path, digest, arrays = load_checked_npz(folder, name, producer(stage), required)
    per_row = [k for k in _PER_ROW.get(name, ()) if k in arrays]
    sizes = {k: len(arrays[k]) if arrays[k].ndim else -1 for k in per_row}
    points = [k for k in _POINTS if name == "embedding.npz" and k in arrays]
    if len(set(sizes.values())) > 1 or -1 in sizes.values() or any(arrays[k].shape[1:] != (2,) for k in points):
        shapes = ", ".join(f"{k} {arrays[k].shape}" for k in per_row)
        raise FmnistError(f"{path} holds arrays that do not fit together ({shapes}); run `{producer(stage)}` again")
    inputs[str(path)] = digest
    return arrays


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def collect(folder: Path, inputs: dict[str, str]) -> Section:
    """Read one artefact folder: its figures and the tables of its JSON outputs."""
    with unexpected_structure(f"artefact folder {folder}", "run the command that wrote it again"):
        return _collect(folder, inputs)


def _collect(folder: Path, inputs: dict[str, str]) -> Section:
    manifest = read_manifest(folder, _ANY_PRODUCER)
    stage = str(manifest["stage"])
    known = stage if stage in STAGE_ORDER else "other"
    section = Section(stage, folder, manifest)
    outputs = sorted(str(n) for n in manifest["outputs"] if safe_output(str(n)))
    figures = [n for n in outputs if n.endswith(".png")]
    jsons = [n for n in outputs if n.endswith(".json") and "/" not in n]
    for name in sorted(set(outputs) - set(figures) - set(jsons)):
        # every file the report stands on matches its manifest, not only those it shows (which
        # are checked as they are read, below)
        require_file(folder, name, producer(stage), manifest=manifest)
    for name in figures:
        path, digest, content = read_checked(folder, name, producer(stage), manifest=manifest)
        if content[: len(PNG_SIGNATURE)].tobytes() != PNG_SIGNATURE:
            raise FmnistError(f"{path} is not a PNG image; run `{producer(stage)}` again")
        inputs[str(path)] = digest
        stem = Path(name).stem
        caption = stem.replace("-", " ").replace("_", " ")
        section.figures.append(Figure(f"{known}-{slug(stem)}", caption, content.tobytes(), figure_group(stem)))
    for name in jsons:
        data = read_json(folder, name, stage, inputs, manifest)
        if name == "metrics.json":
            _check_metrics(folder / name, stage, data)
        if name == "metrics.json" and isinstance(data, dict):
            section.metrics = data
        if stage == "cluster" and name == "metrics.json":
            section.tables.extend(cluster_tables(data))
        elif stage == "cluster" and name == "decoding.json":
            section.tables.extend(decoding_tables(data))
        elif stage == "cluster" and name == "explanation.json":
            section.tables.extend(explanation_tables(data))
        else:
            rows = [[metric_label(k), metric_value(k, v)] for k, v in _flatten(data)][:80]
            if rows:
                title = "Metrics" if name == "metrics.json" else Path(name).stem.replace("_", " ")
                section.tables.append(Table(title, ["measure", "value"], rows))
        if stage == "embed" and name == "metrics.json" and isinstance(data.get("quality"), dict):
            section.tables.append(_embedding_quality(data["quality"]))
        if stage == "train-cnn" and name == "metrics.json" and isinstance(data.get("per_class"), dict):
            per_class = data["per_class"].items()
            rows = [[str(c.get("name", k)), pct(c.get("accuracy")), str(c.get("n", ""))] for k, c in per_class]
            section.tables.append(Table("Test accuracy per label", ["label", "accuracy", "test rows"], rows))
    timings = manifest.get("timings")
    if isinstance(timings, dict) and timings:  # the run's record: durations and speeds, not outputs
        rows = [[_timing_label(k), fmt(v)] for k, v in _flatten(timings)][:40]
        section.tables.append(Table("Times of this run", ["measure", "value"], rows))
    return section


def _embedding_quality(quality: dict[str, Any]) -> Table:
    """How well each 2-D map keeps the neighbourhoods of the rows it embeds."""
    rows = []
    for method, q in quality.items():
        q = q if isinstance(q, dict) else {}
        exact = "exact" if q.get("exact") else "on a sample"
        rows.append(
            [
                str(method),
                fmt(q.get("trustworthiness")),
                fmt(q.get("knn_preservation")),
                fmt(q.get("k")),
                fmt(q.get("points")),
                exact,
            ]
        )
    return Table(
        "Embedding quality",
        ["method", "trustworthiness", "k-NN preservation", "neighbours k", "points", "measured"],
        rows,
        "Trustworthiness: how few of a point's map neighbours are strangers in the original space (1 = none); "
        "k-NN preservation: the share of its k nearest neighbours that stay among its k nearest on the map.",
    )


def _timing_label(key: str) -> str:
    """A phase timed by the stage (``read``, ``train``, ...) in seconds, or a known measure."""
    return metric_label(key) if key in METRIC_LABELS or key.endswith("_per_s") else f"{metric_label(key)} (s)"


def _check_metrics(path: Path, stage: str, data: Any) -> None:
    """Refuse a ``metrics.json`` that is not a mapping, or a cluster run's without a table of
    scores per algorithm (what the report reads of them)."""
    algos = data.get("algorithms", {}) if isinstance(data, dict) else None
    if not isinstance(algos, dict) or not all(isinstance(a, dict) for a in algos.values()):
        raise FmnistError(f"{path} is not the metrics {stage} writes; run `{producer(stage)}` again")


def cluster_tables(metrics: dict[str, Any]) -> list[Table]:
    """The per-algorithm scores and the correct / incorrect counts of a ``cluster`` run."""
    algos = metrics.get("algorithms", {})
    columns = [c for c, _ in _CLUSTER_METRIC_COLUMNS if any(c in a for a in algos.values())]
    rows: list[list[Any]] = [[name] + [fmt(algos[name].get(c)) for c in columns] for name in algos]
    reduce = metrics.get("reduce", {})
    note = (
        f"{metrics.get('n')} {metrics.get('split')} rows of {metrics.get('kind')}; "
        f"{reduce.get('dims_in')} → {reduce.get('dims')} dims. Noise (DBSCAN/HDBSCAN label -1) counts as one cluster "
        "in ARI/NMI/purity; 'ARI (clustered points)' leaves it out."
    )
    db_reduce = algos.get("dbscan", {}).get("reduce") if isinstance(algos.get("dbscan"), dict) else None
    if isinstance(db_reduce, dict) and db_reduce.get("dims") != reduce.get("dims"):
        note += (
            f" DBSCAN ran on the first {db_reduce.get('dims')} principal components "
            f"({fmt(db_reduce.get('pca_explained_variance'))} of the variance): its eps is a distance there."
        )
    tables = [
        Table("Clustering metrics", ["algorithm"] + [dict(_CLUSTER_METRIC_COLUMNS)[c] for c in columns], rows, note)
    ]
    with_majority = [name for name, a in algos.items() if "majority" in a]
    if with_majority:
        labels = sorted({k for name in with_majority for k in algos[name]["majority"]}, key=int)
        rows = []
        for label in labels:
            cells = []
            for name in with_majority:
                v = algos[name]["majority"].get(label, {"correct": 0, "incorrect": 0})
                cells.append(f"{v['correct']} / {v['incorrect']}")
            rows.append([label, *cells])
        tables.append(
            Table(
                "Correct / incorrect per label (a point is correct when its cluster's majority label is its own; "
                "a noise point is incorrect, unlike in purity)",
                ["label", *with_majority],
                rows,
            )
        )
    return tables


def decoding_composition(entry: dict[str, Any]) -> str:
    """``Sandal 33 % + Sneaker 33 % + …`` of one label of ``decoding.json``."""
    return str(entry.get("summary", "")).split("≈", 1)[-1].strip()


def decoding_tables(decoding: dict[str, Any]) -> list[Table]:
    """What each mystery label is made of, by content matching and/or a reference model."""
    rows: list[list[Any]] = []
    for entry in decoding.get("labels", []):
        view = entry.get("clusters", {})
        where = ""
        for algo in ("kmeans", "agglomerative", "dbscan", "hdbscan"):
            if view.get(algo):
                where = f"{algo}: " + ", ".join(
                    f"{'noise' if c['cluster'] == -1 else 'cluster ' + str(c['cluster'])} {pct(c['share'], 0)}"
                    for c in view[algo][:4]
                )
                break
        rows.append(
            [
                str(entry["label"]),
                str(entry.get("n", "")),
                decoding_composition(entry),
                ", ".join(str(m) for m in entry.get("members", [])),
                where,
            ]
        )
    notes = [f"method: {decoding.get('method')}"]
    if "content" in decoding:
        c = decoding["content"]
        notes.append(f"content matching found {c['n_matched']} images ({c['match_rate']:.1%})")
    if "reference" in decoding and "agreement_with_content" in decoding["reference"]:
        r = decoding["reference"]
        notes.append(
            f"reference model agrees with content on {r['agreement_with_content']:.1%} of images; "
            f"same members: {fmt(r.get('same_members_as_content'))}"
        )
    notes.append(f"members hold ≥ {decoding.get('min_share', 0.1):.0%} of the label")
    tables = [
        Table(
            "Mystery-label decoding",
            ["label", "images", "composition", "members", "its largest clusters (share of the label)"],
            rows,
            "; ".join(notes),
        )
    ]
    if "content" in decoding and "reference" in decoding:
        comp: list[list[Any]] = [
            [str(a["label"]), decoding_composition(a), decoding_composition(b)]
            for a, b in zip(decoding["content"]["labels"], decoding["reference"]["labels"], strict=True)
        ]
        tables.append(
            Table("Decoding: content matching vs reference model", ["label", "content", "reference model"], comp)
        )
    return tables


def hypothesis_text(h: dict[str, Any] | None) -> str:
    """One line for a hypothesis of ``explanation.json``."""
    return hypothesis_name(h) if isinstance(h, dict) else "–"


def explanation_tables(explanation: dict[str, Any]) -> list[Table]:
    """The explainer's ranked hypotheses and the families it fitted or skipped."""
    rows: list[list[Any]] = []
    for i, cand in enumerate(explanation.get("candidates") or [], 1):
        if not isinstance(cand, dict):
            continue
        rules = cand.get("rules") or {}
        classes = cand.get("classes") or {}
        detail = "; ".join(
            f"{k}: {rules.get(k) or ' + '.join(str(c) for c in classes.get(k) or []) or '–'}"
            for k in sorted(set(rules) | set(classes), key=lambda s: (len(str(s)), str(s)))
        )
        chosen = " (chosen)" if cand == explanation.get("best_guess") else ""
        also = [str(k) for k in cand.get("also_found_by") or []]
        chosen += f"; the same rule as {', '.join(also)}" if also else ""
        rows.append(
            [
                str(i),
                hypothesis_text(cand) + chosen,
                pct(cand.get("validation_agreement")),
                pct(cand.get("agreement")),
                detail,
            ]
        )
    note = (
        f"verdict: {explanation.get('verdict')}; best agreement {pct(explanation.get('agreement'))} "
        f"on the test split, chance {pct(explanation.get('chance'))}. Ranked by agreement on the validation "
        "rows (carved from the training split), where the winner was chosen: the simplest one not "
        "significantly worse than the best; the test agreement is its score. Rules read pixels on the 0–255 "
        "scale of the original images (pixel_rR_cC: row R, column C from the top left) and sizes in pixels."
    )
    tables = [
        Table(
            "Explainer: hypotheses, best on validation first",
            ["rank", "hypothesis", "validation", "test agreement", "rules"],
            rows,
            note,
        )
    ]
    families = explanation.get("families") or {}
    if isinstance(families, dict) and families:
        rows = [[str(k), str(v)] for k, v in families.items()]
        tables.append(Table("Explainer: families", ["family", "status"], rows))
    return tables


def same_rows(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two ``metrics.json`` (cluster / embed) describe the same input rows."""
    return (
        a.get("input_sha256") is not None
        and a.get("input_sha256") == b.get("input_sha256")
        and a.get("split") == b.get("split")
        and a.get("n") == b.get("n")
    )


def cross_figures(sections: list[Section], config: ReportConfig, inputs: dict[str, str]) -> dict[Path, list[Figure]]:
    """Embedding coordinates coloured by the cluster labels of the same rows, per embed folder."""
    from fmnist_cluster import plots
    from fmnist_cluster.embed import EMBEDDING_FILE, METHOD_TITLES, axis_titles

    out: dict[Path, list[Figure]] = {}
    for emb in (s for s in sections if s.stage == "embed"):
        figures = out.setdefault(emb.folder, [])
        coords = read_npz(emb.folder, EMBEDDING_FILE, "embed", inputs, ("index",))
        for clu in (s for s in sections if s.stage == "cluster"):
            if not same_rows(clu.metrics, emb.metrics):
                continue
            labels = read_npz(clu.folder, "labels.npz", "cluster", inputs, ("index",))
            rng = np.random.default_rng(config.seed)
            for method in ("pca", "tsne", "umap"):
                if method not in coords:
                    continue
                pts = coords[method]
                ok = np.flatnonzero(~np.isnan(pts[:, 0]))
                if len(ok) > config.max_points:
                    ok = np.sort(rng.choice(ok, config.max_points, replace=False))
                for algo in ("kmeans", "dbscan", "hdbscan", "agglomerative"):
                    if algo not in labels:
                        continue
                    params = clu.metrics.get("algorithms", {}).get(algo, {})
                    detail = f"k = {params.get('n_clusters')}"
                    if algo == "dbscan":
                        detail = f"eps = {params.get('eps', 0):.3g}, {params.get('n_clusters')} clusters"
                    if algo in ("dbscan", "hdbscan"):
                        detail += f", noise {pct(params.get('noise_share', 0), 1)}"
                    title = f"{METHOD_TITLES[method]} coloured by {algo} ({detail})"
                    fig = plots.scatter_2d(pts[ok], labels[algo][ok], title, None, axis_titles(method), "cluster")
                    figures.append(
                        Figure(f"embed-{method}-by-{algo}", title, plots.figure_png(fig), METHOD_TITLES[method])
                    )
    return out
