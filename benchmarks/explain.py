"""Agreement and seconds of the mystery-label explainer on development label rules.

Draws rules of every family on the real images (the drawing code is ``tests/rules.py``):
groupings of the 10 classes, thresholds on a property, a grouping crossed with or split by a
property threshold, and noise; plus rules that are only partly explainable (a grouping with a
share of its labels replaced at random, a threshold on a property the explainer does not
compute), and two thresholds on a single pixel. For each it runs the explainer with exact class
evidence (the true classes, as ``--originals`` gives them) and the pixels, as the ``cluster``
stage does, and prints the verdict, the family and property found, the test
agreement and the seconds of the search.

These are development label sets: the verdict thresholds and tolerances of ``ExplainConfig``
were checked on them, never on a held-out rule.

Example::

    .venv/bin/python benchmarks/explain.py --fmnist ../shared/data/fashion-mnist --draws 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rules import RULE_KINDS, draw_rule, random_grouping  # noqa: E402

from fmnist_cluster import FASHION_CLASSES  # noqa: E402
from fmnist_cluster.config import PreprocessConfig  # noqa: E402
from fmnist_cluster.data import load_source  # noqa: E402
from fmnist_cluster.explain import Evidence, explain  # noqa: E402
from fmnist_cluster.explain.properties import image_properties, pixel_name, to_pixel_scale  # noqa: E402


def partial_rules(rng: np.random.Generator, classes: np.ndarray, pixels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Rules the explainer can only partly capture."""
    grouping = random_grouping(rng, 4, 5)
    out = []
    for share in (0.1, 0.4):
        y = grouping[classes].copy()
        swap = rng.random(len(y)) < share
        y[swap] = rng.integers(0, grouping.max() + 1, int(swap.sum()))
        out.append((f"grouping, {share:.0%} of labels random", y))
    centre = np.median(pixels[:, 10:18, 10:18].reshape(len(pixels), -1), axis=1)
    out.append(("median of the central 8x8 > its median (not a listed property)", (centre > np.median(centre)) * 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    parser.add_argument("--draws", type=int, default=3, help="rules drawn per family")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    start = time.perf_counter()
    data = load_source(PreprocessConfig(source="idx", path=args.fmnist))
    pixels_train, _ = to_pixel_scale(data.x_train)
    pixels_test, _ = to_pixel_scale(data.x_test)
    loaded = time.perf_counter()
    train, test = image_properties(pixels_train), image_properties(pixels_test)
    props_seconds = time.perf_counter() - loaded
    n = len(data.y_train)
    flat_train = pixels_train.reshape(n, -1).astype(np.uint8)
    flat_test = pixels_test.reshape(len(pixels_test), -1).astype(np.uint8)
    classes = np.concatenate([data.y_train, data.y_test])
    every = {k: np.concatenate([train[k], test[k]]) for k in train}
    print(f"{len(classes)} images loaded in {loaded - start:.1f} s; 14 properties in {props_seconds:.1f} s")
    print("| rule | drawn | verdict | found | test agreement | chance | seconds | anchor tree: agreement, s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    one_hot = np.eye(10)[classes]
    features = np.column_stack([every[k] for k in every] + [one_hot])

    def run(name: str, drawn: str, y: np.ndarray) -> None:
        from sklearn.tree import DecisionTreeClassifier

        began = time.perf_counter()
        evidence = Evidence(y[:n], y[n:], train, test, data.y_train, data.y_test, FASHION_CLASSES, "content")
        evidence.pixels_train, evidence.pixels_test = flat_train, flat_test  # as the cluster stage gives them
        result = explain(evidence, seed=0)
        seconds = time.perf_counter() - began
        # anchor: an opaque tree on every property and the classes, fitted on the same training rows
        began = time.perf_counter()
        tree = DecisionTreeClassifier(min_samples_leaf=20, random_state=0).fit(features[:n], y[:n])
        anchor = time.perf_counter() - began
        tree_agreement = float(np.mean(tree.predict(features[n:]) == y[n:]))
        guess = result["best_guess"] or {"kind": "-", "properties": []}
        found = f"{guess['kind']} {' '.join(guess['properties'])}".strip()
        print(
            f"| {name} | {drawn} | {result['verdict']} | {found} | {result['agreement']:.4f} | "
            f"{result['chance']:.4f} | {seconds:.1f} | {tree_agreement:.4f}, {anchor:.1f} | {seconds / anchor:.1f} |"
        )

    for kind in RULE_KINDS:
        for draw in range(args.draws):
            rng = np.random.default_rng([args.seed, RULE_KINDS.index(kind), draw])
            y, rule = draw_rule(kind, rng, classes, every)
            drawn = rule.get("property", rule.get("grouping", rule.get("k", "")))
            run(kind, str(drawn).replace(" ", ""), y)
    rng = np.random.default_rng(args.seed)
    pixels = np.concatenate([pixels_train, pixels_test])
    for name, y in partial_rules(rng, classes, pixels):
        run("partial", name, y)
    flat = pixels.reshape(len(pixels), -1)
    inked = np.flatnonzero((flat > 0).mean(axis=0) >= 0.5)  # pixels inked in at least half the images
    for index in rng.choice(inked, size=2, replace=False):
        cut = float(np.median(flat[:, index])) + 0.5
        run("one pixel", f"{pixel_name(int(index))} > {cut:g}", (flat[:, index] > cut).astype(np.int64))


if __name__ == "__main__":
    main()
