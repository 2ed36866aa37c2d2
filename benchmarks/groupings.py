"""How a 10-class network would fare on every Twisted grouping of the 10 classes into K labels.

A Twisted label is a grouping of the 10 Fashion-MNIST classes, and a grouping is unknown in
advance, so one grouping's accuracy says little about the next. This script takes the test
predictions of ``train-cnn`` runs on the plain 10-class task (``predictions.npz``) and, for
every partition of the 10 classes into K non-empty groups (42,525 for K = 5), counts a
prediction right when it falls in the true class's group. That is the accuracy of the 10-class
network read through the grouping; a network trained on the grouping itself scores within a
few tenths of a point of it (``docs/benchmarks.md``).

With ``--calibrate RUN=ACC`` it keeps only the groupings on which RUN scores ACC (within
``--tolerance``), for instance the reference design at the 92.26 % a study reported on its own
hidden grouping, and describes the other runs on those groupings.

Example::

    .venv/bin/python benchmarks/groupings.py cnn=outputs/cnn-idx reference=outputs/ref-idx \\
        --calibrate reference=0.9226 --mark 0,1,0,1,2,3,2,3,4,3 --mark 0,0,1,1,2,2,3,3,4,4
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def partitions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every partition of n items into exactly k non-empty groups, as canonical group ids."""

    def grow(prefix: list[int], used: int) -> Iterator[tuple[int, ...]]:
        i = len(prefix)
        if i == n:
            if used == k:
                yield tuple(prefix)
            return
        for g in range(min(used + 1, k)):
            if n - i - 1 >= k - max(used, g + 1):
                yield from grow([*prefix, g], max(used, g + 1))

    yield from grow([0], 1)


def canonical(mapping: tuple[int, ...]) -> tuple[int, ...]:
    """Group ids renumbered in order of first appearance (the form :func:`partitions` gives)."""
    seen: dict[int, int] = {}
    return tuple(seen.setdefault(g, len(seen)) for g in mapping)


def mapped_accuracy(groups: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Accuracy under each grouping (rows of ``groups``): the predicted class's group is right."""
    return (groups[:, y_true] == groups[:, y_pred]).mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR", help="train-cnn output folders of 10-class runs")
    parser.add_argument("--labels", type=int, default=5, help="K, the number of mystery labels (5)")
    parser.add_argument("--calibrate", metavar="NAME=ACC", help="keep the groupings where run NAME scores ACC")
    parser.add_argument("--tolerance", type=float, default=0.002, help="half-width of the --calibrate window")
    parser.add_argument("--target", type=float, default=0.96, help="accuracy whose share of groupings to report")
    parser.add_argument("--mark", action="append", default=[], help="a grouping (10 ids) to report on its own")
    args = parser.parse_args()
    level = 0.0
    if args.calibrate:
        try:
            level = float(args.calibrate.partition("=")[2])
        except ValueError:
            raise SystemExit(f"error: --calibrate {args.calibrate}: ACC must be a number such as 0.9226") from None

    names, acc = [], []
    groups = np.array(list(partitions(10, args.labels)), dtype=np.int64)
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        path = Path(folder) / "predictions.npz"
        if not name or not path.is_file():
            raise SystemExit(f"error: '{spec}' is not NAME=DIR with DIR a train-cnn output; {path} is missing")
        pred = np.load(path)
        if sorted(np.unique(pred["y_true"])) != list(range(10)) or pred["y_pred"].max() > 9:
            raise SystemExit(f"error: {path} is not from the 10-class task; give runs on --source idx data")
        names.append(name)
        acc.append(mapped_accuracy(groups, pred["y_true"], pred["y_pred"]))
        print(f"{name}: 10-class {np.mean(pred['y_true'] == pred['y_pred']):.4f}")
    table = np.array(acc)
    print(f"{len(groups):,} groupings into {args.labels} labels")

    def describe(rows: np.ndarray, title: str) -> None:
        print(f"\n{title} ({int(rows.sum()):,} groupings)")
        print("| run | min | 10th pct | median | 90th pct | max | share >= target |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, a in zip(names, table[:, rows], strict=True):
            q = np.percentile(a, [0, 10, 50, 90, 100]) * 100
            share = np.mean(a >= args.target) * 100
            print(f"| {name} | " + " | ".join(f"{v:.2f} %" for v in q) + f" | {share:.1f} % |")

    describe(np.ones(len(groups), dtype=bool), "all groupings")
    if args.calibrate:
        name = args.calibrate.partition("=")[0]
        if name not in names:
            raise SystemExit(f"error: unknown run '{name}' in --calibrate; valid: {', '.join(names)}")
        ref = table[names.index(name)]
        rows = np.abs(ref - level) <= args.tolerance
        describe(rows, f"groupings where {name} scores {level:.4f} ± {args.tolerance}")
    index = {g: i for i, g in enumerate(map(tuple, groups.tolist()))}
    for mark in args.mark:
        mapping = canonical(tuple(int(v) for v in mark.split(",")))
        if len(mapping) != 10 or mapping not in index:
            raise SystemExit(f"error: --mark {mark} is not 10 group ids with {args.labels} distinct values")
        i = index[mapping]
        scores = ", ".join(f"{n} {a * 100:.2f} %" for n, a in zip(names, table[:, i], strict=True))
        print(f"\ngrouping {mark}: {scores}")


if __name__ == "__main__":
    main()
