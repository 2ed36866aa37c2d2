"""Image grids: many small images shown as one picture.

Every montage of the toolkit lays its tiles out with :func:`image_grid` and draws the grid with
one ``imshow`` (:func:`tile_figure`), with captions under or over the tiles and labels beside the
rows as text around it. Grids of thousands of tiles with no captions are written pixel for
pixel instead (:func:`tile_picture_png`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from fmnist_cluster.plots.common import DPI, grey_png

#: caption line height as a multiple of the font size, and the free pixels around a caption
_LINE = 1.35
_CAPTION_PAD = 4


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


def image_grid(
    tiles: np.ndarray, ncols: int, padding: int = 2, pad_value: float = np.nan, border: bool = True
) -> np.ndarray:
    """Tiles as one image, in reading order, laid out as :func:`torchvision.utils.make_grid` does.

    Hand-written rather than a call to ``make_grid`` (which the toolkit used before): importing
    torchvision imports ``torch._dynamo`` through its model zoo, 1.0 s of every command that
    draws a montage on a 2-core machine, for a reshape that numpy does in one step. The layout
    is make_grid's: ``ceil(N / ncols)`` rows of ``min(ncols, N)`` tiles, each with ``padding``
    pixels above and to its left, and ``padding`` more along the bottom and right edges.

    Parameters
    ----------
    tiles : ndarray, shape (N, H, W)
        Any dtype ``pad_value`` fits (float for the default NaN, which figures draw white).
    ncols : int
        Tiles per row (fewer when there are fewer tiles).
    padding : int
        Pixels of ``pad_value`` between tiles and around them.
    border : bool
        False: no padding around the outside of the grid.

    Returns
    -------
    ndarray, shape (rows * (H + padding) + padding, ncols * (W + padding) + padding)
        (``2 * padding`` less in each direction when ``border`` is False).
    """
    tiles = np.asarray(tiles)
    pad_value = pad_value if padding else 0  # unused, and NaN fits no integer dtype
    if len(tiles) == 0:  # one blank tile
        tiles = np.full((1, *(tiles.shape[1:] if tiles.ndim == 3 else (28, 28))), pad_value, dtype=tiles.dtype)
    n, h, w = tiles.shape
    ncols = min(max(int(ncols), 1), n)
    nrows = math.ceil(n / ncols)
    cells = np.full((nrows * ncols, h + padding, w + padding), pad_value, dtype=tiles.dtype)
    cells[:n, padding:, padding:] = tiles
    grid = cells.reshape(nrows, ncols, h + padding, w + padding).transpose(0, 2, 1, 3)
    grid = np.pad(
        grid.reshape(nrows * (h + padding), ncols * (w + padding)),
        ((0, padding), (0, padding)),
        constant_values=pad_value,
    )
    return grid if border or padding == 0 else grid[padding:-padding, padding:-padding]


def stack_rows(rows: Sequence[np.ndarray], ncols: int, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Groups of (n_i, H, W) images as ``len(rows) * ncols`` float tiles, one group per grid
    row: groups cut to ``ncols``, short ones filled with blank (NaN) tiles."""
    side = next((np.shape(r)[1:] for r in rows if len(r)), shape)
    out = np.full((max(len(rows), 1) * ncols, *side), np.nan, dtype=np.float32)
    for r, tiles in enumerate(rows):
        tiles = np.asarray(tiles)[:ncols]
        out[r * ncols : r * ncols + len(tiles)] = tiles
    return out


