"""Image properties that mystery-label hypotheses threshold.

Every property is computed on the 0..255 pixel scale of a 28 × 28 image ``x`` (rows ``r`` and
columns ``c`` numbered 0..27, "ink" is a pixel > 0). The formulas, declared once in
:data:`PROPERTIES` and repeated in the README:

=================  =====================================================================
``mean_intensity``  mean of the 784 pixels
``ink_area``        share of pixels > 0
``height``          rows of the bounding box of the ink (last row − first row + 1; 0 if blank)
``width``           columns of the bounding box of the ink (0 if blank)
``aspect``          width / height (0 if blank)
``centroid_row``    Σ r · x / Σ x (intensity-weighted; 13.5 if blank)
``centroid_col``    Σ c · x / Σ x (13.5 if blank)
``symmetry_lr``     mean |x − x mirrored left-right| (0 = symmetric)
``top_share``       share of Σ x in the top 14 rows (0.5 if blank)
``max_intensity``   largest pixel
``std_intensity``   standard deviation of the 784 pixels (population, ddof 0)
``symmetry_ud``     mean |x − x mirrored top-bottom|
``left_share``      share of Σ x in the left 14 columns (0.5 if blank)
``bright_area``     share of pixels > 127
=================  =====================================================================

Single pixels are properties too, named ``pixel_rR_cC`` (the value of the pixel in row R,
column C): :func:`screen_pixels` picks the few that are worth trying.
"""

from __future__ import annotations

import re

import numpy as np

IMAGE_SIDE = 28
HALF = IMAGE_SIDE // 2

#: Every property with its formula, in the order they are tried and reported.
PROPERTIES: dict[str, str] = {
    "mean_intensity": "mean of the 784 pixels (0..255)",
    "ink_area": "share of pixels > 0",
    "height": "rows of the bounding box of pixels > 0",
    "width": "columns of the bounding box of pixels > 0",
    "aspect": "width / height",
    "centroid_row": "intensity-weighted mean row (0..27)",
    "centroid_col": "intensity-weighted mean column (0..27)",
    "symmetry_lr": "mean |x - x mirrored left-right|",
    "top_share": "share of the total intensity in the top 14 rows",
    "max_intensity": "largest pixel",
    "std_intensity": "standard deviation of the 784 pixels",
    "symmetry_ud": "mean |x - x mirrored top-bottom|",
    "left_share": "share of the total intensity in the left 14 columns",
    "bright_area": "share of pixels > 127",
}

#: Named properties that take whole numbers only (their histograms get one bar per value);
#: pixels do too (:func:`takes_whole_numbers`).
INTEGER_PROPERTIES = frozenset({"height", "width", "max_intensity"})

_PIXEL_NAME = re.compile(r"pixel_r(0|[1-9]\d?)_c(0|[1-9]\d?)")  # as pixel_name writes them


def pixel_name(index: int) -> str:
    """The property name of pixel ``index`` (0..783, row-major): ``pixel_rR_cC``."""
    if not 0 <= index < IMAGE_SIDE * IMAGE_SIDE:
        raise ValueError(f"pixel index must be in 0..{IMAGE_SIDE * IMAGE_SIDE - 1}, got {index}")
    row, col = divmod(int(index), IMAGE_SIDE)
    return f"pixel_r{row}_c{col}"


def pixel_index(name: str) -> int | None:
    """The index (0..783) of a pixel property ``pixel_rR_cC``; None for any other name."""
    found = _PIXEL_NAME.fullmatch(name)
    if found is None or int(found[1]) >= IMAGE_SIDE or int(found[2]) >= IMAGE_SIDE:
        return None
    return int(found[1]) * IMAGE_SIDE + int(found[2])


def takes_whole_numbers(name: str) -> bool:
    """Whether property ``name`` only takes whole numbers (a pixel, a count, the largest pixel)."""
    return name in INTEGER_PROPERTIES or pixel_index(name) is not None


def screen_pixels(pixels: np.ndarray, y: np.ndarray, keep: int, chunk: int = 8192) -> list[int]:
    """The ``keep`` pixels whose best rule of at most two cuts agrees with the most labels.

    For every pixel and every pair of cuts ``a <= b``, the rows at or below ``a``, those in
    ``(a, b]`` and those above ``b`` each get the label most common among them; a pixel scores
    the agreement of its best pair. One cut (``a == b``) is a pair too, so a pixel that decides
    by a threshold scores as before, and one that decides by a band of values (``100 <= v <=
    150``) is found as well. This picks which pixels the explainer then tries as properties in
    full.

    The best pair is exact and costs two passes over the rows and one over the 256 values per
    label (no loop over the pairs): for a middle label ``l``, the agreement is
    ``A(a) - C_l(a) + B(b) + C_l(b)``, with ``C_l(v)`` the rows of ``l`` at or below ``v``,
    ``A(a)`` the most rows of one label at or below ``a`` and ``B(b)`` the most above ``b``; a
    running maximum over ``a`` gives the best ``a <= b`` for every ``b``. The counts are made
    twice rather than kept for every label, so memory does not grow with the labels.

    Parameters
    ----------
    pixels : ndarray (N, 784) or (N, 28, 28)
        Whole numbers in 0..255.
    y : ndarray (N,)
        Labels as indices 0..K-1.
    keep : int
        How many pixels to return (at most 784).
    chunk : int
        Rows counted at a time (bounds the memory used).

    Returns
    -------
    list of int
        Pixel indices (row-major), best first; ties go to the lower index.
    """
    x = np.asarray(pixels).reshape(len(pixels), -1)
    if x.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
        raise ValueError(f"pixels must be 28 x 28 images, got rows of {x.shape[1]} values")
    whole = np.issubdtype(x.dtype, np.integer) or bool(np.isfinite(x).all() and np.array_equal(x, np.rint(x)))
    if len(x) and not (whole and x.min() >= 0 and x.max() <= 255):
        raise ValueError("pixels must be whole numbers in 0..255")
    y = np.asarray(y, dtype=np.int64)
    n_pix = x.shape[1]
    offsets = np.arange(n_pix, dtype=np.int64) * 256

    def at_or_below(label: int) -> np.ndarray:
        """(pixels, 257): rows of ``label`` with value <= v, for v = -1, 0, ..., 255."""
        rows = np.flatnonzero(y == label)
        counts = np.zeros(n_pix * 256, dtype=np.int64)
        for start in range(0, len(rows), chunk):
            part = x[rows[start : start + chunk]].astype(np.int64)
            counts += np.bincount((part + offsets).ravel(), minlength=n_pix * 256)
        below = np.cumsum(counts.reshape(n_pix, 256), axis=1)
        return np.concatenate([np.zeros((n_pix, 1), dtype=np.int64), below], axis=1)

    labels = np.unique(y)
    best_below = np.zeros((n_pix, 257), dtype=np.int64)  # A: most rows of one label at or below v
    best_above = np.zeros((n_pix, 257), dtype=np.int64)  # B: most rows of one label above v
    for label in labels:
        below = at_or_below(label)
        np.maximum(best_below, below, out=best_below)
        np.maximum(best_above, below[:, -1:] - below, out=best_above)
    score = np.zeros(n_pix, dtype=np.int64)
    for label in labels:
        below = at_or_below(label)
        lower = np.maximum.accumulate(best_below - below, axis=1)  # the best a <= b, for every b
        np.maximum(score, (lower + best_above + below).max(axis=1), out=score)
    return [int(j) for j in np.argsort(-score, kind="stable")[: max(int(keep), 0)]]


