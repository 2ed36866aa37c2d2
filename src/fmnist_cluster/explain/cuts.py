"""Thresholds on one value: coarse bins, optimal segmentation, exact refinement.

These are the numeric pieces the property hypotheses share. A *cut* ``t`` splits rows into
``v < t`` and ``v >= t``; a list of increasing cuts splits them into ``len(cuts) + 1`` ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Bins:
    """Rows of one value grouped into at most ``max_bins`` ordered bins.

    Attributes
    ----------
    index : ndarray of int64 (N,)
        Bin of every row.
    low, high : ndarray of float64 (n_bins,)
        Smallest and largest value in every bin.
    """

    index: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def n_bins(self) -> int:
        return len(self.low)

    def cut(self, position: int) -> float:
        """The cut between bin ``position - 1`` and bin ``position`` (midway between their values)."""
        return float((self.high[position - 1] + self.low[position]) / 2.0)


def make_bins(values: np.ndarray, max_bins: int) -> Bins:
    """Group ``values`` into at most ``max_bins`` bins of about equal counts (every distinct
    value its own bin when there are few)."""
    v = np.asarray(values, dtype=np.float64)
    distinct = np.unique(v)
    if len(distinct) <= max_bins:
        index = np.searchsorted(distinct, v)
    else:
        edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, max_bins + 1)[1:-1]))
        index = np.searchsorted(edges, v, side="right")
        _, index = np.unique(index, return_inverse=True)
    n_bins = int(index.max()) + 1 if len(index) else 0
    low = np.full(n_bins, np.inf)
    high = np.full(n_bins, -np.inf)
    np.minimum.at(low, index, v)
    np.maximum.at(high, index, v)
    return Bins(index.astype(np.int64), low, high)


def bin_counts(bins: Bins, y: np.ndarray, n_labels: int) -> np.ndarray:
    """Counts (n_bins, n_labels) of rows of every label in every bin (``y`` in 0..n_labels-1)."""
    counts = np.zeros((bins.n_bins, n_labels), dtype=np.int64)
    np.add.at(counts, (bins.index, y), 1)
    return counts


def best_cut(values: np.ndarray, gain: np.ndarray) -> float | None:
    """The cut among ``values`` that maximises the summed ``gain`` of the rows below it.

    Parameters
    ----------
    values : ndarray (W,)
        Values of the rows in a window.
    gain : ndarray (W,)
        For every row, what it adds when it falls below the cut rather than above.

    Returns
    -------
    float or None
        Midway between two neighbouring distinct values; None when the window holds fewer
        than two distinct values.
    """
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    total = np.cumsum(np.asarray(gain, dtype=np.float64)[order])
    # a cut after row i is possible where the next value differs
    ok = np.flatnonzero(v[:-1] < v[1:])
    if not len(ok):
        return None
    i = ok[int(np.argmax(total[ok]))]
    return float((v[i] + v[i + 1]) / 2.0)


def segment(counts: np.ndarray, max_segments: int) -> list[tuple[int, int]]:
    """Optimal split of ordered bins into at most ``max_segments`` runs, each given one label.

    Maximises the number of rows whose label is their run's label (dynamic programming over
    bins; neighbouring runs have different labels).

    Parameters
    ----------
    counts : ndarray (n_bins, n_labels)
    max_segments : int
        At least 1.

    Returns
    -------
    list of (int, int)
        ``(first_bin, label)`` of every run, in order.
    """
    n_bins, n_labels = counts.shape
    s_max = max(1, min(max_segments, n_bins))
    neg = -np.inf
    best = np.full((s_max, n_labels), neg)
    best[0] = counts[0]
    switched = np.zeros((n_bins, s_max, n_labels), dtype=bool)
    came_from = np.zeros((n_bins, s_max, n_labels), dtype=np.int64)
    for b in range(1, n_bins):
        # best previous run with a different label, for every run count
        top = np.argmax(best, axis=1)
        top_value = best[np.arange(s_max), top]
        masked = best.copy()
        masked[np.arange(s_max), top] = neg
        second = np.argmax(masked, axis=1)
        second_value = masked[np.arange(s_max), second]
        other = np.full((s_max, n_labels), neg)
        origin = np.zeros((s_max, n_labels), dtype=np.int64)
        if s_max > 1:
            prev_top = np.broadcast_to(top_value[:-1, None], (s_max - 1, n_labels))
            prev_second = np.broadcast_to(second_value[:-1, None], (s_max - 1, n_labels))
            is_top = np.arange(n_labels)[None, :] == top[:-1, None]
            other[1:] = np.where(is_top, prev_second, prev_top)
            origin[1:] = np.where(is_top, second[:-1, None], top[:-1, None])
        take = other > best
        switched[b] = take
        came_from[b] = origin
        best = np.where(take, other, best) + counts[b][None, :]
    s, label = np.unravel_index(int(np.argmax(best)), best.shape)
    runs: list[tuple[int, int]] = []
    for b in range(n_bins - 1, 0, -1):
        if switched[b, s, label]:
            runs.append((b, int(label)))
            label = came_from[b, s, label]
            s -= 1
    runs.append((0, int(label)))
    return runs[::-1]


def range_of(cuts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Range index (0..len(cuts)) of every value: range ``i`` holds ``cuts[i-1] <= v < cuts[i]``."""
    return np.searchsorted(np.asarray(cuts, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")


def interval_text(name: str, ranges: list[int], cuts: list[float], fmt: str = "{:.4g}") -> str:
    """Readable form of a set of ranges of ``name``: ``"name < 3.5 or name >= 7.25"``."""
    n = len(cuts) + 1
    if len(ranges) == n:
        return f"any {name}"
    parts = []
    chosen = sorted(set(ranges))
    i = 0
    while i < len(chosen):
        j = i
        while j + 1 < len(chosen) and chosen[j + 1] == chosen[j] + 1:
            j += 1
        lo, hi = chosen[i], chosen[j]
        low = fmt.format(cuts[lo - 1]) if lo > 0 else None
        high = fmt.format(cuts[hi]) if hi < n - 1 else None
        if low is None:
            parts.append(f"{name} < {high}")
        elif high is None:
            parts.append(f"{name} ≥ {low}")
        else:
            parts.append(f"{low} ≤ {name} < {high}")
        i = j + 1
    return " or ".join(parts)
