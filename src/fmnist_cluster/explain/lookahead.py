"""A depth-two tree on two columns whose root split is chosen by looking one level ahead.

A greedy tree takes the root split that separates the labels best on its own. When neither
column separates them alone, as in an exclusive or of two thresholds, every root split looks
equally useless, the greedy root is arbitrary and the rule is missed. Here every root split is
scored by the best tree of depth two under it: each side takes its best single split on the
other column, or none. The candidate cuts are midpoints between neighbouring values of a
column, at most ``max_bins - 1`` of them at its quantiles; the winning cuts are then refined
row by row, so they fall where the rows say, not on a quantile.

The tree is laid out as scikit-learn lays out ``DecisionTreeClassifier.tree_`` (node 0 the
root, ``children_left`` -1 at a leaf, ``value`` the label counts per node), so the same code
reads both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tree:
    """The arrays of a fitted tree (see the module's docstring); a row goes left when its
    value in ``feature`` is at most ``threshold``."""

    feature: np.ndarray
    threshold: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    value: np.ndarray

    @property
    def node_count(self) -> int:
        return len(self.feature)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """The leaf every row of ``X`` ends in."""
        node = np.zeros(len(X), dtype=np.int64)
        while True:
            inner = self.children_left[node] >= 0
            if not inner.any():
                return node
            rows = np.flatnonzero(inner)
            at = node[rows]
            left = X[rows, self.feature[at]] <= self.threshold[at]
            node[rows] = np.where(left, self.children_left[at], self.children_right[at])


def _candidate_cuts(values: np.ndarray, max_bins: int) -> np.ndarray:
    distinct = np.unique(values)
    mids = (distinct[:-1] + distinct[1:]) / 2
    if len(mids) <= max_bins - 1:
        return mids
    quantiles = np.quantile(values, np.linspace(0, 1, max_bins + 1)[1:-1])
    return np.unique(mids[np.minimum(np.searchsorted(mids, quantiles), len(mids) - 1)])


def _best_depth_two(counts: np.ndarray) -> tuple[int, int, int, int, int]:
    """Over ``counts[a, b, label]`` (rows per bin of the root column, bin of the other column
    and label): the rows a depth-two tree gets right at best, the splits it needs (the fewest
    among the best), its root cut and the cut of each side on the other column (-1: no split)."""
    prefix = counts.cumsum(0).cumsum(1)  # rows with root bin <= a and other bin <= b
    total = prefix[-1, -1]
    left = prefix[:-1, -1]  # (root cut, label): the rows going left at each root cut
    right = total - left
    left_low = prefix[:-1, :-1]  # (root cut, other cut, label)
    left_high = left[:, None] - left_low
    right_low = prefix[-1, :-1][None] - left_low
    right_high = right[:, None] - right_low
    left_split = left_low.max(2) + left_high.max(2)
    right_split = right_low.max(2) + right_high.max(2)
    left_none, right_none = left.max(1), right.max(1)
    split_left, split_right = left_split.max(1) > left_none, right_split.max(1) > right_none
    right_rows = np.maximum(right_split.max(1), right_none)
    score = np.maximum(left_split.max(1), left_none) + right_rows
    splits = 1 + split_left.astype(np.int64) + split_right
    root = int(np.lexsort((splits, -score))[0])  # the most rows right, then the fewest splits
    cut_left = int(np.argmax(left_split[root])) if split_left[root] else -1
    cut_right = int(np.argmax(right_split[root])) if split_right[root] else -1
    return int(score[root]), int(splits[root]), root, cut_left, cut_right


def _refine(values: np.ndarray, gain: np.ndarray, low: float, high: float) -> float:
    """The cut in ``(low, high)`` that maximises the sum of ``gain`` over the rows at or below
    it (a midpoint between neighbouring values), or ``low``/``high`` themselves."""
    inside = (values > low) & (values < high)
    order = np.argsort(values[inside], kind="stable")
    v, g = values[inside][order], gain[inside][order]
    if len(v) == 0:
        return low
    ends = np.flatnonzero(np.r_[v[1:] != v[:-1], True])  # last row of each distinct value
    running = np.cumsum(g)[ends]
    best = int(np.argmax(np.r_[0.0, running]))
    if best == 0:
        return (low + v[0]) / 2 if np.isfinite(low) else v[0] - 1.0
    if best == len(ends):
        return (v[-1] + high) / 2 if np.isfinite(high) else v[-1] + 1.0
    return float((v[ends[best - 1]] + v[ends[best - 1] + 1]) / 2)


def fit_depth_two(X: np.ndarray, y: np.ndarray, n_labels: int, max_bins: int = 256) -> Tree:
    """A tree of depth two on the two columns of ``X`` (float64) for the label indices ``y``
    (0..n_labels-1): of the trees that split the root on one column and each side on the
    other, one that gets most rows right on the candidate cuts (the fewest splits on a tie),
    its cuts then refined row by row. A split that would leave a side without rows is left out."""
    cuts = [_candidate_cuts(X[:, c], max_bins) for c in (0, 1)]
    if min(len(c) for c in cuts) == 0:
        raise ValueError("a lookahead tree needs two distinct values in each column")
    bins = [np.searchsorted(cuts[c], X[:, c], side="left") for c in (0, 1)]
    counts = np.zeros((len(cuts[0]) + 1, len(cuts[1]) + 1, n_labels), dtype=np.int64)
    np.add.at(counts, (bins[0], bins[1], y), 1)
    found = [_best_depth_two(counts), _best_depth_two(counts.transpose(1, 0, 2))]
    root_col = 0 if (found[0][0], -found[0][1]) >= (found[1][0], -found[1][1]) else 1
    _, _, root, cut_left, cut_right = found[root_col]
    other = 1 - root_col
    t_root = float(cuts[root_col][root])
    t_side = [float(cuts[other][c]) if c >= 0 else None for c in (cut_left, cut_right)]

    def leaf_labels(t_root: float, t_side: list[float | None]) -> list[list[int]]:
        out = []
        for side, t in zip((X[:, root_col] <= t_root, X[:, root_col] > t_root), t_side, strict=True):
            parts = [side] if t is None else [side & (X[:, other] <= t), side & (X[:, other] > t)]
            out.append([int(np.argmax(np.bincount(y[p], minlength=n_labels))) for p in parts])
        return out

    # refine row by row, the leaves' labels held: first the root cut, then each side's cut
    labels = leaf_labels(t_root, t_side)

    def predicted(side: int) -> np.ndarray:
        t = t_side[side]
        if t is None:
            return np.full(len(y), labels[side][0])
        return np.where(X[:, other] <= t, labels[side][0], labels[side][1])

    gain = (predicted(0) == y).astype(np.float64) - (predicted(1) == y)
    position = np.searchsorted(cuts[root_col], t_root)
    low = cuts[root_col][position - 1] if position > 0 else -np.inf
    high = cuts[root_col][position + 1] if position + 1 < len(cuts[root_col]) else np.inf
    t_root = _refine(X[:, root_col], gain, low, high)
    for side, rows in enumerate((X[:, root_col] <= t_root, X[:, root_col] > t_root)):
        labels = leaf_labels(t_root, t_side)
        if t_side[side] is None:
            continue
        lo_label, hi_label = labels[side]
        gain = np.where(rows, (y == lo_label).astype(np.float64) - (y == hi_label), 0.0)
        position = np.searchsorted(cuts[other], t_side[side])
        low = cuts[other][position - 1] if position > 0 else -np.inf
        high = cuts[other][position + 1] if position + 1 < len(cuts[other]) else np.inf
        t_side[side] = _refine(X[:, other], gain, low, high)
    return _layout(X, y, n_labels, root_col, t_root, t_side)


def _layout(
    X: np.ndarray, y: np.ndarray, n_labels: int, root_col: int, t_root: float, t_side: list[float | None]
) -> Tree:
    other = 1 - root_col
    sides = [None if t is None else (other, t, None, None) for t in t_side]
    spec = (root_col, t_root, sides[0], sides[1])
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    counts: list[np.ndarray] = []

    def build(rows: np.ndarray, spec: tuple | None) -> int:
        if spec is not None:
            col, t, low_spec, high_spec = spec
            low, high = rows & (X[:, col] <= t), rows & (X[:, col] > t)
            if not low.any() or not high.any():  # no rule in a split that sends every row one way
                return build(rows, low_spec if low.any() else high_spec)
        node = len(feature)
        feature.append(-2 if spec is None else spec[0])
        threshold.append(-2.0 if spec is None else spec[1])
        left.append(-1)
        right.append(-1)
        counts.append(np.bincount(y[rows], minlength=n_labels))
        if spec is not None:
            left[node] = build(low, spec[2])
            right[node] = build(high, spec[3])
        return node

    build(np.ones(len(y), dtype=bool), spec)
    return Tree(
        np.array(feature, dtype=np.int64),
        np.array(threshold, dtype=np.float64),
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(counts, dtype=np.float64)[:, None, :],
    )