def tile_figure(
    tiles: np.ndarray,
    ncols: int,
    *,
    captions: Sequence[str] | None = None,
    captions_above: bool = False,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    tile_inches: float = 1.0,
    caption_size: float = 7,
    label_size: float = 8,
    title_size: float = 10,
    gap: int | None = None,
    cmap: str = "gray_r",
) -> Figure:
    """A grid of images (:func:`image_grid`) drawn as one picture, dark on white.

    Parameters
    ----------
    tiles : ndarray, shape (N, H, W)
        NaN pixels (blank tiles of :func:`stack_rows`) are drawn white; all tiles share one
        grey scale.
    ncols : int
        Tiles per row.
    captions : sequence of str, optional
        One caption per tile (may hold line breaks); drawn as plain text, never as mathtext.
    captions_above : bool
        Captions over the tiles instead of under them.
    row_labels : sequence of str, optional
        One label left of each row.
    title : str, optional
    tile_inches : float
        Width of one tile.
    caption_size, label_size, title_size : float
        Font sizes (points).
    gap : int, optional
        Pixels between tiles; by default 2, or room for the captions.
    cmap : str
        Matplotlib colour map.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    n = len(tiles)
    side_h, side_w = tiles.shape[1:] if tiles.ndim == 3 else (28, 28)
    ncols = max(1, min(int(ncols), n))
    nrows = max(1, math.ceil(n / ncols))
    points_per_pixel = 72 * tile_inches / side_w
    lines = max((str(c).count("\n") + 1 for c in captions), default=0) if captions else 0
    if gap is None:
        gap = _CAPTION_PAD + math.ceil(lines * caption_size * _LINE / points_per_pixel) if lines else 2
    grid = image_grid(tiles, ncols, padding=gap)
    inches = np.array(grid.shape[::-1]) * tile_inches / side_w
    fig, ax = plt.subplots(figsize=(inches[0] + (1.5 if row_labels else 0.2), inches[1] + (0.5 if title else 0.1)))
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    finite = tiles[np.isfinite(tiles)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ax.imshow(grid, cmap=colours, vmin=low, vmax=high, interpolation="nearest")
    for i, text in enumerate(list(captions or [])[:n]):
        r, c = divmod(i, ncols)
        x = gap + c * (side_w + gap) + (side_w - 1) / 2
        top = gap + r * (side_h + gap) - 0.5
        y, va = (top - 0.5, "bottom") if captions_above else (top + side_h + 0.5, "top")
        ax.text(x, y, str(text), ha="center", va=va, fontsize=caption_size, parse_math=False)
    if row_labels is not None:
        centres = [gap + r * (side_h + gap) + (side_h - 1) / 2 for r in range(nrows)]
        ax.set_yticks(centres[: len(row_labels)], labels=list(row_labels)[:nrows], fontsize=label_size)
        ax.set_xticks([])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    else:
        ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=title_size, parse_math=False)  # titles come from data: no mathtext
    fig.tight_layout()
    return fig


def tile_picture_png(
    tiles: np.ndarray, ncols: int, *, title: str | None = None, scale: int = 1, gap: int = 2, title_size: float = 11
) -> bytes:
    """Tiles drawn pixel for pixel as one greyscale PNG, dark on white, with a title above.

    The picture :func:`tile_figure` draws for tiles without captions, written without a figure:
    the tiles share one grey scale (their smallest value white, their largest black), gaps and
    NaN pixels are white, and only the title is drawn by matplotlib. Hand-written because a
    figure's ``imshow`` resamples and colours every pixel twice (once to find the tight bounding
    box) and compresses four channels: for the 2,500 tiles of a 50x50 map, 0.50 s and 1.63 MB
    against 0.10 s and 1.09 MB here (docs/benchmarks.md).

    Parameters
    ----------
    tiles : ndarray, shape (N, H, W)
    ncols : int
        Tiles per row.
    title : str, optional
        Drawn as plain text, never as mathtext.
    scale : int
        Screen pixels per image pixel (>= 1).
    gap : int
        White pixels between tiles and around them, before scaling.
    title_size : float
        Font size of the title (points, at the figures' DPI).

    Returns
    -------
    bytes
        The PNG (8-bit greyscale; repeatable bytes).
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    tiles = np.asarray(tiles, dtype=np.float32)
    grid = image_grid(tiles, ncols, padding=gap)
    shown = np.isfinite(grid)
    low, high = (float(grid[shown].min()), float(grid[shown].max())) if shown.any() else (0.0, 1.0)
    shade = np.full(grid.shape, 255, np.uint8)
    shade[shown] = np.rint((high - grid[shown]) * (255 / ((high - low) or 1.0))).astype(np.uint8)
    pixels = np.repeat(np.repeat(shade, scale, axis=0), scale, axis=1)
    if title:
        band = _text_band(title, pixels.shape[1], title_size)
        width = max(band.shape[1], pixels.shape[1])
        pixels = np.vstack([_centred(band, width), _centred(pixels, width)])
    return grey_png(np.pad(pixels, 4 * gap, constant_values=255), fast=True)


def _centred(pixels: np.ndarray, width: int) -> np.ndarray:
    """``pixels`` padded with white on both sides to ``width`` columns."""
    extra = width - pixels.shape[1]
    return np.pad(pixels, ((0, 0), (extra // 2, extra - extra // 2)), constant_values=255)


def _text_band(text: str, width: int, size: float) -> np.ndarray:
    """One line of dark text on white, centred in a band at least ``width`` pixels wide (wider
    when the text needs it), as greyscale uint8 pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    height = math.ceil(size * _LINE * DPI / 72) + 2 * _CAPTION_PAD
    for _ in range(2):  # the second pass widens the band to the text measured in the first
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        canvas = FigureCanvasAgg(fig)
        label = fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=size, parse_math=False)
        canvas.draw()
        needed = math.ceil(label.get_window_extent().width) + 2 * _CAPTION_PAD
        if needed <= width:
            break
        width = needed
    return np.asarray(canvas.buffer_rgba())[:, :, 0].copy()


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
        One short title per image, drawn over it.
    ncols : int
        Tiles per row.
    suptitle : str, optional
        Title of the whole figure.
    """
    return tile_figure(
        as_images(images),
        ncols,
        captions=titles,
        captions_above=True,
        title=suptitle,
        tile_inches=tile_inches,
        title_size=11,
        cmap=cmap,
    )


def titled_tiles(images: np.ndarray, titles: Sequence[str], ncols: int = 10, suptitle: str | None = None) -> Figure:
    """A grid of images with a short caption under each."""
    return tile_figure(as_images(images), ncols, captions=titles, title=suptitle, caption_size=8)


def image_strip_png(images: np.ndarray, scale: int = 2, gap: int = 2) -> bytes:
    """A row of 28×28 uint8 images as one small PNG, dark on white like the other montages
    (grey gaps between images), for a table cell."""
    tiles = 255 - as_images(np.asarray(images, dtype=np.uint8))
    strip = image_grid(tiles, max(len(tiles), 1), padding=gap, pad_value=200, border=False)
    return grey_png(np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1))
