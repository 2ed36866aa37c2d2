"""The mystery-label explainer: properties with known answers, the exact segmentation, the
hypothesis estimators, and rules drawn at random in the test on the real images of the
shipped sample (a grouping, property thresholds, a grouping crossed with a property, noise)."""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from typer.testing import CliRunner

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.cli import app
from fmnist_cluster.config import ExplainConfig, PreprocessConfig
from fmnist_cluster.data import load_source
from fmnist_cluster.explain import Evidence, explain
from fmnist_cluster.explain.cuts import segment
from fmnist_cluster.explain.hypotheses import ClassAndProperty, ClassGrouping, PropertyBins, PropertyPair
from fmnist_cluster.explain.properties import (
    PROPERTIES,
    image_properties,
    pixel_index,
    pixel_name,
    screen_pixels,
    to_pixel_scale,
)
from fmnist_cluster.explain.search import noisy_training_note
from tests.rules import RULE_KINDS, draw_rule

runner = CliRunner()
#: Rules are drawn at random from these seeds (reproducible in CI); FMNIST_RULE_SEED=N draws
#: from seed N instead, FMNIST_RULE_SEED=random from a fresh one (printed on failure).
_SEED = os.environ.get("FMNIST_RULE_SEED")
RULE_SEEDS = [secrets.randbelow(2**31)] if _SEED == "random" else [int(_SEED)] if _SEED else [20261124, 7, 2026]


# -- properties -------------------------------------------------------------------------


def test_properties_of_a_hand_made_image() -> None:
    image = np.zeros((28, 28))
    image[4:14, 8:14] = 100  # rows 4..13, columns 8..13
    image[4, 8] = 255
    p = {k: float(v[0]) for k, v in image_properties(image[None]).items()}
    total = 59 * 100 + 255
    assert p["mean_intensity"] == pytest.approx(total / 784)
    assert p["ink_area"] == pytest.approx(60 / 784)
    assert (p["height"], p["width"]) == (10, 6)
    assert p["aspect"] == pytest.approx(0.6)
    rows, cols = np.mgrid[0:28, 0:28]
    assert p["centroid_row"] == pytest.approx((rows * image).sum() / total)
    assert p["centroid_col"] == pytest.approx((cols * image).sum() / total)
    assert p["symmetry_lr"] == pytest.approx(np.abs(image - image[:, ::-1]).mean())
    assert p["symmetry_ud"] == pytest.approx(np.abs(image - image[::-1]).mean())
    assert p["top_share"] == pytest.approx(1.0)  # every ink row is in the top 14
    assert p["left_share"] == pytest.approx(1.0)
    assert p["max_intensity"] == 255
    assert p["std_intensity"] == pytest.approx(image.std())
    assert p["bright_area"] == pytest.approx(1 / 784)
    assert list(p) == list(PROPERTIES)


def test_blank_image_has_defined_properties() -> None:
    p = {k: float(v[0]) for k, v in image_properties(np.zeros((1, 784))).items()}
    assert (p["height"], p["width"], p["aspect"], p["top_share"], p["centroid_row"]) == (0, 0, 0, 0.5, 13.5)


def test_pixel_scale_detects_transformed_images() -> None:
    u8 = np.arange(784, dtype=np.float32).reshape(1, 1, 28, 28) % 256
    pixels, exact = to_pixel_scale(u8 / 255.0)
    assert exact and np.array_equal(pixels[0], (u8[0, 0]).astype(np.float64))
    assert not to_pixel_scale(u8 / 255.0 + 0.001)[1]


# -- the exact segmentation ---------------------------------------------------------------


def _brute_force(counts: np.ndarray, max_segments: int) -> int:
    n_bins, n_labels = counts.shape
    best = 0
    for labels in itertools.product(range(n_labels), repeat=n_bins):
        runs = 1 + sum(a != b for a, b in itertools.pairwise(labels))
        if runs <= max_segments:
            best = max(best, int(sum(counts[b, lab] for b, lab in enumerate(labels))))
    return best


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda n_bins: st.lists(st.lists(st.integers(0, 9), min_size=3, max_size=3), min_size=n_bins, max_size=n_bins)
    ),
    st.integers(1, 4),
)
def test_segmentation_is_optimal(rows: list[list[int]], max_segments: int) -> None:
    counts = np.array(rows, dtype=np.int64)
    runs = segment(counts, max_segments)
    assert runs[0][0] == 0 and len(runs) <= max_segments
    starts = [s for s, _ in runs] + [len(counts)]
    score = sum(int(counts[a:b, lab].sum()) for (a, lab), b in zip(runs, starts[1:], strict=True))
    assert score == _brute_force(counts, max_segments)


# -- estimators ---------------------------------------------------------------------------


def test_property_bins_recovers_thresholds_and_label_order() -> None:
    rng = np.random.default_rng(0)
    v = rng.gamma(3.0, 30.0, 20000)
    order = np.array([2, 0, 3, 1])
    y = order[np.searchsorted([40.0, 71.5, 120.0], v, side="right")]
    model = PropertyBins(n_segments=4).fit(v[:, None], y)
    assert np.allclose(model.thresholds_, [40.0, 71.5, 120.0], atol=0.5)
    assert list(model.range_labels_) == [2, 0, 3, 1]
    assert model.describe(property_names=["mean_intensity"])["rules"]["2"] == "mean_intensity < 40"


