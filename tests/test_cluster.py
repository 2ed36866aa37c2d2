"""Clustering: every algorithm on well-separated blobs, every metric on hand-made tables,
the stage end to end through the CLI, and bad inputs."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import make_blobs
from typer.testing import CliRunner

from fmnist_cluster.artefacts import StageRun
from fmnist_cluster.cli import app
from fmnist_cluster.cluster import (
    AutoDBSCAN,
    ClusterWarning,
    SampledAgglomerative,
    SilhouetteKMeans,
    auto_min_samples,
    cluster_all,
    contingency,
    knee_index,
    majority_counts,
    purity,
    reduce_features,
    score_clustering,
)
from fmnist_cluster.config import ClusterConfig, ReduceConfig, load_config
from fmnist_cluster.data import DATA_FILE, Dataset
from tests.conftest import assert_same_outputs

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def blobs(n: int = 400, k: int = 4, dims: int = 5, seed: int = 0, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs with labels 0..k-1."""
    x, y = make_blobs(
        n_samples=n, centers=k, n_features=dims, cluster_std=spread, center_box=(-20, 20), random_state=seed
    )
    return x.astype(np.float32), y.astype(np.int64)


def write_features(folder: Path, x_test: np.ndarray, y_test: np.ndarray | None, stage: str = "encode") -> Path:
    """A finished feature artefact (as ``encode`` writes it) holding ``x_test`` / ``y_test``."""
    x_train = x_test[: max(2, len(x_test) // 4)]
    y_train = None if y_test is None else y_test[: len(x_train)]
    with StageRun(stage, folder, {}) as run:
        run.save_npz(DATA_FILE, **Dataset(x_train, y_train, x_test, y_test, None, "dense64").to_arrays())
        run.commit()
    return folder


def small_config(**changes: object) -> ClusterConfig:
    cfg = ClusterConfig(silhouette_sample=300)
    cfg.kmeans.k_range = [2, 6]
    cfg.kmeans.n_init = 3
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            setattr(getattr(cfg, section), name, value)
        else:
            setattr(cfg, section, value)
    return cfg


# -- estimators on blobs ------------------------------------------------------------------
def test_silhouette_kmeans_finds_the_number_of_blobs() -> None:
    from sklearn.metrics import adjusted_rand_score

    for k in (3, 5):
        x, y = blobs(k=k, seed=k)
        model = SilhouetteKMeans(k="auto", k_range=(2, 8), n_init=3, sample_size=300).fit(x)
        assert model.n_clusters_ == k
        assert max(model.silhouette_scores_, key=model.silhouette_scores_.get) == k
        assert adjusted_rand_score(y, model.labels_) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"k_range": (5, 2)}, "k_range must be (low, high) ints with 2 <= low <= high, got (5, 2)"),
        ({"k_range": (1, 4)}, "k_range must be (low, high) ints"),
        ({"sample_size": 0}, "sample_size must be an int >= 2, got 0"),
        ({"n_init": 0}, "n_init must be an int >= 1, got 0"),
    ],
)
def test_kmeans_refuses_bad_search_settings(params: dict, words: str) -> None:
    x, _ = blobs(n=60, k=3)
    with pytest.raises(ValueError, match=re.escape(words)):
        SilhouetteKMeans(**params).fit(x)


def test_kmeans_with_given_k() -> None:
    x, _ = blobs(k=4)
    model = SilhouetteKMeans(k=6, n_init=2).fit(x)
    assert model.n_clusters_ == 6 and len(np.unique(model.labels_)) == 6 and model.silhouette_scores_ == {}


def test_knee_index_of_a_hockey_stick() -> None:
    flat = np.linspace(1.0, 1.5, 90)
    steep = np.linspace(2.0, 20.0, 10)
    curve = np.concatenate([flat, steep])
    assert 85 <= knee_index(curve) <= 90
    assert knee_index(np.ones(10)) == 5


