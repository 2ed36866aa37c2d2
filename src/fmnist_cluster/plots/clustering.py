"""Figures of clustering, embedding and decoding (``cluster``, ``embed``): 2-D maps, choice of
k and eps, label-by-cluster tables, and images per label or cluster."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from fmnist_cluster.plots.common import label_colours
from fmnist_cluster.plots.images import as_images, montage, stack_rows, tile_figure


def scatter_2d(
    points: np.ndarray,
    labels: np.ndarray | None,
    title: str,
    names: Sequence[str] | None = None,
    axis_labels: tuple[str, str] = ("1", "2"),
    legend_title: str = "label",
) -> Figure:
    """A 2-D embedding coloured by a label per point (-1 is drawn grey as noise).

    Parameters
    ----------
    points : ndarray, shape (N, 2)
    labels : ndarray of int, shape (N,), or None
        Colour groups (None: one colour).
    title : str
    names : sequence of str, optional
        Legend name of label ``i`` (otherwise its number).
    axis_labels : (str, str)
    legend_title : str
    """
    fig, ax = plt.subplots(figsize=(7.2, 6.0))
    size = 4 if len(points) > 3000 else 10
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6, linewidths=0)
    else:
        values = np.unique(labels)
        real = [v for v in values if v >= 0]
        colours = label_colours(len(real))
        if -1 in values:
            m = labels == -1
            ax.scatter(
                points[m, 0], points[m, 1], s=size, c="0.75", alpha=0.5, linewidths=0, label=f"noise ({m.sum()})"
            )
        for colour, v in zip(colours, real, strict=True):
            m = labels == v
            name = names[v] if names is not None and v < len(names) else str(v)
            ax.scatter(
                points[m, 0], points[m, 1], s=size, color=colour, alpha=0.7, linewidths=0, label=f"{name} ({m.sum()})"
            )
        ncol = 1 if len(values) <= 12 else 2
        ax.legend(
            title=legend_title,
            fontsize=7,
            markerscale=3 if size < 10 else 1.5,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            ncol=ncol,
            frameon=False,
        )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def explained_variance(ratios: np.ndarray, title: str = "PCA: explained variance") -> Figure:
    """Per-component and cumulative explained variance ratio."""
    ratios = np.asarray(ratios)
    fig, ax = plt.subplots(figsize=(7, 4))
    idx = np.arange(1, len(ratios) + 1)
    ax.bar(idx, ratios, color="tab:blue", alpha=0.6, label="per component")
    ax.plot(idx, np.cumsum(ratios), color="tab:red", marker=".", label="cumulative")
    ax.set_xlabel("component")
    ax.set_ylabel("share of variance")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def silhouette_by_k(scores: dict[int, float], chosen: int, final: float | None = None) -> Figure:
    """Silhouette of KMeans for every k tried (the scan's quick fits, fewer restarts), the
    chosen k marked, and the silhouette of the final fit at it when given."""
    ks = sorted(scores)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(ks, [scores[k] for k in ks], marker="o", label="scan (quick fits)")
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen k = {chosen}")
    if final is not None and np.isfinite(final):
        ax.plot(
            [chosen],
            [final],
            marker="*",
            markersize=14,
            color="tab:red",
            linestyle="none",
            label=f"final fit at k = {chosen}: {final:.3f}",
        )
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette (sample)")
    ax.set_title("KMeans: silhouette by number of clusters")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def k_distance_curve(distances: np.ndarray, eps: float, knee_eps: float, min_samples: int) -> Figure:
    """Sorted k-distance curve of DBSCAN with the knee and the eps used."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(np.arange(len(distances)), distances, lw=1.2)
    ax.axhline(knee_eps, color="tab:orange", linestyle=":", label=f"knee = {knee_eps:.4g}")
    ax.axhline(eps, color="tab:red", linestyle="--", label=f"eps used = {eps:.4g}")
    beyond = float(np.mean(distances > eps)) if len(distances) else 0.0
    ax.set_xlabel("points sorted by k-distance")
    ax.set_ylabel(f"distance to neighbour #{min_samples}")
    ax.set_title(f"DBSCAN k-distance curve (min_samples = {min_samples}; {beyond:.1%} not core: k-distance > eps)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def contingency_heatmap(
    table: np.ndarray,
    row_ids: Sequence[int],
    col_ids: Sequence[int],
    title: str,
    row_title: str = "mystery label",
    col_title: str = "cluster",
    row_names: Sequence[str] | None = None,
    col_names: Sequence[str] | None = None,
) -> Figure:
    """A count table as a heatmap, cells annotated with counts, shaded by their share of the
    row (the colour bar)."""
    table = np.asarray(table)
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    nr, nc = table.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * nc + 2.5), max(3.0, 0.45 * nr + 1.8)))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=f"share of the {row_title}'s rows")
    for i in range(nr):
        for j in range(nc):
            if table[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(table[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black",
                )
    named = col_names is not None
    ticks = list(col_names) if named else ["noise" if c == -1 else str(c) for c in col_ids]
    ax.set_xticks(range(nc), labels=ticks, rotation=45 if named else 0, ha="right" if named else "center", fontsize=8)
    ax.set_yticks(range(nr), labels=list(row_names) if row_names is not None else [str(r) for r in row_ids], fontsize=8)
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def correct_incorrect(majority: dict[str, dict[str, dict[str, int]]]) -> Figure:
    """Per algorithm and label, points in a cluster whose majority label is theirs (correct)
    and the others (incorrect, noise included)."""
    names = list(majority)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        labels = sorted(majority[name], key=int)
        good = [majority[name][k]["correct"] for k in labels]
        bad = [majority[name][k]["incorrect"] for k in labels]
        pos = np.arange(len(labels))
        ax.bar(pos, good, color="tab:green", label="correct")
        ax.bar(pos, bad, bottom=good, color="tab:red", label="incorrect")
        ax.set_xticks(pos, labels=labels)
        total = sum(good) + sum(bad)
        ax.set_title(f"{name}: {sum(good) / max(total, 1):.1%} correct", fontsize=9)
        ax.set_xlabel("label")
    axes[0, 0].set_ylabel("points")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncols=2, frameon=False)
    fig.suptitle("Correct / incorrect by majority label of the cluster (noise counts as incorrect)", fontsize=10)
    fig.tight_layout()
    return fig


def mean_images(images: np.ndarray, labels: np.ndarray, names: Sequence[str] | None = None) -> Figure:
    """The mean image of every label."""
    tiles = as_images(images)
    values = np.unique(labels)
    means = np.stack([tiles[labels == v].mean(axis=0) for v in values])
    titles = [
        f"{names[v] if names is not None and v < len(names) else f'label {v}'} ({int((labels == v).sum())})"
        for v in values
    ]
    return montage(means, titles, ncols=min(10, len(values)), suptitle="Mean image per label", tile_inches=1.4)


def images_per_cluster(images: np.ndarray, labels: np.ndarray, per_cluster: int, seed: int, name: str) -> Figure:
    """Random images of every cluster, one row per cluster (at most 30 clusters; noise last)."""
    tiles = as_images(images)
    rng = np.random.default_rng(seed)
    clusters = [c for c in np.unique(labels) if c >= 0][:30] + ([-1] if (labels == -1).any() else [])
    rows, names = [], []
    for c in clusters:
        members = np.flatnonzero(labels == c)
        rows.append(tiles[np.sort(rng.choice(members, size=min(per_cluster, len(members)), replace=False))])
        names.append(f"{'noise' if c == -1 else c} ({len(members)})")
    return tile_figure(
        stack_rows(rows, per_cluster, tiles.shape[1:]),
        per_cluster,
        row_labels=names,
        title=f"Random images per cluster ({name}); row label: cluster (size)",
        tile_inches=0.75,
    )


def label_composition(rows: Sequence[str], shares: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Horizontal stacked bars: the share of every class in every mystery label."""
    shares = np.asarray(shares)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.6))
    left = np.zeros(len(rows))
    colours = label_colours(len(class_names))
    for j, name in enumerate(class_names):
        ax.barh(range(len(rows)), shares[:, j], left=left, color=colours[j], label=name)
        for i in range(len(rows)):
            if shares[i, j] >= 0.08:
                ax.text(left[i] + shares[i, j] / 2, i, f"{shares[i, j]:.0%}", ha="center", va="center", fontsize=7)
        left += shares[:, j]
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the label's images")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