def test_class_and_property_splits_one_group() -> None:
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 10, 20000)
    v = rng.uniform(0, 100, 20000)
    grouping = np.array([0, 1, 0, 1, 2, 2, 0, 2, 1, 2])
    y = np.where((grouping[classes] == 2) & (v >= 62.5), 3, grouping[classes])
    model = ClassAndProperty(n_thresholds=1).fit(np.c_[classes, v], y)
    assert model.thresholds_[0] == pytest.approx(62.5, abs=0.2)
    described = model.describe(FASHION_CLASSES, ["ink_area"])
    assert set(described["classes"]["3"]) == {FASHION_CLASSES[c] for c in (4, 5, 7, 9)}
    assert "ink_area ≥ 62.5" in described["rules"]["3"]
    assert described["rules"]["0"] == "T-shirt/top or Pullover or Shirt"
    assert described["properties"] == ["ink_area"]
    everyone = ClassAndProperty(n_thresholds=1).fit(np.c_[classes, v], (v >= 62.5).astype(int))
    assert re.fullmatch(r"ink_area < [\d.]+", everyone.describe(FASHION_CLASSES, ["ink_area"])["rules"]["0"])


def test_a_class_is_never_described_by_a_range_it_has_no_rows_in() -> None:
    """Thresholds 30 and 70 come from T-shirts (three labels); Trousers only reach 60, most of
    them below 30. Their empty range above 70 takes the label of their nearest range, so the
    rule says "Trouser with value ≥ 30", not "Trouser with (value < 30 or value ≥ 70)"; "value < 30"
    holds for both classes, so it names none."""
    rng = np.random.default_rng(3)
    v0, v1 = rng.uniform(0, 100, 6000), np.concatenate([rng.uniform(0, 30, 2800), rng.uniform(30, 60, 1200)])
    classes = np.r_[np.zeros(6000), np.ones(4000)]
    v = np.r_[v0, v1]
    y = np.searchsorted([30.0, 70.0], v, side="right")
    model = ClassAndProperty(n_thresholds=2, n_classes=2).fit(np.c_[classes, v], y)
    assert model.thresholds_ == pytest.approx([30.0, 70.0], abs=0.5)
    assert list(model.table_[1]) == [0, 1, 1]
    assert list(model.predict([[1, 95.0], [1, 5.0]])) == [1, 0]
    rules = model.describe(FASHION_CLASSES, ["value"])["rules"]
    assert re.fullmatch(r"value < [\d.]+", rules["0"]), rules["0"]  # both classes: no class condition
    assert re.match(r"Trouser with value ≥ [\d.]+; or T-shirt/top with ", rules["1"]), rules["1"]


def test_a_pair_tree_that_splits_on_one_property_names_only_that_one() -> None:
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, (4000, 2))
    y = np.searchsorted([0.25, 0.5, 0.75], X[:, 1], side="right")
    model = PropertyPair(max_leaf_nodes=4).fit(X, y)
    assert model.features_used_ == (1,) and model.n_splits_ == 3
    described = model.describe(property_names=["ink_area", "left_share"])
    assert described["properties"] == ["left_share"] and described["n_rules"] == 4
    assert all("ink_area" not in rule for rule in described["rules"].values())
    both = PropertyPair(max_leaf_nodes=4).fit(X, (X[:, 0] > 0.5) ^ (X[:, 1] > 0.5))
    assert both.features_used_ == (0, 1)
    # b only changes how pure the two sides of a are: the tree splits on it, the rule does not
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (3000, 2))
    y = ((X[:, 0] > 0.5) ^ (rng.random(3000) < np.where(X[:, 1] > 0.5, 0.05, 0.35))).astype(int)
    noisy = PropertyPair(max_leaf_nodes=4).fit(X, y)
    assert noisy.tree_model_.get_n_leaves() > 2
    assert noisy.features_used_ == (0,) and noisy.n_splits_ == 1
    described = noisy.describe(property_names=["a", "b"])
    assert described["properties"] == ["a"] and described["n_rules"] == 2 and len(described["thresholds"]) == 1
    constant = PropertyBins(n_segments=2).fit(X[:, :1], np.zeros(3000, int)).describe(property_names=["a"])
    assert constant["properties"] == [] and constant["rules"] == {"0": "every image"}


def test_a_lookahead_tree_finds_an_exclusive_or_a_greedy_one_misses() -> None:
    """Each property cut at its median says nothing about the label alone: every greedy root
    split is as good as none, so four greedy leaves land anywhere; looking one level ahead
    finds the two cuts."""
    rng = np.random.default_rng(1)
    X = rng.random((4000, 2)) * [100.0, 3.0]
    y = (X[:, 0] > np.median(X[:, 0])) ^ (X[:, 1] > np.median(X[:, 1]))
    greedy = PropertyPair(max_leaf_nodes=4).fit(X, y)
    ahead = PropertyPair(search="lookahead").fit(X, y)
    assert np.mean(greedy.predict(X) == y) < 0.6
    assert np.mean(ahead.predict(X) == y) == 1.0 and ahead.n_splits_ == 3 and ahead.features_used_ == (0, 1)
    described = ahead.describe(property_names=("p", "q"))
    assert described["n_rules"] == 4 and set(described["rules"]) == {"False", "True"}
    median = f"{np.median(X[:, 0]):.4g}"  # the cut falls between the two rows around the median
    assert all(median[:4] in rule for rule in described["rules"].values())