def test_auto_dbscan_recovers_blobs_with_outliers() -> None:
    from sklearn.metrics import adjusted_rand_score

    x, y = blobs(n=600, k=3, dims=2, seed=1, spread=0.5)
    outliers = np.random.default_rng(0).uniform(-40, 40, size=(12, 2)).astype(np.float32)
    model = AutoDBSCAN().fit(np.vstack([x, outliers]))
    assert model.min_samples_ == 6  # 1 % of 612 points
    assert model.n_clusters_ == 3
    core = model.labels_[: len(x)]
    assert adjusted_rand_score(y, core) > 0.97
    assert model.noise_share_ <= 0.10
    assert (model.labels_[len(x) :] == -1).mean() >= 0.75  # far-away points are noise
    assert np.all(np.diff(model.k_distances_) >= 0) and model.eps_ >= model.knee_eps_


@pytest.mark.parametrize(("n", "expected"), [(5, 4), (399, 4), (612, 6), (10_000, 100), (70_000, 500)])
def test_auto_min_samples_is_one_percent_clipped(n: int, expected: int) -> None:
    assert auto_min_samples(n) == expected


def test_auto_dbscan_noise_guard_raises_eps() -> None:
    x, _ = blobs(n=300, k=3, dims=2, seed=2)
    background = np.random.default_rng(1).uniform(-25, 25, size=(75, 2)).astype(np.float32)  # 20 % scattered points
    data = np.vstack([x, background])
    loose = AutoDBSCAN(max_noise=0.5, eps_rule="knee").fit(data)
    strict = AutoDBSCAN(max_noise=0.05, eps_rule="knee").fit(data)
    assert loose.eps_ == loose.knee_eps_ and loose.noise_share_ > 0.05
    assert strict.eps_ > strict.knee_eps_ and strict.noise_share_ <= 0.05
    assert strict.knee_eps_ == loose.knee_eps_


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_most_clusters_rule_keeps_the_widest_clean_split(seed: int) -> None:
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [5, 0], [2.5, 5]])
    groups = [rng.normal(0, 0.6, (400, 2)) + c for c in centres]
    t = rng.uniform(0, 1, 80)
    bridge = np.c_[t * 5, rng.normal(0, 0.15, 80)]  # a thin chain joining two groups
    x = np.vstack([*groups, bridge]).astype(np.float32)

    def significant(labels: np.ndarray) -> int:
        sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, int)
        return int(np.sum(sizes >= 0.01 * len(x)))

    model = AutoDBSCAN(min_samples=16, max_noise=0.10).fit(x)
    assert model.noise_share_ <= 0.10
    np.testing.assert_array_equal(model.labels_, DBSCAN(eps=model.eps_, min_samples=16).fit(x).labels_)
    for q in np.linspace(0.5, 0.995, 34):  # no candidate eps with noise <= 10 % splits wider
        labels = DBSCAN(eps=float(model.k_distances_[int(q * (len(x) - 1))]), min_samples=16).fit(x).labels_
        if np.mean(labels < 0) <= 0.10:
            assert significant(labels) <= significant(model.labels_)
    assert significant(model.labels_) >= significant(AutoDBSCAN(min_samples=16, eps_rule="knee").fit(x).labels_)
    assert significant(model.labels_) >= 3


def test_dbscan_warns_when_all_noise_or_one_cluster() -> None:
    x, y = blobs(n=300, k=3, dims=2)
    for eps, words in ((1e-4, "noise"), (1e4, "one cluster")):
        cfg = small_config(kmeans__enabled=False, hdbscan__enabled=False, agglomerative__enabled=False)
        cfg.dbscan.eps = eps
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cluster_all(x, y, cfg)
        texts = [str(w.message) for w in caught if issubclass(w.category, ClusterWarning)]
        assert any(words in t for t in texts), texts


def test_sampled_agglomerative_labels_every_point() -> None:
    from sklearn.metrics import adjusted_rand_score

    x, y = blobs(n=500, k=4, seed=3)
    model = SampledAgglomerative(n_clusters=4, linkage="ward", max_samples=120, random_state=0).fit(x)
    assert len(model.sample_index_) == 120
    assert adjusted_rand_score(y, model.labels_) == pytest.approx(1.0)
    for linkage in ("average", "complete", "single"):
        assert adjusted_rand_score(
            y, SampledAgglomerative(n_clusters=4, linkage=linkage).fit(x).labels_
        ) == pytest.approx(1.0)


