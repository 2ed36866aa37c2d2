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

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

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
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise ValueError(f"rows of width {x.shape[1]} are not square images")
        return x.reshape(len(x), side, side)
    return x


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
            ax.imshow(tiles[i], cmap=cmap, vmin=float(np.min(tiles)), vmax=float(np.max(tiles)), interpolation="nearest")
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig
