"""Random mystery-label rules of every family, for the explainer's tests and benchmark.

Each ``draw_*`` takes a generator, the classes and the image properties of the rows (train and
test concatenated) and returns the labels with a description of the rule that made them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist_cluster.explain.properties import PROPERTIES

RULE_KINDS = ("class-grouping", "property-bins", "class-and-property", "noise")


def random_grouping(rng: np.random.Generator, low: int = 2, high: int = 7) -> np.ndarray:
    """A grouping of the 10 classes into K labels 0..K-1 (each used), K drawn in low..high."""
    k = int(rng.integers(low, high + 1))
    return rng.permutation(np.concatenate([np.arange(k), rng.integers(0, k, size=10 - k)]))


def _cuts(rng: np.random.Generator, values: np.ndarray, n_cuts: int, low: float, high: float) -> np.ndarray | None:
    """``n_cuts`` thresholds between distinct values at random quantiles in [low, high], each
    range holding at least 8 % of the rows; None when the property cannot give them."""
    for _ in range(50):
        q = np.sort(rng.uniform(low, high, n_cuts))
        distinct = np.unique(values)
        at = np.searchsorted(distinct, np.quantile(values, q))
        at = np.clip(at, 1, len(distinct) - 1)
        cuts = (distinct[at - 1] + distinct[at]) / 2.0
        shares = np.bincount(np.searchsorted(cuts, values, side="right"), minlength=n_cuts + 1) / len(values)
        if len(np.unique(cuts)) == n_cuts and shares.min() >= 0.08:
            return cuts
    return None


def draw_property_bins(rng: np.random.Generator, props: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    """K in 2..5 labels from random thresholds on one random property, labels in random order."""
    while True:
        name = str(rng.choice(list(PROPERTIES)))
        k = int(rng.integers(2, 6))
        cuts = _cuts(rng, props[name], k - 1, 0.1, 0.9)
        if cuts is not None:
            order = rng.permutation(k)
            y = order[np.searchsorted(cuts, props[name], side="right")]
            return y, {"kind": "property-bins", "property": name, "thresholds": cuts.tolist(), "order": order.tolist()}


def draw_class_and_property(
    rng: np.random.Generator, classes: np.ndarray, props: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, Any]]:
    """A grouping crossed with a threshold on a property (every group split in two), or one
    group of a grouping split by it."""
    while True:
        name = str(rng.choice(list(PROPERTIES)))
        cut = _cuts(rng, props[name], 1, 0.3, 0.7)
        if cut is None:
            continue
        above = props[name] >= cut[0]
        if rng.random() < 0.5:
            groups = random_grouping(rng, 2, 3)
            y = groups[classes] * 2 + above
            how = "crossed"
        else:
            groups = random_grouping(rng, 2, 5)
            split = int(rng.integers(0, groups.max() + 1))
            y = np.where((groups[classes] == split) & above, groups.max() + 1, groups[classes])
            how = "split"
        share = np.bincount(y) / len(y)
        if share.min() >= 0.02:
            return y, {"kind": "class-and-property", "property": name, "threshold": float(cut[0]), "how": how}


def draw_rule(
    kind: str, rng: np.random.Generator, classes: np.ndarray, props: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels of one rule of ``kind`` (one of :data:`RULE_KINDS`) with its description."""
    if kind == "class-grouping":
        grouping = random_grouping(rng)
        return grouping[classes], {"kind": kind, "grouping": grouping.tolist()}
    if kind == "property-bins":
        return draw_property_bins(rng, props)
    if kind == "class-and-property":
        return draw_class_and_property(rng, classes, props)
    if kind == "noise":
        k = int(rng.integers(2, 7))
        return rng.integers(0, k, size=len(classes)), {"kind": "noise", "k": k}
    raise ValueError(f"unknown rule kind '{kind}'; valid: {', '.join(RULE_KINDS)}")