@pytest.mark.parametrize("seed", range(5))
def test_a_lookahead_tree_splits_only_where_both_sides_keep_rows(seed: int) -> None:
    """A label on one property alone: the tree names that property only, with one cut, and no
    leaf is left without training rows (such a leaf would give an arbitrary label)."""
    rng = np.random.default_rng(seed)
    X = rng.random((2000, 2))
    X[:, 1] = np.round(X[:, 1] * 50)
    y = (X[:, 1] > np.median(X[:, 1])).astype(int)
    model = PropertyPair(search="lookahead").fit(X, y)
    leaves = model.tree_.children_left < 0
    assert (model.tree_.value[leaves, 0].sum(axis=1) > 0).all()
    assert model.features_used_ == (1,) and model.n_splits_ == 1
    assert model.describe(property_names=("a", "b"))["properties"] == ["b"]
    assert (model.predict(np.array([[-5.0, 50.0], [5.0, 0.0]])) == [1, 0]).all()


def test_the_explainer_finds_an_exclusive_or_of_two_properties(sample: dict) -> None:
    values = sample["all"]
    y = (
        (values["mean_intensity"] > np.median(values["mean_intensity"]))
        ^ (values["symmetry_lr"] > np.median(values["symmetry_lr"]))
    ).astype(np.int64)
    result = explain(_sample_evidence(sample, y))
    assert result["verdict"] == "explained", result["best_guess"]
    assert result["best"]["kind"] == "property-bins"
    assert sorted(result["best"]["properties"]) == ["mean_intensity", "symmetry_lr"]


@pytest.mark.parametrize(
    ("estimator", "bad", "X"),
    [
        (ClassGrouping(n_classes=10), {"n_classes": 0}, np.zeros((5, 1))),
        (PropertyBins(n_segments=3), {"n_segments": 0}, np.zeros((5, 1))),
        (PropertyPair(max_leaf_nodes=3), {"max_leaf_nodes": 1}, np.zeros((5, 2))),
        (PropertyPair(search="lookahead"), {"search": "best"}, np.zeros((5, 2))),
        (ClassAndProperty(n_thresholds=1), {"n_thresholds": 3}, np.zeros((5, 2))),
    ],
)
def test_estimators_follow_the_scikit_learn_contract(estimator, bad: dict, X: np.ndarray) -> None:
    params = estimator.get_params()
    twin = clone(estimator)
    assert twin.get_params() == params and twin is not estimator
    with pytest.raises(NotFittedError):
        estimator.predict(X)
    with pytest.raises(ValueError):
        clone(estimator).set_params(**bad).fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(TypeError):
        type(estimator)(3)  # hyperparameters are keyword-only
    X = np.c_[np.arange(40) % 10, np.arange(40)][:, : X.shape[1]].astype(float)
    y = (np.arange(40) >= 20).astype(int)
    fitted = clone(estimator).fit(X, y)
    assert fitted.predict(X).shape == (40,)
    assert 0.0 <= fitted.score(X, y) <= 1.0


# -- rules drawn at random, on the real images of the sample -----------------------------


@pytest.fixture(scope="module")
def sample() -> dict:
    data = load_source(PreprocessConfig(source="sample"))
    train = image_properties(to_pixel_scale(data.x_train)[0])
    test = image_properties(to_pixel_scale(data.x_test)[0])
    return {
        "pixels_train": to_pixel_scale(data.x_train)[0].reshape(len(data.x_train), -1).astype(np.uint8),
        "pixels_test": to_pixel_scale(data.x_test)[0].reshape(len(data.x_test), -1).astype(np.uint8),
        "train": train,
        "test": test,
        "y_train": data.y_train,
        "y_test": data.y_test,
        "classes": np.concatenate([data.y_train, data.y_test]),
        "all": {k: np.concatenate([train[k], test[k]]) for k in train},
    }


