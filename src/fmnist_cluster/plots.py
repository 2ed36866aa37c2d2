"""Every figure of the toolkit. Functions take arrays, return a matplotlib Figure, and
never touch the disk; :func:`figure_png` turns a figure into PNG bytes for
:meth:`fmnist_cluster.artefacts.StageRun.save_bytes`.

Figures use the non-interactive Agg backend, so they render on machines with no screen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

DPI = 110


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Render ``fig`` to PNG bytes (no timestamp metadata, so the bytes are repeatable)
    and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def as_images(x: np.ndarray) -> np.ndarray:
    """(N, 1, 28, 28), (N, 28, 28) or (N, 784) pixels as (N, 28, 28)."""
    x = np.asarray(x)
    if x.ndim == 4:
        return x[:, 0]
    if x.ndim == 2:
        side = round(float(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise ValueError(f"rows of width {x.shape[1]} are not square images")
        return x.reshape(len(x), side, side)
    return x


def image_strip_png(images: np.ndarray, scale: int = 2, gap: int = 2) -> bytes:
    """A row of 28×28 uint8 images as one small PNG, dark on white like the other montages
    (grey gaps between images), for a table cell."""

    tiles = as_images(np.asarray(images, dtype=np.uint8))
    n, h, w = tiles.shape if len(tiles) else (0, 28, 28)
    strip = np.full((h, max(n * (w + gap) - gap, 1)), 200, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        strip[:, i * (w + gap) : i * (w + gap) + w] = 255 - tile
    return grey_png(np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1))


def grey_png(pixels: np.ndarray) -> bytes:
    """A 2-D uint8 array as a greyscale PNG (repeatable bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def montage(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 10,
    suptitle: str | None = None,
    cmap: str = "gray_r",
    tile_inches: float = 1.1,
) -> Figure:
    """A grid of images with optional per-tile titles.

    Parameters
    ----------
    images : ndarray
        (N, 1, 28, 28), (N, 28, 28) or (N, 784).
    titles : sequence of str, optional
        One short title per image.
    ncols : int
        Tiles per row.
    suptitle : str, optional
        Title of the whole figure.
    """
    tiles = as_images(images)
    n = max(len(tiles), 1)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * tile_inches, nrows * tile_inches * 1.15), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < len(tiles):
            ax.imshow(
                tiles[i], cmap=cmap, vmin=float(np.min(tiles)), vmax=float(np.max(tiles)), interpolation="nearest"
            )
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# cluster, embed, decoding
# --------------------------------------------------------------------------------------


