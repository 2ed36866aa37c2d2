"""Hypotheses about what a mystery label means, as scikit-learn classifiers.

Each hypothesis family is an estimator: ``fit(X, y)`` learns the rule from labelled rows,
``predict(X)`` gives the label the rule assigns, and :meth:`describe` writes the rule out
(``rules`` and ``classes`` per label, ``n_rules``, and the ``properties`` and ``thresholds``
the rule actually tests). Columns of ``X`` per family:

* :class:`ClassGrouping` -- one column, the Fashion-MNIST class id (-1 when unknown);
* :class:`PropertyBins` -- one column, an image property;
* :class:`PropertyPair` -- two columns, two image properties;
* :class:`ClassAndProperty` -- two columns, the class id and an image property.

A row whose class is unknown gets the prediction -1 (never counted as agreeing).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from fmnist_cluster.explain.cuts import (
    best_cut,
    bin_counts,
    interval_text,
    make_bins,
    range_of,
    segment,
)
from fmnist_cluster.explain.lookahead import fit_depth_two
from fmnist_cluster.params import check_choice, check_positive

UNKNOWN = -1
#: How :class:`PropertyPair` grows its tree.
PAIR_SEARCHES = ("greedy", "lookahead")


def _check_xy(X: Any, y: Any, n_columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated (X, label index per row, label values, y)."""
    X = _check_X(X, n_columns)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
    if len(X) == 0:
        raise ValueError("cannot fit a hypothesis on 0 rows")
    if y.dtype.kind not in "biu":  # whole numbers are classes; the check costs a pass over y
        check_classification_targets(y)
    labels, index = np.unique(y, return_inverse=True)
    return X, index.astype(np.int64), labels, y