@pytest.mark.parametrize("rule_seed", RULE_SEEDS)
@pytest.mark.parametrize("kind", RULE_KINDS)
def test_explainer_finds_a_random_rule(sample: dict, kind: str, rule_seed: int) -> None:
    rng = np.random.default_rng([rule_seed, RULE_KINDS.index(kind)])
    y, rule = draw_rule(kind, rng, sample["classes"], sample["all"])
    n = len(sample["y_train"])
    evidence = Evidence(
        y[:n], y[n:], sample["train"], sample["test"], sample["y_train"], sample["y_test"], FASHION_CLASSES, "content"
    )
    result = explain(evidence, seed=int(rng.integers(1000)))
    where = f"rule {rule} (FMNIST_RULE_SEED={rule_seed}); explanation {result['best_guess']}"
    assert set(result) >= {"verdict", "agreement", "chance", "best", "candidates"}
    tried = {kind for c in result["candidates"] for kind in [c["kind"], *c.get("also_found_by", [])]}
    rules = [json.dumps([c["kind"], c["properties"], c["rules"]]) for c in result["candidates"]]
    assert len(set(rules)) == len(rules), where  # a rule found twice is listed once
    said = [json.dumps([c["properties"], c["rules"]]) for c in result["candidates"]]
    assert len(set(said)) == len(said), where  # also when two families found it
    assert tried == {"class-grouping", "property-bins", "class-and-property"}, where
    assert result["holds_on_test"] is True, where  # the same rule on both splits is never flagged
    assert noisy_training_note(result) == "", where  # nor the other way round
    if kind == "noise":
        assert result["verdict"] == "unexplained", where
        assert result["best"] is None
        return
    best = result["best"]
    assert result["verdict"] == "explained", where
    assert best["kind"] == kind, where
    assert best["agreement"] >= 0.99 and result["agreement"] == best["agreement"], where
    if kind == "class-grouping":
        grouping = np.array(rule["grouping"])
        for label in np.unique(grouping):
            expected = {FASHION_CLASSES[c] for c in np.flatnonzero(grouping == label)}
            assert set(best["classes"][str(label)]) == expected, where
        assert best["properties"] == []
    else:
        # the drawn property, or one the data cannot tell from it (listed as equivalent)
        said = [best["properties"], *(e["properties"] for e in best["equivalent"])]
        assert [rule["property"]] in said, where
    same = [{"kind": best["kind"], "properties": best["properties"]}, *best["equivalent"]]
    assert all(a != b for a, b in itertools.combinations(same, 2)), where
    twins = [c for c in result["candidates"] if (c["properties"], c["rules"]) == (best["properties"], best["rules"])]
    assert not any({"kind": c["kind"], "properties": c["properties"]} in best["equivalent"] for c in twins), where
    if kind == "property-bins":
        assert best["classes"] is None and len(best["thresholds"]) == len(rule["thresholds"]), where
    if kind == "class-and-property":
        assert len(best["thresholds"]) == 1, where


def test_screen_pixels_finds_the_pixel_that_decides() -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (3000, 784))
    y = np.searchsorted([60, 190], pixels[:, 407], side="right")  # 3 labels from pixel (14, 15)
    assert screen_pixels(pixels, y, 2)[0] == 407 and pixel_name(407) == "pixel_r14_c15"
    assert pixel_index("pixel_r14_c15") == 407 and pixel_index("pixel_r28_c0") is None
    assert pixel_index("mean_intensity") is None
    with pytest.raises(ValueError, match=r"0\.\.255"):
        screen_pixels(pixels - 1, y, 2)


def test_screen_pixels_finds_a_band_of_values_and_scores_every_pair_of_cuts() -> None:
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (3000, 784))
    band = ((pixels[:, 406] >= 100) & (pixels[:, 406] <= 150)).astype(np.int64)  # one threshold cannot
    assert screen_pixels(pixels, band, 1) == [406]
    # against a brute force over every pair of cuts a <= b, on values 0..5 and 3 labels
    small = rng.integers(0, 6, (120, 784))
    y = rng.integers(0, 3, 120)

    def best_pair(column: np.ndarray) -> int:
        best = 0
        for a in range(-1, 6):
            for b in range(a, 6):
                parts = (column <= a, (column > a) & (column <= b), column > b)
                best = max(best, sum(int(np.bincount(y[p], minlength=3).max()) for p in parts))
        return best

    scores = np.array([best_pair(small[:, j]) for j in range(784)])
    assert screen_pixels(small, y, 20) == [int(j) for j in np.argsort(-scores, kind="stable")[:20]]


@pytest.mark.parametrize("where", [(14, 14), (6, 20)])
def test_a_rule_on_one_pixel_is_found_by_name(sample: dict, where: tuple[int, int]) -> None:
    """A label from thresholds on one pixel, which no named property is: the pixel is screened
    in and named; with ``explain.pixels`` = 0 it is not tried."""
    index = where[0] * 28 + where[1]
    values = np.concatenate([sample["pixels_train"][:, index], sample["pixels_test"][:, index]]).astype(np.int64)
    cuts = np.unique(np.quantile(values, [0.35, 0.7]) + 0.5)
    cuts = cuts[cuts > values.min()]  # a pixel that is 0 in most images gets one threshold
    y = np.searchsorted(cuts, values, side="right")
    evidence = _sample_evidence(sample, y)
    evidence.pixels_train, evidence.pixels_test = sample["pixels_train"], sample["pixels_test"]
    result = explain(evidence, seed=1)
    assert result["verdict"] == "explained", result["best_guess"]
    assert result["best"]["properties"] == [f"pixel_r{where[0]}_c{where[1]}"], result["best"]
    assert len(result["best"]["thresholds"]) == len(cuts)
    # the same split in other words (a pair tree on the pixel, every class crossed with it) is
    # not listed twice in a family, nor as the winner's equivalent
    same = [c for c in result["candidates"] if c["properties"] == result["best"]["properties"] and c["agreement"] == 1]
    assert len([c for c in same if c["kind"] == "property-bins"]) == 1 and result["best"]["equivalent"] == []
    for c in same:
        assert not any(" with " in rule for rule in c["rules"].values()), c["rules"]  # no "(every class) with"
    without = explain(evidence, ExplainConfig(pixels=0), seed=1)
    named = {p for c in without["candidates"] for p in c["properties"]}
    assert not any(p.startswith("pixel_") for p in named)
    assert without["agreement"] < result["agreement"]


