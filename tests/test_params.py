"""Arguments of the estimators as scikit-learn users pass them: numpy scalars from a parameter
grid, targets of the wrong kind, complex or NaN inputs, seeds; and the shared checks themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from fmnist_cluster.cluster.estimators import AutoDBSCAN, SampledAgglomerative, SilhouetteKMeans
from fmnist_cluster.cnn import CNNClassifier
from fmnist_cluster.cnn.network import check_architecture
from fmnist_cluster.decode import ContentMatcher
from fmnist_cluster.explain.hypotheses import ClassAndProperty, ClassGrouping, PropertyBins
from fmnist_cluster.params import check_choice, check_positive, check_seed, is_int, is_number
from fmnist_cluster.som import BatchSOM, MiniSomEngine
from tests.test_cnn import NO_AUGMENT, TINY, TINY_TRAIN, tiny_images


def blobs(n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(c, 0.1, size=(n // 3, 2)) for c in (0.0, 3.0, 6.0)])


@pytest.mark.parametrize(
    ("value", "integer", "number"),
    [
        (3, True, True),
        (np.int64(3), True, True),
        (np.float32(2.5), False, True),
        (2.5, False, True),
        (True, False, False),
        (np.bool_(True), False, False),
        (float("nan"), False, False),
        ("3", False, False),
    ],
)
def test_numbers_are_told_from_bools_and_text(value, integer: bool, number: bool) -> None:
    assert is_int(value) is integer and is_number(value) is number


def test_the_shared_checks_word_each_mistake_once() -> None:
    with pytest.raises(ValueError, match=r"^unknown order 'x'; valid: random, sequential$"):
        check_choice("order", "x", ("random", "sequential"))
    with pytest.raises(ValueError, match=r"^unknown n 'True'; valid: 1, 2$"):
        check_choice("n", True, (1, 2))  # True == 1 would otherwise pass for a choice of 1
    check_positive("steps", np.int32(4), integer=True)
    with pytest.raises(ValueError, match=r"^max_bins must be an int >= 3, got 2$"):
        check_positive("max_bins", 2, integer=True, least=3)
    with pytest.raises(ValueError, match=r"^sigma must be a finite number > 0, got inf$"):
        check_positive("sigma", float("inf"))
    with pytest.raises(ValueError, match=r"^random_state must be an int from 0 to 4294967295 \(a seed\), got None$"):
        check_seed("random_state", None)


def test_a_grid_of_numpy_numbers_searches_the_clusterers() -> None:
    x = blobs()
    search = GridSearchCV(
        SilhouetteKMeans(n_init=1), {"k": np.arange(2, 4)}, scoring=lambda e, X, y=None: -abs(e.n_clusters_ - 3), cv=2
    )
    assert search.fit(x).best_params_["k"] == 3
    assert (
        SilhouetteKMeans(k=np.int64(3), k_range=(np.int64(2), np.int64(4)), n_init=np.int64(1)).fit(x).n_clusters_ == 3
    )
    labels = AutoDBSCAN(eps=np.float32(1.0), min_samples=np.int64(3), max_noise=np.float64(0.2)).fit_predict(x)
    assert len(set(labels) - {-1}) == 3
    assert len(set(SampledAgglomerative(n_clusters=np.int64(3), max_samples=np.int64(30)).fit_predict(x))) == 3


@pytest.mark.parametrize(
    ("estimator", "words"),
    [
        (AutoDBSCAN(eps=True), "unknown dbscan eps 'True'"),
        (SampledAgglomerative(max_samples=0), "agglomerative max_samples must be an int >= 2, got 0"),
        (SampledAgglomerative(random_state="x"), "agglomerative random_state must be an int from 0 to"),
        (SilhouetteKMeans(random_state=-1), "kmeans random_state must be an int from 0 to"),
    ],
)
def test_clusterers_refuse_bools_sizes_and_seeds_that_are_not_numbers(estimator, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        estimator.fit(blobs())


@pytest.mark.parametrize("engine", [BatchSOM, MiniSomEngine])
def test_map_engines_check_their_seed_and_refuse_complex_features(engine) -> None:
    x = blobs().astype(np.float32)
    with pytest.raises(ValueError, match="random_state must be an int from 0 to"):
        engine(rows=2, cols=2, init="random", random_state=None).fit(x)
    with pytest.raises(ValueError, match="complex numbers"):
        engine(rows=2, cols=2, epochs=1).fit(x + 1j)


def test_classifiers_refuse_a_continuous_target() -> None:
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 10, size=(30, 1))
    for model, X in ((ClassGrouping(), classes), (PropertyBins(), rng.random((30, 1)))):
        with pytest.raises(ValueError, match="Unknown label type: continuous"):
            model.fit(X, rng.random(30))
    x, _ = tiny_images(20, 0)
    cnn = CNNClassifier(architecture=TINY, train={**TINY_TRAIN, "epochs": 1}, augment=NO_AUGMENT, device="cpu")
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        cnn.fit(x, rng.random(20))


def test_a_fitted_cnn_leaves_torch_random_state_as_it_found_it() -> None:
    x, y = tiny_images(40, 0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    CNNClassifier(architecture=TINY, train={**TINY_TRAIN, "epochs": 1}, augment=NO_AUGMENT, device="cpu").fit(x, y)
    assert torch.equal(torch.get_rng_state(), before)


def test_hypotheses_refuse_nan_and_complex_when_predicting_too() -> None:
    model = PropertyBins(n_segments=2).fit(np.arange(20.0)[:, None], np.repeat([0, 1], 10))
    with pytest.raises(ValueError, match="NaN"):
        model.predict([[np.nan]])
    with pytest.raises(ValueError, match="complex"):
        model.predict(np.array([[1.0 + 1j]]))
    with pytest.raises(ValueError, match=r"^unknown n_thresholds '3'; valid: 1, 2$"):
        ClassAndProperty(n_thresholds=3).fit(np.zeros((4, 2)), [0, 1, 0, 1])


@pytest.mark.parametrize("images", [np.zeros((12, 0)), np.zeros(5), iter([np.zeros(784)]), np.zeros((3, 700))])
def test_content_matcher_names_the_image_shapes_it_takes(images) -> None:
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 28, 28\), \(N, 28, 28\) or \(N, 784\)"):
        ContentMatcher().fit(images, np.zeros(12, dtype=np.int64))


def test_content_matcher_matches_no_rows_to_nothing() -> None:
    model = ContentMatcher().fit(np.zeros((2, 784)), np.array([0, 1]))
    classes, ambiguous = model.match(np.zeros((0, 784)))
    assert classes.shape == ambiguous.shape == (0,)


def test_an_unknown_layer_type_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"^unknown type 'convv' in architecture layer 0; valid: conv, pool, "):
        check_architecture([{"name": "c", "type": "convv"}])


def test_numbers_too_large_for_a_float_or_seeds_out_of_range_are_value_errors() -> None:
    assert not is_number(10**400)
    with pytest.raises(ValueError, match="dbscan max_noise"):
        AutoDBSCAN(max_noise=10**400).fit(blobs())
    with pytest.raises(ValueError, match=r"must be an int from 0 to 4294967295 \(a seed\), got 4294967296"):
        check_seed("random_state", 2**32)
    with pytest.raises(ValueError, match=r"^unknown n_thresholds '1.0'; valid: 1, 2$"):
        ClassAndProperty(n_thresholds=1.0).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="unknown order"):
        check_choice("order", np.array(["random", "sequential"]), ("random", "sequential"))