def _extent(ink: np.ndarray) -> np.ndarray:
    """Length of the run from the first to the last True along axis 1 of (N, 28); 0 if none."""
    any_ink = ink.any(axis=1)
    first = np.argmax(ink, axis=1)
    last = IMAGE_SIDE - 1 - np.argmax(ink[:, ::-1], axis=1)
    return np.where(any_ink, last - first + 1, 0).astype(np.float64)


def image_properties(pixels: np.ndarray, chunk: int = 8192) -> dict[str, np.ndarray]:
    """Every property of :data:`PROPERTIES` for every image.

    Parameters
    ----------
    pixels : ndarray
        (N, 28, 28), (N, 1, 28, 28) or (N, 784) images on the 0..255 scale (any real dtype).
    chunk : int
        Images processed at a time (bounds the memory used).

    Returns
    -------
    dict of str to ndarray of float64, shape (N,)
        In the order of :data:`PROPERTIES`.

    Raises
    ------
    ValueError
        Rows that are not 28 × 28 images.
    """
    x_all = np.asarray(pixels)
    if x_all.ndim < 2 or int(np.prod(x_all.shape[1:])) != IMAGE_SIDE * IMAGE_SIDE:
        raise ValueError(f"image properties need 28 x 28 images, got rows shaped {x_all.shape[1:]}")
    x_all = x_all.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    out: dict[str, list[np.ndarray]] = {name: [] for name in PROPERTIES}
    rows = np.arange(IMAGE_SIDE, dtype=np.float64)
    for start in range(0, len(x_all), chunk):
        x = x_all[start : start + chunk].astype(np.float64)
        flat = x.reshape(len(x), -1)
        total = flat.sum(axis=1)
        blank = total <= 0
        safe = np.where(blank, 1.0, total)
        ink = x > 0
        height = _extent(ink.any(axis=2))
        width = _extent(ink.any(axis=1))
        row_mass = x.sum(axis=2)
        col_mass = x.sum(axis=1)
        values = {
            "mean_intensity": flat.mean(axis=1),
            "ink_area": ink.reshape(len(x), -1).mean(axis=1),
            "height": height,
            "width": width,
            "aspect": np.where(height > 0, width / np.where(height > 0, height, 1.0), 0.0),
            "centroid_row": np.where(blank, (IMAGE_SIDE - 1) / 2, row_mass @ rows / safe),
            "centroid_col": np.where(blank, (IMAGE_SIDE - 1) / 2, col_mass @ rows / safe),
            "symmetry_lr": np.abs(x - x[:, :, ::-1]).reshape(len(x), -1).mean(axis=1),
            "top_share": np.where(blank, 0.5, row_mass[:, :HALF].sum(axis=1) / safe),
            "max_intensity": flat.max(axis=1),
            "std_intensity": flat.std(axis=1),
            "symmetry_ud": np.abs(x - x[:, ::-1, :]).reshape(len(x), -1).mean(axis=1),
            "left_share": np.where(blank, 0.5, col_mass[:, :HALF].sum(axis=1) / safe),
            "bright_area": (flat > 127).mean(axis=1),
        }
        for name in PROPERTIES:
            out[name].append(values[name])
    return {name: np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64) for name, parts in out.items()}


def to_pixel_scale(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """Images stored in [0, 1] (as ``preprocess`` writes them) back on the 0..255 scale.

    Returns
    -------
    (ndarray of float64 (N, 28, 28), bool)
        The pixels, and whether they are the original 8-bit values (every value a whole
        number after scaling; False after deskew, centring or standardisation).
    """
    x = np.asarray(images, dtype=np.float64).reshape(len(images), IMAGE_SIDE, IMAGE_SIDE) * 255.0
    rounded = np.rint(x)
    exact = (
        bool(np.all(np.abs(x - rounded) < 1e-3))
        and bool(rounded.min(initial=0) >= 0)
        and bool(rounded.max(initial=0) <= 255)
    )
    return (rounded if exact else x), exact