@pytest.mark.parametrize(
    ("split", "change", "message"),
    [
        ("pixels_train", lambda x: x / 255.0, "whole numbers on the 0..255 scale"),
        ("pixels_train", lambda x: np.where(x == 7, np.nan, x.astype(float)), "not NaN"),
        ("pixels_test", lambda x: x.astype(np.int64) + 300, r"in 0\.\.255, got 300\.\.555"),
        ("pixels_test", lambda x: x[:, :700], "28 x 28"),
        ("pixels_train", lambda x: x.astype(str), "must be numbers"),
    ],
)
def test_pixels_off_the_8_bit_scale_are_refused(sample: dict, split: str, change, message: str) -> None:
    y = np.concatenate([sample["y_train"], sample["y_test"]]) % 2
    evidence = _sample_evidence(sample, y)
    evidence.pixels_train, evidence.pixels_test = sample["pixels_train"], sample["pixels_test"]
    setattr(evidence, split, change(getattr(evidence, split)))
    with pytest.raises(ValueError, match=message):
        explain(evidence)


def _sample_evidence(sample: dict, y: np.ndarray) -> Evidence:
    n = len(sample["y_train"])
    return Evidence(
        y[:n], y[n:], sample["train"], sample["test"], sample["y_train"], sample["y_test"], FASHION_CLASSES, "content"
    )


def test_a_half_the_images_cannot_show_is_not_dressed_up_as_a_rule(sample: dict) -> None:
    """Labels = class group x the parity of the row: within a class the parity is invisible, so
    any property condition is noise. On 1,200 validation rows some over-fitted class-and-property
    hypothesis always scores a few points above the plain grouping; it must not win unless it is
    significantly better."""
    from fmnist_cluster.config import ExplainConfig

    group = np.array([0, 1, 0, 1, 1, 0, 0, 1, 1, 0])
    y = 2 * group[sample["classes"]] + np.arange(len(sample["classes"])) % 2
    winners, unguarded = set(), set()
    for seed in range(3):
        result = explain(_sample_evidence(sample, y), seed=seed)
        assert result["verdict"] == "partly explained", result["best_guess"]
        winners.add(result["best"]["kind"])
        plain = explain(_sample_evidence(sample, y), ExplainConfig(simplicity_z=0), seed=seed)
        unguarded.add(plain["best_guess"]["kind"])
    assert winners == {"class-grouping"}
    assert unguarded != {"class-grouping"}, "the case no longer needs the significance guard"


@pytest.mark.parametrize("rule", ["bright bags", "darkest images"])
def test_a_rare_label_is_not_dropped_for_a_simpler_rule_within_the_tolerance(sample: dict, rule: str) -> None:
    """A label on 3 % of the rows weighs 3 points in the agreement. Under a tolerance of 5 points
    a simpler rule that never gives it (the grouping of tops without the bright bags; one label
    for every image) would win, though the true rule recalls it and is significantly better on
    the validation rows (about 36 of them)."""
    from fmnist_cluster.config import ExplainConfig

    classes, brightness = sample["classes"], sample["all"]["mean_intensity"]
    if rule == "bright bags":
        bags = classes == 8
        y = np.isin(classes, [0, 2, 4, 6]).astype(np.int64)
        y[bags & (brightness > np.quantile(brightness[bags], 0.7))] = 2
        found = ("class-and-property", ["mean_intensity"])
    else:
        y = (brightness <= np.quantile(brightness, 0.03)).astype(np.int64)
        found = ("property-bins", ["mean_intensity"])
    result = explain(_sample_evidence(sample, y), ExplainConfig(simplicity_tolerance=0.05))
    assert (result["best_guess"]["kind"], result["best_guess"]["properties"]) == found
    assert result["verdict"] == "explained" and all(e["verdict"] == "explained" for e in result["labels"])


def test_on_few_rows_a_constant_guess_does_not_beat_a_perfect_rule(sample: dict) -> None:
    """400 training rows (80 validation) and a rule that gives 8 % of the rows a label of their
    own: a grouping of every class into the common label is at chance, and on 80 rows it is
    not significantly worse than the perfect rule either; being at chance, it must not win."""
    rng = np.random.default_rng([2, 7])
    y, rule = draw_rule("property-bins", rng, sample["classes"], sample["all"])
    assert rule["property"] == "max_intensity"
    n = len(sample["y_train"])
    rows = np.sort(np.random.default_rng(2).choice(n, 400, replace=False))
    evidence = Evidence(
        y[:n][rows],
        y[n:],
        {k: v[rows] for k, v in sample["train"].items()},
        sample["test"],
        sample["y_train"][rows],
        sample["y_test"],
        FASHION_CLASSES,
        "content",
    )
    result = explain(evidence)
    assert result["verdict"] == "explained", result["best_guess"]
    assert result["best"]["kind"] == "property-bins" and result["best"]["properties"] == ["max_intensity"]