def label_colours(n: int) -> list:
    """n distinct colours for n labels (tab10, tab20 beyond 10)."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


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


def silhouette_by_k(scores: dict[int, float], chosen: int) -> Figure:
    """Silhouette of KMeans for every k tried, the chosen k marked."""
    ks = sorted(scores)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(ks, [scores[k] for k in ks], marker="o")
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen k = {chosen}")
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
    ax.set_title(f"DBSCAN k-distance curve (min_samples = {min_samples}; {beyond:.1%} beyond eps)")
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
    """A count table as a heatmap, cells annotated with counts, shaded by row share."""
    table = np.asarray(table)
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    nr, nc = table.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * nc + 2.5), max(3.0, 0.45 * nr + 1.8)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
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
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Correct / incorrect by majority label of the cluster", fontsize=10)
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


def _canvas(rows: list[np.ndarray], ncols: int, gap: int = 2) -> np.ndarray:
    """Tile rows of (n, 28, 28) images into one array (NaN between tiles and in empty slots)."""
    side = rows[0].shape[-1] if rows and len(rows[0]) else 28
    height = len(rows) * (side + gap) - gap
    width = ncols * (side + gap) - gap
    canvas = np.full((max(height, side), max(width, side)), np.nan, dtype=np.float32)
    for r, tiles in enumerate(rows):
        for j, tile in enumerate(tiles[:ncols]):
            y0, x0 = r * (side + gap), j * (side + gap)
            canvas[y0 : y0 + side, x0 : x0 + side] = tile
    return canvas


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
    side = tiles.shape[-1] + 2
    fig, ax = plt.subplots(figsize=(per_cluster * 0.75 + 1.3, len(rows) * 0.75 + 0.7))
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("white")
    ax.imshow(_canvas(rows, per_cluster), cmap=cmap, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * side + side / 2 - 1 for r in range(len(rows))], labels=names, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    ax.set_title(f"Random images per cluster ({name}); row label: cluster (size)", fontsize=10)
    fig.tight_layout()
    return fig


def titled_tiles(images: np.ndarray, titles: Sequence[str], ncols: int = 10, suptitle: str | None = None) -> Figure:
    """A grid of images with a short caption under each, drawn as one picture (fast for many
    tiles)."""
    tiles = as_images(images)
    rows = [tiles[i : i + ncols] for i in range(0, len(tiles), ncols)] or [tiles]
    side = tiles.shape[-1] + 2
    gap = 10
    canvas = _canvas(rows, ncols, gap=gap)
    fig, ax = plt.subplots(figsize=(ncols * 1.0 + 0.4, len(rows) * 1.2 + 0.6))
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("white")
    ax.imshow(canvas, cmap=cmap, interpolation="nearest")
    step = side - 2 + gap
    for i, text in enumerate(titles[: len(tiles)]):
        r, j = divmod(i, ncols)
        ax.text(
            j * step + (side - 2) / 2, r * step + side - 1, text, ha="center", va="top", fontsize=6, parse_math=False
        )
    ax.set_axis_off()
    if suptitle:
        ax.set_title(suptitle, fontsize=10, parse_math=False)  # captions come from data: no mathtext
    fig.tight_layout()
    return fig


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


# -- train-cnn ----------------------------------------------------------------------------
def learning_curves(history: Sequence[dict], best_epoch: int | None = None, title: str = "Learning curves") -> Figure:
    """Loss and accuracy per epoch on the training part and the validation part.

    Parameters
    ----------
    history : sequence of dict
        One record per epoch with ``epoch``, ``train_loss``, ``train_acc`` and optionally
        ``val_loss``, ``val_acc``.
    best_epoch : int, optional
        Epoch whose weights were kept; marked with a dashed line.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [h["epoch"] for h in history]
    for ax, key, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        val = [h.get(f"val_{key}") for h in history]
        if any(v is not None for v in val):
            ax.plot(epochs, val, "s-", ms=3, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def confusion_matrix(counts: np.ndarray, names: Sequence[str], title: str = "Confusion matrix (test)") -> Figure:
    """Counts of true (rows) against predicted (columns) labels, coloured by row share.

    Parameters
    ----------
    counts : ndarray of int, shape (K, K)
    names : sequence of str
        K label names.
    """
    counts = np.asarray(counts)
    k = len(counts)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = max(4.0, 0.55 * k + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{title}: accuracy {100 * accuracy:.2f} %", fontsize=10)
    fig.tight_layout()
    return fig


def misclassified_montage(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], ncols: int = 8
) -> Figure:
    """Misclassified images titled with their true and predicted labels.

    Parameters
    ----------
    images : ndarray
        (N, 1, 28, 28) images that were misclassified.
    y_true, y_pred : ndarray of int
        True and predicted labels.
    names : sequence of str
        Label names (class names, or ``label k``).
    """
    if len(images) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
        return fig
    titles = [f"true: {names[t]}\npred: {names[p]}" for t, p in zip(y_true, y_pred, strict=True)]
    return montage(
        images, titles, ncols=ncols, suptitle=f"Misclassified test images (first {len(images)})", tile_inches=1.35
    )


# --------------------------------------------------------------------------------------
# self-organising maps (train-som) and their tuning (tune)
# --------------------------------------------------------------------------------------

SOM_MARKERS = ("o", "s", "p", "*", "^", "1", "h", "x", "+", "d")


def _som_cells(
    ax: plt.Axes, coords: np.ndarray, topology: str, values: np.ndarray, cmap: object, **kw: object
) -> object:
    """Draw one square or hexagon per neuron, coloured by ``values``; row 0 at the top."""
    from matplotlib.collections import PolyCollection

    coords = np.asarray(coords, dtype=float)
    if topology == "hexagonal":
        angles = np.pi / 2 + np.arange(6) * np.pi / 3
        shape = np.stack([np.cos(angles), np.sin(angles)], 1) / np.sqrt(3)
    else:
        shape = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    polys = coords[:, None, :] + shape[None]
    coll = PolyCollection(polys, array=np.asarray(values, dtype=float), cmap=cmap, edgecolors="none", **kw)
    ax.add_collection(coll)
    pad = 0.7
    ax.set_xlim(coords[:, 0].min() - pad, coords[:, 0].max() + pad)
    ax.set_ylim(coords[:, 1].max() + pad, coords[:, 1].min() - pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return coll


def _som_size(coords: np.ndarray) -> float:
    extent = float(np.ptp(np.asarray(coords)[:, 0]) + 1)
    return float(np.clip(extent * 0.2, 5, 11))


def som_history(history: Sequence[dict], title: str) -> Figure:
    """Quantisation and topographic error per epoch (the map at each epoch's start; the
    last point is the trained map)."""
    x = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(x, [h["qe"] for h in history], "o-", color="tab:blue", label="QE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("quantisation error", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(x, [h["te"] for h in history], "s--", color="tab:red", label="TE")
    ax2.set_ylabel("topographic error", color="tab:red")
    ax.set_title(f"Training errors, {title}", fontsize=10)
    fig.tight_layout()
    return fig


def som_u_matrix(
    umatrix: np.ndarray,
    coords: np.ndarray,
    topology: str,
    dominant: np.ndarray | None,
    class_names: Sequence[str],
    title: str,
) -> Figure:
    """U-matrix (mean distance to neighbouring neurons, ``bone_r``: dark = class borders)
    with one marker per neuron for its dominant class (markers o s p * ^ 1 h x + d)."""
    size = _som_size(coords)
    fig, ax = plt.subplots(figsize=(size + 1.5, size + 1.2))
    coll = _som_cells(ax, coords, topology, umatrix, "bone_r")
    fig.colorbar(coll, ax=ax, fraction=0.04, pad=0.01, label="mean distance to neighbours")
    if dominant is not None:
        colours = label_colours(max(len(class_names), 1))
        cell_points = size * 72 / (float(np.ptp(np.asarray(coords)[:, 0])) + 1.4)
        msize = float((0.5 * cell_points) ** 2)
        for c, name in enumerate(class_names):
            sel = np.asarray(dominant) == c
            if not sel.any():
                continue
            marker = SOM_MARKERS[c % len(SOM_MARKERS)]
            filled = marker not in ("1", "x", "+")
            style = {"facecolors": "none", "edgecolors": colours[c]} if filled else {"color": colours[c]}
            ax.scatter(coords[sel, 0], coords[sel, 1], s=msize, marker=marker, linewidths=1.1, label=name, **style)
        ax.legend(
            title="dominant class of the neuron",
            fontsize=9,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.01),
            ncol=5,
            frameon=False,
            markerscale=float(np.sqrt(70 / msize)),
        )
    ax.set_title(f"U-matrix, {title}", fontsize=11)
    return fig


def som_hit_map(hits: np.ndarray, coords: np.ndarray, topology: str, title: str) -> Figure:
    """How many samples each neuron wins."""
    size = _som_size(coords)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    coll = _som_cells(ax, coords, topology, hits, "viridis")
    fig.colorbar(coll, ax=ax, fraction=0.04, pad=0.01, label="samples won")
    ax.set_title(f"Hit map, {title} (neurons never winning: {int((np.asarray(hits) == 0).sum())})", fontsize=11)
    return fig


def som_outliers(hits: np.ndarray, outliers: np.ndarray, cols: int, low: float, high: float, show: int = 25) -> Figure:
    """Distribution of hit counts with the 1.5 x IQR fences, and the outlier neurons."""
    hits = np.asarray(hits)
    fig, (ax, tab) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    ax.hist(hits, bins=min(60, max(10, int(hits.max()) + 1)), color="tab:gray")
    for fence, name in ((low, "Q1 - 1.5 IQR"), (high, "Q3 + 1.5 IQR")):
        if hits.min() <= fence <= hits.max() or name.startswith("Q3"):
            ax.axvline(fence, color="tab:red", ls="--")
            ax.text(fence, ax.get_ylim()[1] * 0.95, f" {name} = {fence:.1f}", color="tab:red", fontsize=8, va="top")
    if len(outliers):
        ax.hist(hits[outliers], bins=20, color="tab:red", alpha=0.7, label=f"{len(outliers)} outlier neurons")
        ax.legend(fontsize=8, loc="center right")
    ax.set_xlabel("samples won by a neuron")
    ax.set_ylabel("neurons")
    ax.set_title("Hit counts and the IQR outlier rule", fontsize=10)
    tab.set_axis_off()
    lines = [f"{'neuron':>7} {'row':>4} {'col':>4} {'hits':>6}"]
    lines += [f"{k:>7} {k // cols:>4} {k % cols:>4} {hits[k]:>6}" for k in outliers[:show]]
    if len(outliers) > show:
        lines.append(f"... and {len(outliers) - show} more (outlier_neurons.csv)")
    if not len(outliers):
        lines.append("no outlier neurons")
    tab.text(0, 1, "\n".join(lines), family="monospace", fontsize=8, va="top")
    tab.set_title("Outlier neurons (most hits first)", fontsize=10)
    fig.tight_layout()
    return fig


def som_labels_map(
    dominant: np.ndarray, purity: np.ndarray, coords: np.ndarray, topology: str, class_names: Sequence[str], title: str
) -> Figure:
    """Left: each neuron's dominant class (white: never hit); right: its purity."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    size = _som_size(coords) * 0.8
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(2 * size + 3.0, size))
    colours = label_colours(max(len(class_names), 1))
    cmap = ListedColormap(["white", *colours])
    _som_cells(ax1, coords, topology, np.asarray(dominant) + 1, cmap, clim=(-0.5, len(class_names) + 0.5))
    handles = [Patch(color=colours[c], label=name) for c, name in enumerate(class_names)]
    ax1.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax1.set_title(f"Dominant class per neuron, {title}", fontsize=10)
    coll = _som_cells(ax2, coords, topology, np.nan_to_num(purity, nan=0.0), "magma", clim=(0, 1))
    fig.colorbar(coll, ax=ax2, fraction=0.04, pad=0.01, label="purity (share of the dominant class)")
    ax2.set_title(f"Purity (mean {np.nanmean(purity):.2f})", fontsize=10)
    fig.tight_layout()
    return fig


def som_prototypes(weights: np.ndarray, rows: int, cols: int) -> Figure:
    """Every neuron's weights as a 28x28 tile, in grid order (row 0 at the top)."""
    tiles = as_images(np.asarray(weights).reshape(rows * cols, -1))
    side = tiles.shape[1]
    gap = 2
    sheet = np.full((rows * (side + gap) - gap, cols * (side + gap) - gap), np.nan)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * (side + gap) : r * (side + gap) + side, c * (side + gap) : c * (side + gap) + side] = tile
    inches = float(np.clip(cols * 0.28, 4, 16))
    fig, ax = plt.subplots(figsize=(inches, inches * sheet.shape[0] / sheet.shape[1] + 0.4))
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("white")
    ax.imshow(sheet, cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"Prototypes: the weights of all {rows}x{cols} neurons in grid order", fontsize=11)
    fig.tight_layout()
    return fig


def som_winner_samples(groups: Sequence[tuple[int, np.ndarray, int]], cols: int, per_row: int = 10) -> Figure:
    """One row per chosen neuron ``(index, images closest first, number of samples won)``."""
    n = max(len(groups), 1)
    fig, axes = plt.subplots(n, per_row, figsize=(per_row * 0.95 + 1.6, n * 1.05 + 0.5), squeeze=False)
    for r, (k, images, won) in enumerate(groups):
        tiles = as_images(images) if len(images) else np.zeros((0, 28, 28))
        for j in range(per_row):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(tiles):
                ax.imshow(tiles[j], cmap="gray_r", interpolation="nearest")
        axes[r, 0].set_ylabel(
            f"neuron {k}\n(row {k // cols}, col {k % cols})\nwins {won}",
            rotation=0,
            ha="right",
            va="center",
            fontsize=8,
        )
    fig.suptitle("Samples won by chosen neurons (closest first)", fontsize=10)
    fig.tight_layout()
    return fig


def tune_history(values: np.ndarray, names: Sequence[str], title: str = "Optimisation history") -> Figure:
    """Each objective per finished trial, with the running best."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    fig, axes = plt.subplots(1, values.shape[1], figsize=(5.2 * values.shape[1], 3.6), squeeze=False)
    for j, ax in enumerate(axes[0]):
        v = values[:, j]
        ax.plot(np.arange(len(v)), v, "o", color="tab:blue", alpha=0.7, label="trial")
        if len(v):
            ax.plot(np.arange(len(v)), np.minimum.accumulate(v), "-", color="tab:red", label="best so far")
        ax.set_xlabel("finished trial")
        ax.set_ylabel(names[j])
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def tune_importances(importances: dict[str, dict[str, float]]) -> Figure:
    """Horizontal bars: fANOVA importance of each parameter for each objective."""
    objectives = list(importances)
    params = sorted({p for imp in importances.values() for p in imp})
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(len(params), 1) * max(len(objectives), 1) + 1.5))
    height = 0.8 / max(len(objectives), 1)
    for j, obj in enumerate(objectives):
        vals = [importances[obj].get(p, 0.0) for p in params]
        ax.barh(np.arange(len(params)) + j * height, vals, height=height, label=obj)
    ax.set_yticks(np.arange(len(params)) + height * (len(objectives) - 1) / 2, labels=params)
    ax.set_xlabel("importance (fANOVA, sums to 1 per objective)")
    ax.legend(fontsize=8)
    ax.set_title("Parameter importances", fontsize=10)
    fig.tight_layout()
    return fig


def tune_pareto(qe: np.ndarray, te: np.ndarray, front: np.ndarray, best: int | None) -> Figure:
    """Held-out QE against TE of every finished trial; the Pareto front joined."""
    qe, te, front = np.asarray(qe), np.asarray(te), np.asarray(front, dtype=bool)
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    ax.scatter(qe[~front], te[~front], color="tab:gray", alpha=0.6, label="trial")
    order = np.argsort(qe[front])
    ax.plot(qe[front][order], te[front][order], "o-", color="tab:red", label="Pareto front")
    if best is not None:
        ax.scatter([qe[best]], [te[best]], s=180, marker="*", color="gold", edgecolors="k", zorder=5, label="chosen")
    ax.set_xlabel("held-out quantisation error")
    ax.set_ylabel("held-out topographic error")
    ax.legend(fontsize=8)
    ax.set_title("Trials and the Pareto front", fontsize=10)
    fig.tight_layout()
    return fig
