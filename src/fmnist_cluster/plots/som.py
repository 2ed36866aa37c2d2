"""Figures of self-organising maps (``train-som``): training errors, U-matrix, hit and label
maps, outlier neurons, prototypes and the samples neurons win."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from fmnist_cluster.plots.common import DPI, label_colours
from fmnist_cluster.plots.images import as_images, stack_rows, tile_figure, tile_picture_png

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
    coll = PolyCollection(polys, array=np.ma.asarray(values, dtype=float), cmap=cmap, edgecolors="none", **kw)
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
    edges = np.histogram_bin_edges(hits, bins=min(60, max(10, int(hits.max()) + 1)))
    flagged = np.zeros(len(hits), dtype=bool)
    flagged[np.asarray(outliers, dtype=np.int64)] = True
    ax.hist(  # one set of bins, stacked: a bar is red where it holds outlier neurons
        [hits[~flagged], hits[flagged]],
        bins=edges,
        stacked=True,
        color=["tab:gray", "tab:red"],
        label=["other neurons", f"{int(flagged.sum())} outlier neurons"],
    )
    for fence, name in ((low, "Q1 - 1.5 IQR"), (high, "Q3 + 1.5 IQR")):
        if hits.min() <= fence <= hits.max() or name.startswith("Q3"):
            ax.axvline(fence, color="tab:red", ls="--")
            ax.text(fence, ax.get_ylim()[1] * 0.95, f" {name} = {fence:.1f}", color="tab:red", fontsize=8, va="top")
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
    """Left: each neuron's dominant class, right: its purity (white on both: never hit)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    size = _som_size(coords) * 0.8
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(2 * size + 3.0, size))
    colours = label_colours(max(len(class_names), 1))
    cmap = ListedColormap(["white", *colours])
    _som_cells(ax1, coords, topology, np.asarray(dominant) + 1, cmap, clim=(-0.5, len(class_names) + 0.5))
    handles = [Patch(color=colours[c], label=name) for c, name in enumerate(class_names)]
    if (np.asarray(dominant) < 0).any():
        handles.append(Patch(facecolor="white", edgecolor="0.6", label="never wins"))
    ax1.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax1.set_title(f"Dominant class per neuron, {title}", fontsize=10)
    never = plt.get_cmap("magma").with_extremes(bad="white")  # white, as on the left: never wins
    coll = _som_cells(ax2, coords, topology, np.ma.masked_invalid(purity), never, clim=(0, 1))
    fig.colorbar(coll, ax=ax2, fraction=0.04, pad=0.01, label="purity (share of the dominant class)")
    ax2.set_title(f"Purity (mean {np.nanmean(purity):.2f})", fontsize=10)
    fig.tight_layout()
    return fig


#: widest prototype picture, in pixels: larger maps show one weight pixel in every k each way
PROTOTYPES_MAX_WIDTH = 8192


def som_prototypes(weights: np.ndarray, rows: int, cols: int) -> bytes:
    """Every neuron's weights as a 28x28 tile in grid order (row 0 at the top), as PNG bytes.

    Drawn pixel for pixel (:func:`~fmnist_cluster.plots.images.tile_picture_png`), at a whole
    number of screen pixels per weight: one, or as many as make the picture at least 4 inches
    wide, so the tiles stay crisp. Maps too wide for :data:`PROTOTYPES_MAX_WIDTH` pixels
    (above about 270 columns) show every k-th weight pixel of each tile, as the title says.

    Returns
    -------
    bytes
        The PNG.
    """
    tiles = as_images(np.asarray(weights).reshape(rows * cols, -1))
    title = f"Prototypes: the weights of all {rows}x{cols} neurons in grid order"
    step = 1  # the picture: cols tiles of ceil(side / step) pixels, gaps of 2, a margin of 8 each side
    while (
        step < tiles.shape[2] and cols * math.ceil(tiles.shape[2] / step) + 2 * (cols + 1) + 16 > PROTOTYPES_MAX_WIDTH
    ):
        step += 1
    if step > 1:
        tiles = tiles[:, ::step, ::step]
        title += f" (one weight pixel in {step} each way)"
    scale = max(1, math.ceil(4 * DPI / (cols * tiles.shape[2])))
    return tile_picture_png(tiles, cols, title=title, scale=scale)


def som_winner_samples(groups: Sequence[tuple[int, np.ndarray, int]], cols: int, per_row: int = 10) -> Figure:
    """One row per chosen neuron ``(index, images closest first, number of samples won)``."""
    rows = [as_images(images) if len(images) else np.zeros((0, 28, 28)) for _, images, _ in groups]
    labels = [f"neuron {k}\n(row {k // cols}, col {k % cols})\nwins {won}" for k, _, won in groups]
    return tile_figure(
        stack_rows(rows, per_row),
        per_row,
        row_labels=labels,
        title="Training samples won by chosen neurons (closest first)",
        tile_inches=0.95,
        gap=6,
    )