@pytest.mark.parametrize(("source", "verdict"), [("reference", "explained"), ("content", "partly explained")])
def test_classes_a_network_predicted_are_judged_at_reference_fit(sample: dict, source: str, verdict: str) -> None:
    """A true grouping read through class evidence that is wrong on 4 % of the rows: from a
    network (--reference) that is as good as the evidence allows; from exact content it is not."""
    grouping = np.array([0, 1, 0, 2, 2, 3, 0, 3, 2, 3])
    y = grouping[sample["classes"]]
    rng = np.random.default_rng(1)
    seen = [np.where(rng.random(len(c)) < 0.04, (c + 1) % 10, c) for c in (sample["y_train"], sample["y_test"])]
    n = len(sample["y_train"])
    evidence = Evidence(y[:n], y[n:], sample["train"], sample["test"], *seen, FASHION_CLASSES, source)
    result = explain(evidence)
    assert result["verdict"] == verdict and result["best_guess"]["kind"] != "property-bins", result["best_guess"]
    assert result["label_fit"] == (0.9 if source == "reference" else 0.98)
    # a network knows its training images better than the test images: not judged there
    assert result["holds_on_test"] is (None if source == "reference" else True)


def test_a_label_whose_rule_is_incomplete_is_marked(sample: dict) -> None:
    """A grouping, except that 70 % of the trousers (chosen at random) carry a label of their
    own: the whole rule still gives 97 % of the labels, but the new label's rule ("Trouser") is
    only partly right, and the label the other trousers keep has no rule; both say so."""
    from fmnist_cluster.explain.stage import summary_lines

    grouping = np.array([0, 1, 0, 2, 2, 3, 0, 3, 2, 3])
    classes = sample["classes"]
    y = grouping[classes]
    own = (classes == 1) & (np.random.default_rng(0).random(len(classes)) < 0.7)
    y[own] = 4
    # by default a rule right on 97 % of the labels is only partly explained
    assert explain(_sample_evidence(sample, y))["verdict"] == "partly explained"
    # at the looser thresholds its lift would do, but a rule that never gives label 1 explains
    # only the other labels; they are judged one by one
    result = explain(_sample_evidence(sample, y), ExplainConfig(explained_lift=0.9, label_fit=0.9))
    assert result["lift"] >= 0.9 and result["verdict"] == "partly explained"
    assert result["best"]["kind"] == "class-grouping"
    verdicts = {e["label"]: e["verdict"] for e in result["labels"]}
    assert verdicts == {0: "explained", 1: "unexplained", 2: "explained", 3: "explained", 4: "partly explained"}
    trousers = next(e for e in result["labels"] if e["label"] == 4)
    assert trousers["classes"] == ["Trouser"] and trousers["precision"] < 0.9 <= trousers["recall"]
    lines = summary_lines(result)
    assert lines[0].endswith(
        "; label 4 only partly explained (precision or recall under 90 % on the test split); "
        "label 1 unexplained (the rule never gives it)"
    )
    assert lines[5].endswith("- partly explained") and lines[2].startswith("label 1: unexplained")
    assert not lines[1].endswith("partly explained")


def test_labels_that_follow_another_rule_on_test_are_flagged(sample: dict) -> None:
    """The classes themselves, except that T-shirt/top and Shirt swap labels on the test split:
    validation finds the grouping (100 %), the test split disagrees on those two labels; the
    rule gives each of them only to the other's rows. And a cut that is inverted on the test
    split: a rule right on every validation row and wrong on every test row."""
    from fmnist_cluster.explain.stage import summary_lines

    y = sample["classes"].copy()
    n = len(sample["y_train"])
    test = y[n:]
    y[n:] = np.where(test == 0, 6, np.where(test == 6, 0, test))
    result = explain(_sample_evidence(sample, y))
    assert result["best_guess"]["validation_agreement"] == 1.0 and result["best_guess"]["agreement"] == 0.8
    assert result["verdict"] == "partly explained" and result["holds_on_test"] is False
    verdicts = {e["label"]: e["verdict"] for e in result["labels"]}
    assert verdicts[0] == verdicts[6] == "unexplained" and verdicts[1] == "explained"
    lines = summary_lines(result)
    assert "labels 0, 6 unexplained (the rule gives them to none of their test rows)" in lines[0]
    assert lines[0].endswith(
        "the rule fits the validation rows (100.0 %) far better than the test rows (80.0 %): the test labels may "
        "follow another rule than the training labels"
    )
    assert lines[1].endswith("test images) - unexplained") and lines[2].endswith("test images)")
    brightness = sample["all"]["mean_intensity"]
    y = (brightness > np.median(brightness)).astype(np.int64)
    y[n:] = 1 - y[n:]
    result = explain(_sample_evidence(sample, y))
    assert result["verdict"] == "unexplained" and result["holds_on_test"] is False
    assert result["z"] < -3 and result["best_guess"]["agreement"] < 0.05


