"""Figures of ``train-cnn``: learning curves, the confusion matrix and misclassified images."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fmnist_cluster.plots.images import montage


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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
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