def test_cluster_all_runs_every_algorithm_on_blobs() -> None:
    x, y = blobs(n=500, k=4, seed=4)
    labels, params, _ = cluster_all(x, y, small_config())
    assert set(labels) == {"kmeans", "dbscan", "hdbscan", "agglomerative"}
    for name, lab in labels.items():
        s = score_clustering(x, lab, y, 300)
        assert s["ari"] > 0.95, (name, s["ari"])
    assert params["kmeans"]["k"] == 4 and params["agglomerative"]["n_clusters"] == 4


def test_k_from_labels() -> None:
    x, y = blobs(n=200, k=3)
    labels, params, _ = cluster_all(
        x, y, small_config(kmeans__k="labels", dbscan__enabled=False, hdbscan__enabled=False)
    )
    assert params["kmeans"]["k"] == 3 and len(np.unique(labels["kmeans"])) == 3


def test_default_k_follows_the_labels_and_still_scans_the_silhouette() -> None:
    # 6 blobs, labelled in 3 pairs: the silhouette prefers 6 clusters, the labels ask for 3
    x, blob = blobs(n=600, k=6, seed=7)
    y = blob // 2
    labels, params, curves = cluster_all(
        x, y, small_config(kmeans__k_range=[2, 8], dbscan__enabled=False, hdbscan__enabled=False)
    )
    assert ClusterConfig().kmeans.k == "labels"
    assert params["kmeans"]["k"] == 3 and params["kmeans"]["k_mode"] == "labels"
    assert params["kmeans"]["k_best_silhouette"] == 6 and set(curves["silhouette_by_k"]) == set(range(2, 9))
    assert len(np.unique(labels["kmeans"])) == 3
    _, unlabelled, _ = cluster_all(x, None, small_config(dbscan__enabled=False, hdbscan__enabled=False))
    assert unlabelled["kmeans"]["k"] == 6 and unlabelled["kmeans"]["k_mode"].startswith("auto")


# -- metrics ------------------------------------------------------------------------------
def test_contingency_purity_and_majority_by_hand() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    c = np.array([5, 5, 7, 7, 7, 7, -1, 5])
    table, rows, cols = contingency(y, c)
    assert rows == [0, 1, 2] and cols == [-1, 5, 7]
    assert table.tolist() == [[0, 2, 1], [0, 0, 3], [1, 1, 0]]
    # cluster -1: majority 2 (1), cluster 5: majority 0 (2), cluster 7: majority 1 (3)
    assert purity(y, c) == pytest.approx(6 / 8)
    maj = majority_counts(y, c)
    assert maj == {
        "0": {"correct": 2, "incorrect": 1},
        "1": {"correct": 3, "incorrect": 0},
        "2": {"correct": 0, "incorrect": 2},
    }


def test_scores_of_a_perfect_and_a_random_clustering() -> None:
    x, y = blobs(n=300, k=3)
    perfect = score_clustering(x, (y + 7) % 3, y, 200)  # renamed clusters
    for key in ("ari", "nmi", "homogeneity", "completeness", "v_measure", "purity"):
        assert perfect[key] == pytest.approx(1.0), key
    assert perfect["silhouette"] > 0.7 and perfect["noise_share"] == 0
    random = score_clustering(x, np.random.default_rng(0).integers(0, 3, len(y)), y, 200)
    assert abs(random["ari"]) < 0.05 and random["silhouette"] < 0.1
    one = score_clustering(x, np.zeros(len(y), int), y, 200)
    assert (
        one["homogeneity"] == pytest.approx(0.0)
        and one["completeness"] == pytest.approx(1.0)
        and one["silhouette"] is None
    )
    no_labels = score_clustering(x, y, None, 200)
    assert "ari" not in no_labels and no_labels["n_clusters"] == 3


def test_noise_counts_as_a_cluster_but_ari_clustered_ignores_it() -> None:
    x, y = blobs(n=300, k=3)
    labels = y.copy()
    labels[:30] = -1
    s = score_clustering(x, labels, y, 200)
    assert s["noise_share"] == pytest.approx(0.1)
    assert s["ari_clustered"] == pytest.approx(1.0) and s["ari"] < 1.0