def test_a_perfect_fit_on_too_few_rare_rows_says_why_it_is_unexplained(sample: dict) -> None:
    """A label on the brightest 0.5 % of the images: found exactly, but its 5 test rows cannot
    make a perfect rule significant (z 2.2 < 3); the verdict says so instead of only z."""
    from fmnist_cluster.explain.search import too_few_note
    from fmnist_cluster.explain.stage import summary_lines

    brightness = sample["all"]["std_intensity"]
    y = (brightness > np.quantile(brightness, 0.995)).astype(np.int64)
    result = explain(_sample_evidence(sample, y))
    assert result["verdict"] == "unexplained" and result["lift"] >= 0.98 and result["z"] < 3
    rarer = int(np.sum(y[len(sample["y_train"]) :] != 0))
    assert too_few_note(result).startswith(
        f"the best guess fits as well as an explained rule, but only {rarer} of the 1000 test rows carry a label "
        "other than the commonest: too few to tell the fit from chance (z "
    )
    assert summary_lines(result)[0].endswith(too_few_note(result))
    assert too_few_note(dict(result, verdict="partly explained")) == too_few_note(dict(result, lift=0.5)) == ""


def test_unexplained_labels_carry_no_rule_and_no_figures_of_one(sample: dict) -> None:
    y = np.random.default_rng(5).integers(0, 4, len(sample["classes"]))
    result = explain(_sample_evidence(sample, y))
    assert result["verdict"] == "unexplained"
    assert all(e["rule"] is None and e["precision"] is None and e["verdict"] is None for e in result["labels"])


# -- the cluster command ----------------------------------------------------------------

