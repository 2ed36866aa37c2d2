"""Known answers for the grouping arithmetic of benchmarks/groupings.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "groupings", Path(__file__).resolve().parents[1] / "benchmarks" / "groupings.py"
)
groupings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(groupings)


def test_partitions_are_counted_by_stirling_numbers_and_unique():
    assert list(groupings.partitions(3, 2)) == [(0, 0, 1), (0, 1, 0), (0, 1, 1)]
    assert sum(1 for _ in groupings.partitions(4, 2)) == 7
    every = list(groupings.partitions(10, 5))
    assert len(every) == 42_525 == len(set(every))
    assert all(sorted(set(p)) == [0, 1, 2, 3, 4] for p in every[:1000])


def test_canonical_renumbers_by_first_appearance():
    assert groupings.canonical((3, 3, 1, 1, 0, 2, 0, 2, 4, 4)) == (0, 0, 1, 1, 2, 3, 2, 3, 4, 4)


def test_mapped_accuracy_counts_a_confusion_inside_a_group_as_right():
    y_true = np.array([0, 1, 2, 3])
    y_pred = np.array([1, 1, 3, 0])  # 0->1 and 2->3 are confusions; 3->0 too
    groups = np.array([[0, 0, 1, 1], [0, 1, 0, 1]])
    # grouping {0,1},{2,3}: the 0->1 and 2->3 confusions stay in their group, 3->0 does not
    np.testing.assert_allclose(groupings.mapped_accuracy(groups, y_true, y_pred), [0.75, 0.25])