def test_reduce_features() -> None:
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32) * np.arange(1, 9)
    z, rec = reduce_features(x, ReduceConfig(standardize=True, pca_components=3))
    assert z.shape == (100, 3) and rec["dims_in"] == 8 and 0 < rec["pca_explained_variance"] <= 1
    same, _ = reduce_features(x, ReduceConfig(pca_components=50))
    np.testing.assert_allclose(same, x)
    unit, _ = reduce_features(x, ReduceConfig(normalize=True))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit * np.linalg.norm(x, axis=1, keepdims=True), x, rtol=1e-4)


# -- the stage through the CLI -----------------------------------------------------------
def test_cluster_cli_on_an_encoding(tmp_path: Path) -> None:
    x, y = blobs(n=400, k=4, dims=8, seed=5)
    enc = write_features(tmp_path / "enc", x, y)
    args = ["cluster", "--input", str(enc), "--set", "silhouette_sample=300", "--set", "kmeans.n_init=2"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "c1")])
    assert first.exit_code == 0, first.output
    assert "kmeans k=4 ARI 1.000" in first.output
    metrics = json.loads((tmp_path / "c1" / "metrics.json").read_text())
    assert metrics["kind"] == "encoding" and metrics["n"] == 400 and metrics["n_labels"] == 4
    for name in ("kmeans", "dbscan", "hdbscan", "agglomerative"):
        assert metrics["algorithms"][name]["ari"] > 0.95
        assert (tmp_path / "c1" / "figures" / f"contingency-{name}.png").is_file()
    for fig in ("silhouette-by-k", "dbscan-k-distance", "correct-incorrect"):
        assert (tmp_path / "c1" / "figures" / f"{fig}.png").stat().st_size > 1000
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "c2")])
    assert second.exit_code == 0
    assert (tmp_path / "c1" / "labels.npz").read_bytes() == (tmp_path / "c2" / "labels.npz").read_bytes()
    assert_same_outputs(tmp_path / "c1", tmp_path / "c2")