def _check_X(X: Any, n_columns: int) -> np.ndarray:
    if np.iscomplexobj(X):
        raise ValueError("X holds complex numbers; give real values")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_columns:
        raise ValueError(f"X must have shape (n_rows, {n_columns}), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    return X


def _class_ids(column: np.ndarray, n_classes: int) -> np.ndarray:
    ids = column.astype(np.int64)
    if np.any((ids < UNKNOWN) | (ids >= n_classes)) or np.any(ids != column):
        raise ValueError(f"class ids must be whole numbers in -1..{n_classes - 1}")
    return ids


def _unknown(n: int, labels: np.ndarray) -> np.ndarray:
    """``n`` predictions of "no label" (-1) in a dtype that holds the labels too."""
    return np.full(n, UNKNOWN, dtype=np.result_type(labels.dtype, np.int64))


class ClassGrouping(ClassifierMixin, BaseEstimator):
    """Every Fashion-MNIST class belongs to one label (a many-to-one map).

    Parameters
    ----------
    n_classes : int
        Number of classes (ids 0..n_classes-1).

    Attributes
    ----------
    classes_ : ndarray
        The labels seen in ``fit``.
    table_ : ndarray of int64 (n_classes,)
        Label index of every class (the label most of its rows carry; -1 for a class with no
        row, whose rows are then predicted -1).
    """

    def __init__(self, *, n_classes: int = 10) -> None:
        self.n_classes = n_classes

    def fit(self, X: Any, y: Any) -> ClassGrouping:
        """Learn the label of every class; returns self."""
        check_positive("n_classes", self.n_classes, integer=True)
        X, yi, labels, _ = _check_xy(X, y, 1)
        ids = _class_ids(X[:, 0], self.n_classes)
        known = ids >= 0
        counts = np.zeros((self.n_classes, len(labels)), dtype=np.int64)
        np.add.at(counts, (ids[known], yi[known]), 1)
        self.table_ = np.where(counts.sum(axis=1) > 0, np.argmax(counts, axis=1), UNKNOWN)
        self.classes_ = labels
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Label of every row (-1 where the class is unknown)."""
        check_is_fitted(self, "table_")
        ids = _class_ids(_check_X(X, 1)[:, 0], self.n_classes)
        out = _unknown(len(ids), self.classes_)
        known = ids >= 0
        known[known] = self.table_[ids[known]] >= 0
        out[known] = self.classes_[self.table_[ids[known]]]
        return out

    def describe(self, class_names: Sequence[str], property_names: Sequence[str] = ()) -> dict[str, Any]:
        """The rule: ``rules`` and ``classes`` per label, ``n_rules``, and the ``properties`` it
        names and its ``thresholds`` (none)."""
        check_is_fitted(self, "table_")
        rules, classes = {}, {}
        for i, label in enumerate(self.classes_):
            members = [class_names[c] for c in np.flatnonzero(self.table_ == i)]
            if members:
                rules[str(label)] = " or ".join(members)
                classes[str(label)] = members
        return {"rules": rules, "classes": classes, "n_rules": len(rules), "properties": [], "thresholds": []}


class PropertyBins(ClassifierMixin, BaseEstimator):
    """Thresholds on one property split it into ranges, each range one label.

    The split that agrees with most training rows is found exactly over ``max_bins``
    quantile bins (dynamic programming), then every threshold is moved to the best point
    between the two bins around it, row by row.

    Parameters
    ----------
    n_segments : int
        Most ranges (a label may own more than one).
    max_bins : int
        Quantile bins of the coarse search.

    Attributes
    ----------
    classes_ : ndarray
    thresholds_ : ndarray of float64
        Increasing cuts; range ``i`` is ``thresholds_[i-1] <= v < thresholds_[i]``.
    range_labels_ : ndarray
        The label of every range.
    """

    def __init__(self, *, n_segments: int = 2, max_bins: int = 256) -> None:
        self.n_segments = n_segments
        self.max_bins = max_bins

    def fit(self, X: Any, y: Any) -> PropertyBins:
        """Learn the thresholds; returns self."""
        check_positive("n_segments", self.n_segments, integer=True)
        check_positive("max_bins", self.max_bins, integer=True, least=2)
        X, yi, labels, _ = _check_xy(X, y, 1)
        v = X[:, 0]
        bins = make_bins(v, self.max_bins)
        runs = segment(bin_counts(bins, yi, len(labels)), self.n_segments)
        cuts: list[float] = []
        for (_, below), (start, above) in itertools.pairwise(runs):
            window = (bins.index == start - 1) | (bins.index == start)
            gain = (yi[window] == below).astype(np.int64) - (yi[window] == above)
            cut = best_cut(v[window], gain)
            cut = bins.cut(start) if cut is None else cut
            cuts.append(cut if not cuts or cut > cuts[-1] else bins.cut(start))
        self.thresholds_ = np.array(cuts, dtype=np.float64)
        self.range_labels_ = labels[[label for _, label in runs]]
        self.classes_ = labels
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Label of every row."""
        check_is_fitted(self, "thresholds_")
        return self.range_labels_[range_of(self.thresholds_, _check_X(X, 1)[:, 0])]

    def describe(self, class_names: Sequence[str] = (), property_names: Sequence[str] = ("value",)) -> dict[str, Any]:
        """The rule: ``rules`` per label (``classes`` is None), ``n_rules`` (ranges) and the
        ``properties`` it names (the one, or none when there is a single range) with its
        ``thresholds``."""
        check_is_fitted(self, "thresholds_")
        name = property_names[0]
        cuts = [float(c) for c in self.thresholds_]
        rules = {}
        for label in self.classes_:
            ranges = [i for i, lab in enumerate(self.range_labels_) if lab == label]
            if ranges:
                rules[str(label)] = interval_text(name, ranges, cuts) if cuts else "every image"
        used = [name] if len(self.range_labels_) > 1 else []  # one range: a constant, whatever the value
        n_rules = len(self.range_labels_)
        return {"rules": rules, "classes": None, "n_rules": n_rules, "properties": used, "thresholds": cuts}


def _one_outcome(tree: Any) -> np.ndarray:
    """For every node of a fitted sklearn tree, the class index every leaf under it predicts,
    or -1 where they differ (a split that changes no prediction is no rule)."""
    outcome = np.full(tree.node_count, -1, dtype=np.int64)
    for node in range(tree.node_count - 1, -1, -1):  # children come after their parent
        left, right = tree.children_left[node], tree.children_right[node]
        if left < 0:
            outcome[node] = int(np.argmax(tree.value[node][0]))
        elif outcome[left] == outcome[right]:
            outcome[node] = outcome[left]
    return outcome


class PropertyPair(ClassifierMixin, BaseEstimator):
    """Axis-aligned thresholds on two properties: a decision tree with few leaves.

    Parameters
    ----------
    max_leaf_nodes : int
        Most leaves (rules) of a greedy tree; at least 2.
    search : {'greedy', 'lookahead'}
        ``greedy``: scikit-learn's tree, each split the best on its own.
        ``lookahead``: a tree of depth two (at most 4 leaves; ``max_leaf_nodes`` is not used)
        whose root split is the best with the best split of each side under it, so a rule in
        which neither property tells anything alone (an exclusive or) is found too
        (:mod:`fmnist_cluster.explain.lookahead`).
    max_bins : int
        ``lookahead``: at most ``max_bins - 1`` candidate cuts per property, at its quantiles
        (then refined row by row); at least 2.
    random_state : int

    Attributes
    ----------
    classes_ : ndarray
    tree_ : sklearn.tree._tree.Tree or fmnist_cluster.explain.lookahead.Tree
        The tree's arrays (node 0 the root).
    tree_model_ : sklearn.tree.DecisionTreeClassifier or None
        The greedy tree (None for ``lookahead``).
    features_used_ : tuple of int
        The columns the rule tests (0, 1 or both), in column order.
    n_splits_ : int
        Threshold tests of the rule: the tree's splits below which the predictions differ (a
        split whose two sides predict the same label is left out, and so are its leaves).
    """

    def __init__(
        self, *, max_leaf_nodes: int = 4, search: str = "greedy", max_bins: int = 256, random_state: int = 0
    ) -> None:
        self.max_leaf_nodes = max_leaf_nodes
        self.search = search
        self.max_bins = max_bins
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> PropertyPair:
        """Grow the tree; returns self."""
        from sklearn.tree import DecisionTreeClassifier

        check_positive("max_leaf_nodes", self.max_leaf_nodes, integer=True, least=2)
        check_choice("search", self.search, PAIR_SEARCHES)
        check_positive("max_bins", self.max_bins, integer=True, least=2)
        X, yi, labels, y = _check_xy(X, y, 2)
        if self.search == "lookahead":
            self.tree_model_ = None
            self.tree_ = fit_depth_two(X, yi, len(labels), self.max_bins)
        else:
            self.tree_model_ = DecisionTreeClassifier(
                max_leaf_nodes=self.max_leaf_nodes, random_state=self.random_state
            ).fit(X, yi)
            self.tree_ = self.tree_model_.tree_
        tree = self.tree_
        splits = tree.feature[(tree.children_left >= 0) & (_one_outcome(tree) < 0)]
        self.features_used_ = tuple(sorted({int(f) for f in splits}))
        self.n_splits_ = len(splits)
        self.classes_ = labels
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Label of every row."""
        check_is_fitted(self, "tree_")
        X = _check_X(X, 2)
        if self.tree_model_ is not None:
            return self.classes_[self.tree_model_.predict(X)]
        return self.classes_[np.argmax(self.tree_.value[self.tree_.apply(X), 0], axis=1)]

    def describe(self, class_names: Sequence[str] = (), property_names: Sequence[str] = ("a", "b")) -> dict[str, Any]:
        """The rule: one conjunction per leaf, leaves of a label joined by "or" (a subtree whose
        leaves all give one label is one leaf); ``properties`` lists the properties the rule
        tests, which may be one of the two, and ``thresholds`` its cuts when it tests one."""
        check_is_fitted(self, "tree_")
        tree = self.tree_
        outcome = _one_outcome(tree)
        leaves: list[tuple[int, str]] = []
        cuts: list[float] = []

        def walk(node: int, bounds: dict[int, list[float | None]]) -> None:
            if outcome[node] >= 0:
                label = self.classes_[outcome[node]]
                parts = []
                for f in (0, 1):
                    lo, hi = bounds[f]
                    name = property_names[f]
                    if lo is not None and hi is not None:
                        parts.append(f"{lo:.4g} < {name} ≤ {hi:.4g}")
                    elif lo is not None:
                        parts.append(f"{name} > {lo:.4g}")
                    elif hi is not None:
                        parts.append(f"{name} ≤ {hi:.4g}")
                leaves.append((label, " and ".join(parts) or "any value"))
                return
            f, t = int(tree.feature[node]), float(tree.threshold[node])
            cuts.append(t)
            left = {k: list(v) for k, v in bounds.items()}
            left[f][1] = t if left[f][1] is None else min(left[f][1], t)
            right = {k: list(v) for k, v in bounds.items()}
            right[f][0] = t if right[f][0] is None else max(right[f][0], t)
            walk(int(tree.children_left[node]), left)
            walk(int(tree.children_right[node]), right)

        walk(0, {0: [None, None], 1: [None, None]})
        rules = {}
        for label in self.classes_:
            terms = [text for lab, text in leaves if lab == label]
            if terms:
                rules[str(label)] = " or ".join(f"({t})" if len(terms) > 1 else t for t in terms)
        used = [property_names[f] for f in self.features_used_]
        return {
            "rules": rules,
            "classes": None,
            "n_rules": len(leaves),
            "properties": used,
            "thresholds": sorted(set(cuts)) if len(used) == 1 else [],
        }


class ClassAndProperty(ClassifierMixin, BaseEstimator):
    """A class grouping crossed with, or split by, thresholds on one property.

    The thresholds are shared by every class and split the property into ranges; each
    (class, range) cell gets one label. "Footwear that is bright" is one such rule; a plain
    grouping is the case where every class keeps its label across ranges.

    Parameters
    ----------
    n_thresholds : {1, 2}
        Shared thresholds.
    n_classes : int
    max_bins : int
        Quantile bins of the coarse search (the thresholds are then refined row by row).

    Attributes
    ----------
    classes_ : ndarray
    thresholds_ : ndarray of float64
    table_ : ndarray of int64 (n_classes, n_thresholds + 1)
        Label index of every (class, range) cell: the label most of its rows carry; a cell with
        no row takes the label of the nearest range of its class that has rows (the lower one
        on a tie), so a range no row of the class fell in is never a term of the rule on its
        own; -1 for a class with no row.
    """

    def __init__(self, *, n_thresholds: int = 1, n_classes: int = 10, max_bins: int = 96) -> None:
        self.n_thresholds = n_thresholds
        self.n_classes = n_classes
        self.max_bins = max_bins

    def _table(self, ids: np.ndarray, ranges: np.ndarray, yi: np.ndarray, n_labels: int) -> np.ndarray:
        n_ranges = self.n_thresholds + 1
        counts = np.zeros((self.n_classes, n_ranges, n_labels), dtype=np.int64)
        np.add.at(counts, (ids, ranges, yi), 1)
        table = np.argmax(counts, axis=2)
        seen = counts.sum(axis=2) > 0
        for c in range(self.n_classes):  # a cell without rows says nothing: its class's nearest range decides
            with_rows = np.flatnonzero(seen[c])
            if len(with_rows) == 0:
                table[c] = UNKNOWN
                continue
            for empty in np.flatnonzero(~seen[c]):
                table[c, empty] = table[c, with_rows[np.argmin(np.abs(with_rows - empty))]]  # tie: the lower
        return table

    def fit(self, X: Any, y: Any) -> ClassAndProperty:
        """Learn the thresholds and the table; returns self."""
        check_choice("n_thresholds", self.n_thresholds, (1, 2))
        check_positive("n_classes", self.n_classes, integer=True)
        check_positive("max_bins", self.max_bins, integer=True, least=3)
        X, yi, labels, _ = _check_xy(X, y, 2)
        ids = _class_ids(X[:, 0], self.n_classes)
        known = ids >= 0
        if not known.any():
            raise ValueError("no row has a known class")
        ids, v, yi = ids[known], X[known, 1], yi[known]
        bins = make_bins(v, self.max_bins)
        n_labels = len(labels)
        counts = np.zeros((bins.n_bins, self.n_classes, n_labels), dtype=np.int64)
        np.add.at(counts, (bins.index, ids, yi), 1)
        prefix = np.concatenate([np.zeros((1, self.n_classes, n_labels), np.int64), np.cumsum(counts, axis=0)])
        total = prefix[-1]
        score_below = prefix.max(axis=2).sum(axis=1)  # (n_bins + 1,)
        score_above = (total[None] - prefix).max(axis=2).sum(axis=1)
        positions = np.arange(1, bins.n_bins)
        if len(positions) < self.n_thresholds:
            raise ValueError(f"the property takes too few distinct values for {self.n_thresholds} thresholds")
        if self.n_thresholds == 1:
            chosen = [int(positions[int(np.argmax(score_below[positions] + score_above[positions]))])]
        else:
            best, chosen = -1, [1, 2]
            for p1 in positions[:-1]:
                p2s = np.arange(p1 + 1, bins.n_bins)
                middle = (prefix[p2s] - prefix[p1][None]).max(axis=2).sum(axis=1)
                scores = score_below[p1] + middle + score_above[p2s]
                j = int(np.argmax(scores))
                if scores[j] > best:
                    best, chosen = int(scores[j]), [int(p1), int(p2s[j])]
        cuts_arr = np.array([bins.cut(p) for p in chosen], dtype=np.float64)
        table = self._table(ids, range_of(cuts_arr, v), yi, n_labels)
        for k, p in enumerate(chosen):
            # move the cut to the best point between the two bins around it, the table held fixed
            lo = cuts_arr[k - 1] if k > 0 else -np.inf
            hi = cuts_arr[k + 1] if k + 1 < len(cuts_arr) else np.inf
            window = ((bins.index == p - 1) | (bins.index == p)) & (v > lo) & (v < hi)
            below, above = table[ids[window], k], table[ids[window], k + 1]
            gain = (yi[window] == below).astype(np.int64) - (yi[window] == above)
            cut = best_cut(v[window], gain) if window.any() else None
            if cut is not None:
                cuts_arr[k] = cut
        self.thresholds_ = cuts_arr
        self.table_ = self._table(ids, range_of(cuts_arr, v), yi, n_labels)
        self.classes_ = labels
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Label of every row (-1 where the class is unknown)."""
        check_is_fitted(self, "table_")
        X = _check_X(X, 2)
        ids = _class_ids(X[:, 0], self.n_classes)
        out = _unknown(len(X), self.classes_)
        known = ids >= 0
        cells = self.table_[ids[known], range_of(self.thresholds_, X[known, 1])]
        known[known] = cells >= 0
        out[known] = self.classes_[cells[cells >= 0]]
        return out

    def describe(self, class_names: Sequence[str], property_names: Sequence[str] = ("value",)) -> dict[str, Any]:
        """The rule: per label, the classes and the property ranges that give it; ``properties``
        names the property, and ``thresholds`` lists the cuts, only if some class's label
        changes across its ranges (else the rule is a plain class grouping)."""
        check_is_fitted(self, "table_")
        name = property_names[0]
        cuts = [float(c) for c in self.thresholds_]
        rules, classes, n_rules = {}, {}, 0
        known = np.flatnonzero(self.table_[:, 0] >= 0)
        for i, label in enumerate(self.classes_):
            patterns: dict[tuple[int, ...], list[str]] = {}
            for c in range(self.n_classes):
                ranges = tuple(int(r) for r in np.flatnonzero(self.table_[c] == i))
                if ranges:
                    patterns.setdefault(ranges, []).append(class_names[c])
            if not patterns:
                continue
            terms = []
            for ranges, members in sorted(patterns.items(), key=lambda kv: (-len(kv[0]), kv[0])):
                every = len(members) == len(known)  # every class with rows: no class condition
                group = "any class" if every else " or ".join(members)
                if len(ranges) == len(cuts) + 1:
                    terms.append(group)
                else:
                    where = interval_text(name, list(ranges), cuts)
                    group = f"({group})" if len(members) > 1 else group
                    terms.append(where if every else f"{group} with {f'({where})' if ' or ' in where else where}")
            rules[str(label)] = "; or ".join(terms)
            classes[str(label)] = [m for members in patterns.values() for m in members]
            n_rules += len(terms)
        splits = bool(np.any(self.table_ != self.table_[:, :1]))
        return {
            "rules": rules,
            "classes": classes,
            "n_rules": n_rules,
            "properties": [name] if splits else [],
            "thresholds": cuts if splits else [],  # labels that never change across ranges: no cut
        }
