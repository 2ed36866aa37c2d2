"""Self-organising maps: hand-made maps with known errors, engines, resume, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from fmnist_cluster.artefacts import StageRun, sha256_file
from fmnist_cluster.cli import app
from fmnist_cluster.config import SomConfig, load_config
from fmnist_cluster.data import Dataset
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.som import (
    BatchSOM,
    MiniSomEngine,
    SomGrid,
    best_units,
    majority_accuracy,
    neuron_classes,
    neuron_labels,
    outlier_neurons,
    quantization_error,
    topographic_error,
    train,
    u_matrix,
)
from tests.conftest import assert_same_outputs

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _blobs(n: int = 120, d: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 3
    return (centres[np.arange(n) % 4] + rng.normal(size=(n, d))).astype(np.float32)


# -- metrics on hand-made maps -----------------------------------------------------------
def test_quantization_and_topographic_error_rectangular_known_values() -> None:
    grid = SomGrid(1, 3)  # neurons 0 - 1 - 2 in a row: 0 and 2 are not neighbours
    w = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    x = np.array([[0.9, 0], [0, 0.8], [0.1, 0]], np.float32)
    # winners 1 (d 0.1, runner-up 0: adjacent), 2 (d 0.2, runner-up 0: not adjacent), 0 (d 0.1)
    assert quantization_error(w, x) == pytest.approx(0.4 / 3, abs=1e-6)
    assert topographic_error(w, x, grid) == pytest.approx(1 / 3)


def test_topographic_error_hexagonal_uses_six_neighbours() -> None:
    w = np.array([[0, 0], [5, 5], [5, -5], [1, 0]], np.float32)
    x = np.array([[0.4, 0]], np.float32)  # best neuron 0, runner-up neuron 3
    # on a 2x2 rectangular grid 0 and 3 are diagonal neighbours; on a hexagonal grid they are not
    assert topographic_error(w, x, SomGrid(2, 2, "rectangular")) == 0.0
    assert topographic_error(w, x, SomGrid(2, 2, "hexagonal")) == 1.0


@pytest.mark.parametrize(("topology", "interior"), [("rectangular", 8), ("hexagonal", 6)])
def test_neighbour_counts(topology: str, interior: int) -> None:
    grid = SomGrid(5, 5, topology)
    pairs = grid.neighbour_pairs()
    degree = np.bincount(pairs.ravel(), minlength=25)
    assert degree[2 * 5 + 2] == interior
    assert degree.max() == interior


def test_u_matrix_known_values() -> None:
    assert u_matrix(np.array([[0.0], [1.0], [3.0]]), SomGrid(1, 3)) == pytest.approx([1.0, 1.5, 2.0])
    # hexagonal 2x2: 0-1, 0-2, 1-2, 1-3, 2-3 are neighbours, 0-3 is not
    hexu = u_matrix(np.array([[0.0], [1.0], [3.0], [6.0]]), SomGrid(2, 2, "hexagonal"))
    assert hexu == pytest.approx([2.0, 8 / 3, 8 / 3, 4.0])


def test_best_units_in_chunks_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(53, 6)).astype(np.float32)
    w = rng.normal(size=(9, 6)).astype(np.float32)
    bmu, bmu2, dist = best_units(w, x, chunk_size=7)
    full = np.linalg.norm(x[:, None] - w[None], axis=2)
    order = np.argsort(full, axis=1)
    assert np.array_equal(bmu, order[:, 0]) and np.array_equal(bmu2, order[:, 1])
    assert dist == pytest.approx(full.min(1), abs=1e-5)


def test_outliers_classes_and_majority_classifier() -> None:
    idx, low, high = outlier_neurons(np.array([1, 2, 3, 4, 100]))
    assert list(idx) == [4] and (low, high) == (-1.0, 7.0)
    counts, dominant, purity = neuron_classes(np.array([0, 0, 0, 2]), np.array([1, 1, 0, 2]), 3, 3)
    assert counts.tolist() == [[1, 2, 0], [0, 0, 0], [0, 0, 1]]
    assert dominant.tolist() == [1, -1, 2]
    assert purity[0] == pytest.approx(2 / 3) and np.isnan(purity[1])
    labels = neuron_labels(np.array([[0.0], [0.9], [5.0]]), dominant)  # neuron 1 is nearest to neuron 0
    assert labels.tolist() == [1, 1, 2]
    assert majority_accuracy(labels, np.array([0, 1, 2, 2]), np.array([1, 0, 2, 2])) == 0.75


def test_minisom_engine_metrics_agree_with_minisom() -> None:
    x = _blobs(80, 4)
    for topology in ("rectangular", "hexagonal"):
        eng = MiniSomEngine(rows=5, cols=6, topology=topology, sigma=2.0, steps=300, random_state=1).fit(x)
        ms = eng.minisom_
        assert eng.quantization_error(x) == pytest.approx(ms.quantization_error(x.astype(np.float64)), rel=1e-4)
        assert eng.topographic_error(x) == pytest.approx(ms.topographic_error(x.astype(np.float64)), abs=1e-9)
        degree = np.bincount(eng.grid_.neighbour_pairs().ravel(), minlength=30)
        assert degree.max() == (6 if topology == "hexagonal" else 8)


# -- engines -----------------------------------------------------------------------------
def test_batch_som_learns_and_is_deterministic() -> None:
    x = _blobs()
    kw = {"rows": 4, "cols": 4, "sigma": 2.0, "sigma_end": 0.5, "epochs": 5, "init": "random", "device": "cpu"}
    a = BatchSOM(random_state=7, **kw).fit(x)
    b = BatchSOM(random_state=7, **kw).fit(x)
    c = BatchSOM(random_state=8, **kw).fit(x)
    assert np.array_equal(a.weights_, b.weights_)
    assert not np.array_equal(a.weights_, c.weights_)
    assert a.history_[-1]["qe"] < a.history_[0]["qe"]
    assert a.quantization_error(x) == pytest.approx(a.history_[-1]["qe"], rel=1e-5)
    assert len(a.history_) == 6 and a.history_[0]["sigma"] == pytest.approx(2.0)


def test_minisom_engine_same_seed_same_weights() -> None:
    x = _blobs(60, 4)
    a = MiniSomEngine(rows=4, cols=4, sigma=1.5, steps=200, random_state=3).fit(x)
    b = MiniSomEngine(rows=4, cols=4, sigma=1.5, steps=200, random_state=3).fit(x)
    c = MiniSomEngine(rows=4, cols=4, sigma=1.5, steps=200, random_state=4).fit(x)
    assert np.array_equal(a.weights_, b.weights_) and not np.array_equal(a.weights_, c.weights_)


@pytest.mark.parametrize("neighbourhood", ["gaussian", "bubble", "triangle"])
def test_batch_neighbourhoods_and_hexagonal(neighbourhood: str) -> None:
    x = _blobs()
    som = BatchSOM(
        rows=5,
        cols=5,
        topology="hexagonal",
        neighbourhood=neighbourhood,
        sigma=2.5,
        sigma_end=1.0,
        epochs=4,
        device="cpu",
    )
    som.fit(x)
    assert np.isfinite(som.weights_).all() and som.weights_.shape == (25, 5)
    assert som.quantization_error(x) < np.linalg.norm(x - x.mean(0), axis=1).mean()


def test_sigma_schedule_and_early_stop() -> None:
    som = BatchSOM(sigma=8.0, sigma_end=0.5, epochs=5)
    assert som.sigmas()[[0, -1]] == pytest.approx([8.0, 0.5])
    assert np.all(np.diff(som.sigmas()) < 0)
    stopped = BatchSOM(
        rows=3, cols=3, sigma=1.0, sigma_end=1.0, epochs=20, early_stop_tol=0.5, patience=2, device="cpu"
    )
    stopped.fit(_blobs())
    assert stopped.n_epochs_ == 3


def _interrupted_checkpoint(tmp_path: Path, kw: dict, x: np.ndarray) -> Path:
    """The checkpoint a training of ``BatchSOM(**kw)`` on ``x`` leaves when it is killed in epoch 2."""

    class Stop(Exception):
        pass

    def kill_in_epoch_2(entry: dict) -> None:
        if entry["epoch"] == 2:
            raise Stop

    ckpt = tmp_path / "checkpoint.npz"
    with pytest.raises(Stop):
        train(BatchSOM(**kw), x, checkpoint=ckpt, on_epoch=kill_in_epoch_2)
    return ckpt


@pytest.mark.parametrize("search_dims", [0, 3])
def test_resume_equals_uninterrupted(tmp_path: Path, search_dims: int) -> None:
    x = _blobs()
    kw = {
        "rows": 4,
        "cols": 5,
        "sigma": 3.0,
        "sigma_end": 0.5,
        "epochs": 6,
        "device": "cpu",
        "search_dims": search_dims,
    }
    full = BatchSOM(**kw).fit(x)
    ckpt = _interrupted_checkpoint(tmp_path, kw, x)
    assert ckpt.is_file()
    resumed = train(BatchSOM(**kw), x, checkpoint=ckpt, resume=True)
    assert np.array_equal(resumed.weights_, full.weights_)
    assert resumed.history_ == full.history_
    with pytest.raises(FmnistError, match="5-wide features but the input has 3 columns"):
        train(BatchSOM(**kw), x[:, :3], checkpoint=ckpt, resume=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": "nan"}, "its weights are not a 20-neuron map of finite, plausible values"),
        ({"weights": "huge"}, "its weights are not a 20-neuron map of finite, plausible values"),
        ({"weights": "rows"}, "its weights are not a 20-neuron map"),
        ({"history": "ints"}, "its history is not that of up to 6 epochs of this map"),
        ({"epoch": "abc"}, "does not hold what its stage writes"),
    ],
)
def test_a_damaged_som_checkpoint_is_not_resumed(tmp_path: Path, change: dict, message: str) -> None:
    x = np.random.default_rng(0).random((60, 8)).astype(np.float32)
    kw = {"rows": 4, "cols": 5, "sigma": 2.0, "sigma_end": 0.5, "epochs": 6, "device": "cpu"}
    ckpt = _interrupted_checkpoint(tmp_path, kw, x)
    arrays = dict(np.load(ckpt, allow_pickle=False))
    weights = arrays["weights"].copy()
    if change.get("weights") == "nan":
        weights[1, 1] = np.nan
    elif change.get("weights") == "huge":
        weights[:] = 3e38
    elif change.get("weights") == "rows":
        weights = weights[:7]
    arrays["weights"] = weights
    if "history" in change:  # as many entries as epochs, but not what an epoch records
        arrays["history"] = np.array(json.dumps([1] * int(arrays["epoch"])))
    if "epoch" in change:
        arrays["epoch"] = np.array(change["epoch"])
    np.savez(ckpt, **arrays)
    with pytest.raises(FmnistError, match=message):
        train(BatchSOM(**kw), x, checkpoint=ckpt, resume=True)


def test_subspace_search_trains_as_well_as_exact() -> None:
    x = _blobs(200, 8)
    kw = {"rows": 5, "cols": 5, "sigma": 2.5, "sigma_end": 0.5, "epochs": 6, "device": "cpu"}
    exact = BatchSOM(**kw).fit(x)
    fast = BatchSOM(search_dims=4, exact_epochs=2, **kw).fit(x)
    assert [h.get("search") for h in fast.history_[:-1]] == ["pca4"] * 4 + ["exact"] * 2
    assert fast.quantization_error(x) <= 1.05 * exact.quantization_error(x)


def test_exact_candidates_rerank_the_subspace_search() -> None:
    x = _blobs(200, 8)
    kw = {"rows": 4, "cols": 5, "sigma": 2.5, "sigma_end": 0.5, "epochs": 5, "device": "cpu", "search_dims": 3}
    exact = BatchSOM(exact_epochs=2, **kw).fit(x)
    # all 20 neurons as candidates: the re-ranked search finds the exact winners, so the map is the exact one
    every = BatchSOM(exact_epochs=2, exact_candidates=20, **kw).fit(x)
    assert [h["search"] for h in every.history_[:-1]] == ["pca3"] * 3 + ["pca3, exact among 20"] * 2
    for a, b in zip(exact.history_[:-1], every.history_[:-1], strict=True):
        assert a["qe"] == pytest.approx(b["qe"], rel=1e-5)
    np.testing.assert_allclose(every.weights_, exact.weights_, rtol=1e-5, atol=1e-5)
    assert np.array_equal(every.fit_units_[0], exact.fit_units_[0])
    # few candidates: deterministic, and a map about as good
    few = [BatchSOM(exact_epochs=2, exact_candidates=3, **kw).fit(x) for _ in range(2)]
    assert np.array_equal(few[0].weights_, few[1].weights_)
    assert few[0].quantization_error(x) <= 1.05 * exact.quantization_error(x)


@pytest.mark.parametrize("sigma", [0.6, 1.7, 9.0])
def test_separable_gaussian_matches_the_dense_neighbourhood(sigma: float) -> None:
    from fmnist_cluster.som.batch import _neighbourhood_sums
    from fmnist_cluster.som.grid import neighbourhood

    grid = SomGrid(4, 6)
    gen = torch.Generator().manual_seed(0)
    sums, counts = torch.rand(24, 3, generator=gen), torch.rand(24, generator=gen)
    h = neighbourhood(torch.from_numpy(grid.distances()).float(), sigma, "gaussian")
    num, den = _neighbourhood_sums(sums, counts, grid, sigma, "gaussian", None)
    torch.testing.assert_close(num, h @ sums)
    torch.testing.assert_close(den, h @ counts)


def test_bad_engine_options() -> None:
    with pytest.raises(ValueError, match="exact_candidates must be 0 or >= 2, got 1"):
        BatchSOM(exact_candidates=1).fit(_blobs())
    with pytest.raises(ValueError, match="unknown neighbourhood 'mexican_hat'; valid: gaussian, bubble, triangle"):
        BatchSOM(neighbourhood="mexican_hat").fit(_blobs())
    with pytest.raises(ValueError, match="non-empty"):
        BatchSOM().fit(np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        BatchSOM().fit(np.zeros((12, 0), np.float32))


@pytest.mark.parametrize(
    ("engine", "params", "words"),
    [
        (BatchSOM, {"sigma": float("nan")}, "sigma must be a finite number > 0, got nan"),
        (BatchSOM, {"sigma_end": float("nan")}, "sigma_end must be a finite number > 0"),
        (BatchSOM, {"sigma": "a"}, "sigma must be a finite number > 0, got 'a'"),
        (BatchSOM, {"patience": 0}, "patience must be an int >= 1, got 0"),
        (BatchSOM, {"epochs": 2.5}, "epochs must be an int >= 1, got 2.5"),
        (BatchSOM, {"chunk_size": 2.5}, "chunk_size must be an int >= 1"),
        (BatchSOM, {"early_stop_tol": -1.0}, "early_stop_tol must be a finite number >= 0"),
        (MiniSomEngine, {"sigma": 0.0}, "sigma must be a finite number > 0, got 0.0"),
        (MiniSomEngine, {"sigma": -1.0}, "sigma must be a finite number > 0"),
        (MiniSomEngine, {"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
        (MiniSomEngine, {"steps": 2.5}, "steps must be an int >= 1, got 2.5"),
    ],
)
def test_engines_refuse_numbers_out_of_range_with_value_error(engine: type, params: dict, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        engine(rows=3, cols=3, **params).fit(_blobs())


# -- the scikit-learn estimator contract ---------------------------------------------------
ENGINES = [
    (BatchSOM, {"rows": 3, "cols": 4, "sigma": 2.0, "sigma_end": 0.5, "epochs": 3, "device": "cpu"}),
    (MiniSomEngine, {"rows": 3, "cols": 4, "sigma": 1.5, "steps": 100, "random_state": 2}),
]


@pytest.mark.parametrize(("engine", "params"), ENGINES)
def test_engines_follow_the_estimator_contract(engine: type, params: dict) -> None:
    from sklearn.base import BaseEstimator, clone

    est = engine(**params)
    assert isinstance(est, BaseEstimator)
    assert {k: est.get_params()[k] for k in params} == params  # stored as given
    with pytest.raises(TypeError):
        engine(3, 4)  # keyword-only
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert est.set_params(rows=2) is est and est.get_params()["rows"] == 2 and copy.rows == 3
    est.set_params(rows=3)
    assert not [k for k in vars(est) if k.endswith("_")]  # nothing learned before fit
    x = _blobs(60, 4)
    assert est.fit(x) is est
    learned = {k for k in vars(est) if k not in est.get_params()}
    assert learned and all(k.endswith("_") for k in learned), learned
    assert est.weights_.shape == (12, 4) and est.grid_.n_neurons == 12
    bmu = est.predict(x)
    assert bmu.shape == (60,) and np.array_equal(bmu, best_units(est.weights_, x, second=False)[0])
    assert np.array_equal(est.transform(x), est.grid_.coords[bmu])
    refit = clone(est).fit(x)  # same settings, same seed: same map; a clone keeps no learned state
    assert np.array_equal(refit.weights_, est.weights_) and not hasattr(clone(est), "weights_")
    assert est.fit(x[:, :3]).weights_.shape == (12, 3)  # a refit may change the width


@pytest.mark.parametrize(("engine", "params"), ENGINES)
def test_engines_check_arguments_in_fit(engine: type, params: dict) -> None:
    from sklearn.exceptions import NotFittedError

    x = _blobs(30, 4)
    est = engine(**params, topology="hexagon")  # accepted until fit
    with pytest.raises(ValueError, match="unknown topology 'hexagon'; valid: rectangular, hexagonal"):
        est.fit(x)
    with pytest.raises(ValueError, match="unknown init 'zeros'; valid: pca, random"):
        engine(**params, init="zeros").fit(x)
    with pytest.raises(ValueError, match="map size 0x4 is empty"):
        engine(**{**params, "rows": 0}).fit(x)
    with pytest.raises(TypeError, match="rows must be an int"):
        engine(**{**params, "rows": 2.5}).fit(x)
    with pytest.raises(ValueError, match="non-empty"):
        engine(**params).fit(x[0])
    for method in ("predict", "transform", "quantization_error", "topographic_error"):
        with pytest.raises(NotFittedError):
            getattr(engine(**params), method)(x)
    with pytest.raises(NotFittedError):  # fitted is checked before the rows
        engine(**params).predict(np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="features have 3 columns but the map was trained on 4"):
        engine(**params).fit(x).predict(x[:, :3])


def test_fit_has_no_side_effects_but_the_learned_state() -> None:
    import inspect

    for engine in (BatchSOM, MiniSomEngine):
        assert list(inspect.signature(engine.fit).parameters) == ["self", "X", "y"]
    est = BatchSOM(rows=2, cols=2, epochs=2, device="cpu")
    before = est.get_params()
    est.fit(_blobs(20, 3))
    assert est.get_params() == before


# -- configs -----------------------------------------------------------------------------
def test_shipped_som_configs_load() -> None:
    assert yaml.safe_load((ROOT / "configs" / "som.yaml").read_text()) == SomConfig().model_dump(mode="json")
    for path in sorted((ROOT / "configs").glob("som*.yaml")):
        load_config(SomConfig, path)
    seed = load_config(SomConfig, ROOT / "configs" / "som-seed.yaml")
    assert (seed.som.engine, seed.som.sigma, seed.som.learning_rate, seed.som.steps) == ("minisom", 0.5, 0.4, 1000)
    assert seed.train.pool


def test_config_rejects_mexican_hat_for_batch() -> None:
    with pytest.raises(FmnistError, match="mexican_hat"):
        load_config(SomConfig, None, ["som.neighbourhood=mexican_hat"])


# -- CLI ---------------------------------------------------------------------------------
@pytest.fixture
def data_dir(idx_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    result = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _features_artefact(folder: Path, n_train: int, n_test: int, width: int) -> Path:
    rng = np.random.default_rng(0)
    ds = Dataset(
        x_train=rng.random((n_train, width), dtype=np.float32),
        y_train=np.arange(n_train) % 3,
        x_test=rng.random((n_test, width), dtype=np.float32),
        y_test=np.arange(n_test) % 3,
        layer="fc1",
    )
    with StageRun("encode", folder, {}) as run:
        run.save_npz("data.npz", **ds.to_arrays())
        run.commit()
    return folder


SMALL = ["--set", "som.rows=4", "--set", "som.cols=5", "--set", "som.sigma=2", "--epochs", "3", "--device", "cpu"]


def test_cli_train_som_batch_writes_artefact(data_dir: Path, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = runner.invoke(app, ["train-som", "--input", str(data_dir), "--out", str(out), *SMALL])
        assert result.exit_code == 0, result.output
        outs.append(out)
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert {"qe", "te", "test_qe", "test_accuracy", "neuron_usage", "mean_purity", "history"} <= set(metrics)
    assert len(metrics["history"]) == 4 and metrics["test_is_held_out"]
    for fig in ("u_matrix", "hit_map", "outliers", "labels_map", "prototypes", "winners", "largest_qe", "history"):
        assert (outs[0] / f"{fig}.png").is_file(), fig
    assert not (outs[0] / "checkpoint.npz").exists()
    assert sha256_file(outs[0] / "som.npz") == sha256_file(outs[1] / "som.npz")
    assert_same_outputs(outs[0], outs[1])
    assert (
        "train_seconds" not in metrics
        and json.loads((outs[0] / "manifest.json").read_text())["timings"]["train_seconds"] > 0
    )


@pytest.mark.parametrize("when", ["drawing", "submitting"])
def test_cli_train_som_a_figure_process_that_dies_costs_no_training(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A figure worker killed (e.g. out of memory) breaks the pool, while a figure is drawn or
    before the next is handed over: the figures are drawn in the process itself, with one
    warning, and the artefact is complete."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from fmnist_cluster.figure_workers import FigureRenderer

    submit = FigureRenderer.submit

    def broken(self: FigureRenderer, name: str, *args: object, **kwargs: object) -> Future:
        if self.workers == 1:  # drawing in the process itself still works
            return submit(self, name, *args, **kwargs)
        died = BrokenProcessPool("A process in the process pool was terminated abruptly")
        if when == "submitting":
            raise died
        future: Future = Future()
        future.set_exception(died)
        return future

    monkeypatch.setattr(FigureRenderer, "submit", broken)
    out = tmp_path / "som"
    result = runner.invoke(app, ["train-som", "--input", str(data_dir), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "a process drawing the figures ended unexpectedly" in warned[0], result.output
    for fig in ("u_matrix", "hit_map", "outliers", "labels_map", "prototypes", "winners", "largest_qe", "history"):
        assert (out / f"{fig}.png").is_file(), fig
    assert (out / "manifest.json").is_file()


def test_cli_train_som_minisom_hexagonal_on_features(tmp_path: Path) -> None:
    feats = _features_artefact(tmp_path / "enc", 40, 12, 16)
    out = tmp_path / "som"
    args = [
        "train-som",
        "--input",
        str(feats),
        "--out",
        str(out),
        "--engine",
        "minisom",
        "--set",
        "som.rows=4",
        "--set",
        "som.cols=4",
        "--set",
        "som.topology=hexagonal",
        "--set",
        "som.steps=120",
        "--set",
        "som.neighbourhood=mexican_hat",
        "--set",
        "som.sigma=1.5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "u_matrix.png").is_file() and not (out / "prototypes.png").exists()  # 16-wide: no 28x28 tiles


def test_cli_resume_with_wrong_width_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "som"
    x = np.zeros((4, 784), np.float32)
    train(
        BatchSOM(rows=4, cols=5, sigma=2, epochs=3),
        np.random.default_rng(0).random((30, 784), dtype=np.float32) + x[:1],
        checkpoint=out / "checkpoint.npz",
    )
    feats = _features_artefact(tmp_path / "enc", 30, 10, 16)
    result = runner.invoke(app, ["train-som", "--input", str(feats), "--out", str(out), "--resume", *SMALL])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "checkpoint" in lines[0] and "784-wide" in lines[0] and "16 columns" in lines[0]
    assert not (out / "manifest.json").exists()


def test_cli_empty_input_is_one_line(tmp_path: Path) -> None:
    feats = _features_artefact(tmp_path / "enc", 0, 0, 8)
    result = runner.invoke(app, ["train-som", "--input", str(feats), "--out", str(tmp_path / "som"), *SMALL])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no training samples" in lines[0]


def test_cli_missing_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-som", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "preprocess" in result.output


def test_two_smallest_finds_the_best_two_columns_with_ties_to_the_first() -> None:
    from fmnist_cluster.som import two_smallest

    d = torch.tensor([[3.0, 1.0, 2.0, 1.0], [0.5, 4.0, 0.25, 9.0], [7.0, 7.0, 7.0, 7.0]])
    b1, b2 = two_smallest(d.clone())
    assert b1.tolist() == [1, 2, 0] and b2.tolist() == [3, 0, 1]
    rng = np.random.default_rng(0)
    big = torch.from_numpy(rng.random((300, 50), dtype=np.float32))
    order = np.argsort(big.numpy(), axis=1, kind="stable")
    b1, b2 = two_smallest(big.clone())
    assert np.array_equal(b1.numpy(), order[:, 0]) and np.array_equal(b2.numpy(), order[:, 1])


def test_flush_subnormal_zeroes_only_subnormal_values() -> None:
    from fmnist_cluster.som import flush_subnormal

    t = torch.tensor([1e-40, -1e-40, 1e-37, -2.0, 0.0], dtype=torch.float32)
    assert flush_subnormal(t).tolist() == [0.0, 0.0, pytest.approx(1e-37), -2.0, 0.0]


def test_a_map_trained_at_a_small_width_holds_no_subnormal_weights() -> None:
    """A gaussian at sigma 0.3 underflows a few cells away; subnormal weights slow every search.

    Two groups of rows on disjoint columns (like the always-dark corner pixels of Fashion-MNIST):
    without the flush, 120 of this map's weights are subnormal."""
    from fmnist_cluster.som import BatchSOM

    rng = np.random.default_rng(1)
    x = np.zeros((400, 16), np.float32)
    x[:200, :8], x[200:, 8:] = rng.random((200, 8)), rng.random((200, 8))
    w = BatchSOM(rows=10, cols=10, sigma=3.0, sigma_end=0.3, epochs=6, random_state=0).fit(x).weights_
    tiny = np.finfo(np.float32).tiny
    assert not ((w != 0) & (np.abs(w) < tiny)).any()


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_engines_refuse_features_that_are_not_finite(bad: float) -> None:
    from fmnist_cluster.som import BatchSOM, MiniSomEngine

    x = np.random.default_rng(0).random((20, 4))
    x[3, 2] = bad
    for engine in (BatchSOM(rows=2, cols=2, epochs=1), MiniSomEngine(rows=2, cols=2, epochs=1)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            engine.fit(x)
