"""Figures of an explanation: one montage per label, one histogram per property used."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fmnist_cluster import plots
from fmnist_cluster.explain.properties import IMAGE_SIDE, pixel_index, takes_whole_numbers

_TITLE_CHARS = 110


def _short(text: str) -> str:
    return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 1] + "…"


def label_montage(images: np.ndarray, captions: Sequence[str], title: str) -> Figure:
    """Images of one label, each captioned (class or property value), the rule as title."""
    return plots.titled_tiles(images, list(captions), ncols=10, suptitle=_short(title))


def property_histograms(
    values: np.ndarray,
    y: np.ndarray,
    name: str,
    thresholds: Sequence[float],
    title: str,
    mean_image: np.ndarray | None = None,
) -> Figure:
    """Histogram of one property per label (test split), thresholds as dashed lines; for a
    pixel property (``pixel_rR_cC``) with ``mean_image`` (28 × 28), a panel beside it shows
    where the pixel is on the mean image."""
    labels = np.unique(y)
    colours = plots.label_colours(len(labels))
    where = pixel_index(name) if mean_image is not None else None
    if where is None:
        fig, ax = plt.subplots(figsize=(8, 3.6))
    else:
        fig, (ax, beside) = plt.subplots(1, 2, figsize=(9.6, 3.6), width_ratios=(5, 1.2))
        row, col = divmod(where, IMAGE_SIDE)
        beside.imshow(np.asarray(mean_image, dtype=np.float64).reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray_r")
        beside.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        beside.set_xticks([])
        beside.set_yticks([])
        beside.set_xlabel(f"row {row}, column {col}", fontsize=8)
        beside.set_title("the pixel on the\nmean test image", fontsize=8)
    lo, hi = float(np.min(values)), float(np.max(values))
    edges = np.unique(np.round(values)) if takes_whole_numbers(name) else None
    bins = np.append(edges - 0.5, edges[-1] + 0.5) if edges is not None and len(edges) < 80 else np.linspace(lo, hi, 61)
    for colour, label in zip(colours, labels, strict=True):
        ax.hist(values[y == label], bins=bins, histtype="step", linewidth=1.4, color=colour, label=f"label {label}")
    for t in thresholds:
        ax.axvline(t, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"{t:.4g}", (t, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(name)
    ax.set_ylabel("test images")
    ax.legend(fontsize=8, ncols=min(len(labels), 5), loc="upper right")
    ax.set_title(_short(title), fontsize=10, pad=14)
    fig.tight_layout()
    return fig