def test_cluster_cli_on_pixels_makes_image_figures(tmp_path: Path, idx_dir: Path) -> None:
    data = tmp_path / "data"
    assert (
        runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(data)]).exit_code == 0
    )
    out = tmp_path / "c"
    result = runner.invoke(
        app,
        [
            "cluster",
            "--input",
            str(data),
            "--out",
            str(out),
            "--split",
            "train",
            "--set",
            "kmeans.k=10",
            "--set",
            "reduce.pca_components=10",
            "--set",
            "silhouette_sample=50",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "pixels" and metrics["reduce"]["dims"] == 10 and metrics["n"] == 50
    assert metrics["algorithms"]["kmeans"]["ari"] == pytest.approx(1.0)  # each label has its own bright bar
    for fig in ("mean-image-per-label", "images-per-cluster-kmeans", "images-per-cluster-dbscan"):
        assert (out / "figures" / f"{fig}.png").is_file()


def test_cluster_cli_on_som_outputs(tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A train-som artefact: each test image becomes its best-matching unit's prototype."""
    data = tmp_path / "data"
    assert (
        runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(data)]).exit_code == 0
    )
    from fmnist_cluster.data import load_dataset

    ds, digest = load_dataset(data)
    weights = np.stack([ds.x_test[ds.y_test == c].mean(axis=0).reshape(-1) for c in range(10)]).reshape(2, 5, 784)
    bmu = ds.y_test.copy()  # a perfect map: unit c holds class c
    som = tmp_path / "som"
    with StageRun("train-som", som, {}) as run:
        run.add_input(data / DATA_FILE, digest)
        run.save_npz("som.npz", weights=weights.astype(np.float32), bmu_test=bmu)
        run.commit()
    import fmnist_cluster.features as features

    loads: list[Path] = []

    def counting_load(folder, *args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append(Path(folder))
        return load_dataset(folder, *args, **kwargs)

    monkeypatch.setattr(features, "load_dataset", counting_load)
    rows = features.load_features(som)
    assert loads == [data], "the recorded preprocess folder is read once, for labels and images"
    assert rows.images is not None and np.array_equal(rows.images, ds.x_test)
    assert np.array_equal(rows.y, ds.y_test) and rows.kind == "som"
    out = tmp_path / "c"
    result = runner.invoke(
        app,
        [
            "cluster",
            "--input",
            str(som),
            "--out",
            str(out),
            "--set",
            "kmeans.k=10",
            "--set",
            "dbscan.enabled=false",
            "--set",
            "hdbscan.enabled=false",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "som" and metrics["algorithms"]["kmeans"]["ari"] == pytest.approx(1.0)
    bad = runner.invoke(app, ["cluster", "--input", str(som), "--out", str(tmp_path / "x"), "--split", "train"])
    assert bad.exit_code == 2 and "test images only" in bad.output


def test_cluster_without_labels(tmp_path: Path) -> None:
    x, _ = blobs(n=200, k=3)
    enc = write_features(tmp_path / "enc", x, None)
    result = runner.invoke(
        app, ["cluster", "--input", str(enc), "--out", str(tmp_path / "c"), "--set", "silhouette_sample=100"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert "ari" not in metrics["algorithms"]["kmeans"] and metrics["algorithms"]["kmeans"]["silhouette"] > 0.5


# -- bad input: one line, exit 2, nothing written ----------------------------------------
@pytest.mark.parametrize(
    ("setup", "args", "words"),
    [
        ("none", [], "does not exist"),
        ("no-manifest", [], "manifest.json is missing"),
        ("ok", ["--set", "kmeans.kk=3"], "unknown config key 'kmeans.kk'"),
        ("ok", ["--set", "dbscan.eps=-1"], "config key 'dbscan.eps'"),
        ("ok", ["--split", "validation"], "unknown split 'validation' in option --split; valid: test, train, all"),
        ("ok", ["--set", "kmeans.enabled=false"], "kmeans is disabled"),
        (
            "ok",
            [
                "--set",
                "kmeans.enabled=false",
                "--set",
                "agglomerative.enabled=false",
                "--set",
                "dbscan.enabled=false",
                "--set",
                "hdbscan.enabled=false",
            ],
            "every algorithm is disabled",
        ),
        ("ok", ["--originals", "ORIG"], "decoding needs the images"),
        ("wrong-stage", [], "was written by `report`"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, setup: str, args: list[str], words: str) -> None:
    enc = tmp_path / "enc"
    if setup == "ok":
        x, y = blobs(n=100, k=2)
        write_features(enc, x, y)
    elif setup == "no-manifest":
        enc.mkdir()
        (enc / DATA_FILE).write_bytes(b"x")
    elif setup == "wrong-stage":
        with StageRun("report", enc, {}) as run:
            run.save_text("report.md", "#")
            run.commit()
    args = [str(tmp_path / "orig") if a == "ORIG" else a for a in args]
    out = tmp_path / "out"
    result = runner.invoke(app, ["cluster", "--input", str(enc), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert result.output.strip().startswith("error:") and "Traceback" not in result.output
    assert not (out / "manifest.json").exists()


def test_shipped_config_is_the_defaults() -> None:
    shipped = yaml.safe_load((ROOT / "configs" / "cluster.yaml").read_text())
    assert shipped == ClusterConfig().model_dump(mode="json")
    assert load_config(ClusterConfig, ROOT / "configs" / "cluster.yaml") == ClusterConfig()


@pytest.mark.parametrize(
    ("estimator", "bad"),
    [
        (SilhouetteKMeans(k=3, n_init=2), {"k": "many"}),
        (AutoDBSCAN(min_samples=5), {"eps_rule": "elbow"}),
        (SampledAgglomerative(n_clusters=3), {"linkage": "median"}),
    ],
)
def test_estimators_follow_the_scikit_learn_contract(estimator, bad: dict) -> None:
    from sklearn.base import clone

    twin = clone(estimator)
    assert twin is not estimator and twin.get_params() == estimator.get_params()
    with pytest.raises(TypeError):
        type(estimator)(3)  # hyperparameters are keyword-only
    with pytest.raises(ValueError, match="unknown"):
        clone(estimator).set_params(**bad).fit(blobs(60, 3)[0])
    x, _ = blobs(60, 3)
    assert clone(estimator).fit(x).labels_.shape == (60,)
    assert clone(estimator).fit_predict(x).shape == (60,)