FAST = ["--set", "hdbscan.enabled=false", "--set", "agglomerative.enabled=false", "--set", "kmeans.enabled=false"]


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_cluster_explains_a_preprocess_folder_alone(tmp_path: Path) -> None:
    data, mystery, out = tmp_path / "data", tmp_path / "mystery", tmp_path / "c"
    said = _invoke("preprocess", "--source", "sample", "--out", str(data))  # the originals: every sample image
    assert "10 classes ->" in said
    said = _invoke(
        "preprocess", "--source", "sample", "--set", "limit=1500", "--set", "relabel=random", "--out", str(mystery)
    )
    assert re.search(r"\d mystery labels ->", said), said
    output = _invoke("cluster", "--input", str(mystery), "--originals", str(data), "--out", str(out), *FAST)
    explanation = json.loads((out / "explanation.json").read_text())
    assert explanation["verdict"] == "explained"
    assert explanation["best"]["kind"] == "class-grouping"
    assert "explanation: explained" in output and "label 0: " in output
    arrays = np.load(out / "explanation.npz", allow_pickle=False)
    assert np.array_equal(arrays["rule_label"], arrays["y"])  # the grouping is exact
    assert (out / "figures" / "explain-label-0.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "explanation.json" in manifest["outputs"]


def test_cluster_explains_own_label_file_by_a_property(tmp_path: Path) -> None:
    """A Twisted-format folder whose label is the tercile of the mean pixel value: no
    class evidence is given, so only property hypotheses are tried."""
    data = load_source(PreprocessConfig(source="sample", limit=1200))
    folder = tmp_path / "twisted"
    folder.mkdir()
    header = ",".join(str(i) for i in range(784))
    cuts = None
    for split, x in (("train", data.x_train), ("test", data.x_test)):
        pixels = np.rint(x.reshape(len(x), -1) * 255).astype(int)
        mean = pixels.mean(axis=1)
        cuts = np.quantile(mean, [1 / 3, 2 / 3]) if cuts is None else cuts
        np.savetxt(folder / f"x_{split}.csv", pixels, fmt="%d", delimiter=",", header=header, comments="")
        np.savetxt(folder / f"y_{split}.csv", np.searchsorted(cuts, mean), fmt="%d", header="0", comments="")
    mystery, out = tmp_path / "m", tmp_path / "c"
    _invoke("preprocess", "--source", "twisted-csv", "--path", str(folder), "--out", str(mystery))
    _invoke("cluster", "--input", str(mystery), "--out", str(out), *FAST)
    explanation = json.loads((out / "explanation.json").read_text())
    assert explanation["verdict"] == "explained"
    assert explanation["best"]["kind"] == "property-bins"
    assert explanation["best"]["properties"] == ["mean_intensity"]
    assert explanation["families"]["class-grouping"].startswith("skipped")
    assert (out / "figures" / "explain-property-mean_intensity.png").is_file()


def test_transformed_images_skip_property_hypotheses(tmp_path: Path) -> None:
    data, mystery, out = tmp_path / "data", tmp_path / "mystery", tmp_path / "c"
    _invoke("preprocess", "--source", "sample", "--set", "deskew=true", "--out", str(data))
    _invoke(
        "preprocess", "--source", "sample", "--set", "limit=600", "--set", "deskew=true",
        "--set", "relabel=random", "--out", str(mystery),
    )  # fmt: skip
    _invoke("cluster", "--input", str(mystery), "--originals", str(data), "--out", str(out), *FAST)
    explanation = json.loads((out / "explanation.json").read_text())
    assert "not the original 8-bit pixels" in explanation["families"]["property-bins"]
    assert explanation["best"]["kind"] == "class-grouping"


def test_labelled_input_is_not_explained(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "c"
    _invoke("preprocess", "--source", "sample", "--set", "limit=300", "--out", str(data))
    _invoke("cluster", "--input", str(data), "--out", str(out), *FAST)
    assert not (out / "explanation.json").exists()


def test_unknown_property_is_a_config_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["cluster", "--set", "explain.properties=[brightness]", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "unknown property 'brightness'" in result.output


def test_images_with_other_labels_are_refused(tmp_path: Path) -> None:
    data, mystery, other, out = (tmp_path / n for n in ("data", "mystery", "other", "c"))
    _invoke("preprocess", "--source", "sample", "--set", "limit=300", "--out", str(data))
    _invoke("preprocess", "--source", "sample", "--set", "limit=300", "--set", "relabel=random", "--out", str(mystery))
    _invoke(
        "preprocess", "--source", "sample", "--set", "limit=300", "--set", "relabel=random",
        "--set", "seed=7", "--out", str(other),
    )  # fmt: skip
    mine = np.load(mystery / "data.npz")["y_test"]
    theirs = np.load(other / "data.npz")["y_test"]
    assert not np.array_equal(mine, theirs)
    result = runner.invoke(app, ["cluster", "--input", str(mystery), "--images", str(other), "--out", str(out), *FAST])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and "--images" in result.output
    assert not out.exists() or not any(out.iterdir())


def test_classes_without_rows_are_not_claimed() -> None:
    classes = np.arange(100) % 5  # classes 5..9 never seen
    model = ClassGrouping(n_classes=10).fit(classes[:, None], classes % 2)
    described = model.describe(FASHION_CLASSES)
    assert {name for names in described["classes"].values() for name in names} == set(FASHION_CLASSES[:5])
    assert list(model.predict(np.array([[7], [2]]))) == [-1, 0]


def test_rule_text_from_data_is_drawn_as_text() -> None:
    from fmnist_cluster import plots
    from fmnist_cluster.explain.figures import label_montage

    fig = label_montage(np.zeros((2, 28, 28)), ["$\\foo$", "a $b$"], "label 0: $x$ or $\\bar$")
    assert plots.figure_png(fig).startswith(b"\x89PNG")


def test_same_seed_same_explanation_and_tiny_sets_warn(tmp_path: Path) -> None:
    data, mystery = tmp_path / "data", tmp_path / "mystery"
    _invoke("preprocess", "--source", "sample", "--out", str(data))
    _invoke("preprocess", "--source", "sample", "--set", "limit=400", "--set", "relabel=random", "--out", str(mystery))
    texts = []
    for out in ("c1", "c2"):
        _invoke("cluster", "--input", str(mystery), "--originals", str(data), "--out", str(tmp_path / out), *FAST)
        texts.append((tmp_path / out / "explanation.json").read_bytes())
    assert texts[0] == texts[1]
    tiny = tmp_path / "tiny"
    _invoke("preprocess", "--source", "sample", "--set", "limit=8", "--set", "relabel=random", "--out", str(tiny))
    result = runner.invoke(app, ["cluster", "--input", str(tiny), "--out", str(tmp_path / "c3"), *FAST])
    assert result.exit_code == 0, result.output
    assert "not explained" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c3" / "explanation.json").exists()


def test_a_label_no_test_row_carries_is_said_to_be_untested(sample: dict) -> None:
    """Labels = the classes, but the test split keeps only classes 0..2: the rule for the other
    seven cannot be checked, and every place that shows the verdict says so."""
    from fmnist_cluster.explain.search import weak_labels
    from fmnist_cluster.explain.stage import summary_lines

    keep = sample["y_test"] < 3
    evidence = Evidence(
        sample["y_train"],
        sample["y_test"][keep],
        sample["train"],
        {k: v[keep] for k, v in sample["test"].items()},
        sample["y_train"],
        sample["y_test"][keep],
        FASHION_CLASSES,
        "content",
    )
    result = explain(evidence)
    assert result["verdict"] == "explained"
    untested = [e["label"] for e in result["labels"] if e["verdict"] is None]
    assert untested == list(range(3, 10)) and all(result["labels"][k]["rule"] for k in untested)
    assert "labels 3, 4, 5, 6, 7, 8, 9 untested (no test row carries them" in weak_labels(result)
    lines = summary_lines(result)
    assert "untested" in lines[0] and lines[4].endswith("- untested: no test row carries it")


def test_labels_noisier_in_training_than_on_test_are_flagged(sample: dict) -> None:
    """Classes 0..4 against 5..9, with the labels of a fifth of the training rows flipped: the
    grouping is still the rule (test 100 %), but the validation rows, carved from training, fit
    it far worse, and that is said."""
    from fmnist_cluster.explain.stage import summary_lines

    y = (sample["classes"] >= 5).astype(np.int64)
    n = len(sample["y_train"])
    flip = np.random.default_rng(3).random(n) < 0.2
    y[:n] = np.where(flip, 1 - y[:n], y[:n])
    result = explain(_sample_evidence(sample, y))
    assert result["best_guess"]["agreement"] == 1.0 and result["best_guess"]["validation_agreement"] < 0.85
    note = noisy_training_note(result)
    assert note.startswith("the rule fits the test rows (100.0 %) far better than the validation rows")
    assert note in summary_lines(result)[0]
