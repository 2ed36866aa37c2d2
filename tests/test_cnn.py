"""train-cnn: network building, training on tiny data, determinism, resume, checkpoints, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fmnist_cluster.artefacts import StageRun, sha256_file
from fmnist_cluster.cli import app
from fmnist_cluster.cnn import (
    MODEL_FILE,
    STATE_FILE,
    CNNClassifier,
    Network,
    Trainer,
    augment_batch,
    checkpoint_bytes,
    load_checkpoint,
    make_scheduler,
    n_parameters,
    predict_proba,
    training,
)
from fmnist_cluster.config import AugmentConfig, CnnConfig, CnnTrainConfig, EncodeConfig, load_config
from fmnist_cluster.data import DATA_FILE, Dataset, load_dataset
from fmnist_cluster.errors import FmnistError
from tests.conftest import assert_same_outputs, make_images, write_idx_folder, write_twisted

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# A small network that trains in well under a second on a few hundred images.
TINY = [
    {"name": "conv1", "type": "conv", "filters": 4, "activation": "relu"},
    {"name": "pool1", "type": "pool", "size": 4},
    {"name": "flatten", "type": "flatten"},
    {"name": "dense16", "type": "dense", "units": 16, "activation": "relu"},
    {"name": "output", "type": "dense", "units": "classes"},
]
TINY_TRAIN = {
    "optimizer": "adam",
    "lr": 0.01,
    "batch_size": 32,
    "epochs": 3,
    "val_fraction": 0.2,
    "schedule": "constant",
    "label_smoothing": 0.0,
    "weight_decay": 0.0,
}
# The label is the row of a bright bar, so shifting would change it: no augmentation here.
NO_AUGMENT = {"flip": False, "shift": 0, "erase": 0.0}


def tiny_config(tmp_path: Path, **train: Any) -> Path:
    """A YAML config for the tiny network, written next to the test's data."""
    import yaml

    path = tmp_path / "tiny.yaml"
    cfg = {"architecture": TINY, "train": {**TINY_TRAIN, **train}, "augment": NO_AUGMENT, "threads": 1, "device": "cpu"}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def tiny_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = make_images(n, seed)
    return (images.astype(np.float32) / 255).reshape(n, 1, 28, 28), labels.astype(np.int64)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """preprocess output of 300 train and 100 test images whose label is a bright bar."""
    folder = write_idx_folder(tmp_path / "idx", 300, 100)
    out = tmp_path / "data"
    result = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def train(tmp_path: Path, data: Path, out_name: str = "cnn", *extra: str, **train_settings: Any) -> Any:
    cfg = tiny_config(tmp_path, **train_settings)
    out = tmp_path / out_name
    return runner.invoke(app, ["train-cnn", "-c", str(cfg), "-i", str(data), "-o", str(out), *extra]), out


# -- configs ------------------------------------------------------------------------------
def test_shipped_configs_load_and_cnn_yaml_holds_the_defaults() -> None:
    for name in ("cnn.yaml", "cnn-reference.yaml", "cnn-seed-own.yaml", "cnn-demo.yaml"):
        load_config(CnnConfig, CONFIGS / name)
    assert load_config(CnnConfig, CONFIGS / "cnn.yaml") == CnnConfig()
    assert load_config(EncodeConfig, CONFIGS / "encode.yaml") == EncodeConfig()


def test_reference_config_is_the_published_design() -> None:
    cfg = load_config(CnnConfig, CONFIGS / "cnn-reference.yaml")
    assert [
        (s.type, s.filters, s.kernel, s.stride, s.padding, s.activation) for s in cfg.architecture if s.type == "conv"
    ] == [("conv", 32, 3, 1, 1, "relu")] * 2
    assert [s.type for s in cfg.architecture] == ["conv", "pool", "conv", "flatten", "dense"]
    assert cfg.architecture[-1].units == "classes"
    t = cfg.train
    assert (t.optimizer, t.lr, t.momentum, t.batch_size, t.epochs, t.schedule) == ("sgd", 0.01, 0.9, 15, 10, "constant")
    assert not (cfg.augment.flip or cfg.augment.shift or cfg.augment.erase)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("architecture=[{name: a, type: conv, units: 3}]", "does not take units"),
        ("architecture=[{name: a, type: conv}]", "needs filters"),
        ("architecture=[{name: a, type: dense}]", "needs units"),
        ("architecture=[{name: a, type: pool}, {name: a, type: flatten}]", "used twice"),
        ("architecture=[{name: a.b, type: flatten}]", "architecture.0.name"),
        ("train.optimiser=sgd", "unknown config key 'train.optimiser'"),
        ("train.schedule=linear", "train.schedule"),
        ("augment.shift=20", "augment.shift"),
    ],
)
def test_bad_config_names_the_key(override: str, fragment: str) -> None:
    with pytest.raises(FmnistError, match=None) as info:
        load_config(CnnConfig, None, [override])
    assert fragment in str(info.value)


def test_dump_keeps_only_the_keys_of_each_layer_type() -> None:
    dumped = CnnConfig().model_dump(mode="json")["architecture"]
    pool = next(layer for layer in dumped if layer["type"] == "pool")
    assert set(pool) == {"name", "type", "mode", "size"}
    assert CnnConfig.model_validate(CnnConfig().model_dump(mode="json")) == CnnConfig()


# -- the network --------------------------------------------------------------------------
def test_reference_network_shapes_and_parameter_count() -> None:
    cfg = load_config(CnnConfig, CONFIGS / "cnn-reference.yaml")
    net = Network(cfg.architecture, n_classes=5)
    assert net.shapes == {
        "conv1": (32, 28, 28),
        "pool1": (32, 14, 14),
        "conv2": (32, 14, 14),
        "flatten": (6272,),
        "output": (5,),
    }
    assert n_parameters(net) == (9 * 32 + 32) + (9 * 32 * 32 + 32) + (6272 * 5 + 5)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 5)
    assert net.default_layer() == "flatten"


def test_own_network_default_layer_is_dense64() -> None:
    cfg = load_config(CnnConfig, CONFIGS / "cnn-seed-own.yaml")
    net = Network(cfg.architecture, n_classes=5)
    assert net.shapes["conv3"] == (256, 7, 7) and net.shapes["pool3"] == (256, 3, 3)
    assert net.default_layer() == "dense64" and net.shapes["dense64"] == (64,)


@pytest.mark.parametrize(
    ("layers", "fragment"),
    [
        ([{"name": "d", "type": "dense", "units": "classes"}], "add a flatten layer"),
        (
            [
                {"name": "f", "type": "flatten"},
                {"name": "c", "type": "conv", "filters": 2},
                {"name": "d", "type": "dense", "units": "classes"},
            ],
            "move it before 'flatten'",
        ),
        ([{"name": "f", "type": "flatten"}, {"name": "d", "type": "dense", "units": 7}], "units: classes"),
        ([{"name": "p", "type": "pool", "size": 40}], "remove a pool layer"),
    ],
)
def test_architecture_that_does_not_fit_its_input(layers: list[dict], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        Network(layers, n_classes=3)
    assert fragment in str(info.value)


# -- augmentation and schedules -----------------------------------------------------------
def test_augment_flip_shift_erase_known_answers() -> None:
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 10, 3] = 1.0  # one bright pixel left of centre
    g = torch.Generator().manual_seed(0)
    flipped = augment_batch(x, AugmentConfig(flip=True, shift=0), g)
    on_left = flipped[:, 0, 10, 3] == 1
    on_right = flipped[:, 0, 10, 24] == 1
    assert bool((on_left ^ on_right).all()) and 10 < int(on_left.sum()) < 54
    shifted = augment_batch(x, AugmentConfig(flip=False, shift=2), torch.Generator().manual_seed(0))
    rows, cols = np.nonzero(shifted[:, 0].sum(0).numpy())
    assert shifted.sum() == 64 and set(rows) <= set(range(8, 13)) and set(cols) <= set(range(1, 6))
    ones = torch.ones(64, 1, 28, 28)
    erased = augment_batch(ones, AugmentConfig(flip=False, shift=0, erase=1.0), torch.Generator().manual_seed(0))
    assert bool(((erased == 0).flatten(1).any(1)).all()) and bool((erased <= 1).all())
    again = augment_batch(ones, AugmentConfig(flip=False, shift=0, erase=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(erased, again)
    assert torch.equal(augment_batch(x, AugmentConfig(flip=False, shift=0), g), x)


def _rates(schedule: str, epochs: int = 10, **train: Any) -> np.ndarray:
    """The learning rate of every step of a run of 10 steps an epoch with train.lr=1."""
    config = CnnTrainConfig(schedule=schedule, epochs=epochs, lr=1.0, **train)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = make_scheduler(opt, config, steps_per_epoch=10)
    rates = []
    for _ in range(epochs * 10):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(rates)


def test_schedules_known_answers() -> None:
    onecycle = _rates("onecycle", warmup=0.2)
    assert onecycle[0] == pytest.approx(0.04) and int(np.argmax(onecycle)) == 20 and onecycle.max() == pytest.approx(1)
    assert (np.diff(onecycle[:21]) > 0).all() and (np.diff(onecycle[20:]) < 0).all()
    floor = 1e-3 + (1 - 1e-3) * 0.5 * (1 + np.cos(np.pi * 79 / 80))  # one step before the floor of 0.1 %
    assert onecycle[-1] == pytest.approx(floor)
    cosine = _rates("cosine")
    assert cosine[0] == 1 and cosine[50] == pytest.approx(0.5)
    assert cosine[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.99)))
    step = _rates("step")
    assert step[49] == 1 and step[50] == pytest.approx(0.1)
    assert step[74] == pytest.approx(0.1) and step[75] == pytest.approx(0.01)
    assert (_rates("constant") == 1).all()
    for epochs, warmup in ((1, 0.1), (1, 0.5), (1, 0.9)):  # short runs, a warm-up of 1 to 9 steps
        short = _rates("onecycle", epochs=epochs, warmup=warmup)
        assert short[0] == pytest.approx(0.04) and int(np.argmax(short)) == round(10 * warmup)


# -- training -----------------------------------------------------------------------------
def fit_tiny(seed: int = 0, **train: Any) -> CNNClassifier:
    x, y = tiny_images(300, 0)
    model = CNNClassifier(
        architecture=TINY, train={**TINY_TRAIN, **train}, augment=NO_AUGMENT, threads=1, device="cpu", random_state=seed
    )
    return model.fit(x, y)


def test_learns_a_trivially_learnable_label() -> None:
    model = fit_tiny()
    x_test, y_test = tiny_images(100, 1)
    assert model.score(x_test, y_test) >= 0.9
    assert model.n_classes_ == 10 and len(model.history_) == 3
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    proba = model.predict_proba(x_test)
    assert proba.shape == (100, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


def test_test_flip_averages_an_image_and_its_mirror() -> None:
    model = fit_tiny(epochs=1)
    x, _ = tiny_images(20, 3)
    x[:, :, :, :14] += 0.3 * np.random.default_rng(0).random((20, 1, 28, 14), dtype=np.float32)  # left-right asymmetric
    net = model.network_
    single = predict_proba(net, x)
    mirrored = predict_proba(net, np.ascontiguousarray(x[..., ::-1]))
    both = predict_proba(net, x, test_flip=True)
    np.testing.assert_allclose(both, 0.5 * (single + mirrored), atol=1e-6)
    assert not np.allclose(single, mirrored, atol=1e-4)  # the mirror really is a second view
    symmetric = 0.5 * (x + x[..., ::-1])
    np.testing.assert_allclose(predict_proba(net, symmetric, test_flip=True), predict_proba(net, symmetric), atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(x), both, atol=1e-6)  # test_flip is on by default
    model.set_params(augment={**NO_AUGMENT, "test_flip": False})
    np.testing.assert_allclose(model.predict_proba(x), single, atol=1e-6)


@pytest.mark.parametrize(
    ("asked", "supported", "expected"),
    [("auto", True, "bf16"), ("auto", False, "fp32"), ("fp32", True, "fp32"), ("bf16", False, "bf16")],
)
def test_precision_auto_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch, asked: str, supported: bool, expected: str
) -> None:
    monkeypatch.setattr(training, "bf16_supported", lambda device: supported)
    assert training.resolve_precision(asked, torch.device("cpu")) == expected


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown precision 'fp8'; valid: auto, fp32, bf16"):
        training.resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(FmnistError, match=r"train\.precision"):
        load_config(CnnConfig, None, ["train.precision=half"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_learn_and_repeat_exactly(precision: str) -> None:
    a, b = fit_tiny(0, precision=precision), fit_tiny(0, precision=precision)
    assert a.precision_ == precision
    sa, sb = a.network_.state_dict(), b.network_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(v.is_contiguous() for v in sa.values())
    x_test, y_test = tiny_images(100, 1)
    assert a.score(x_test, y_test) >= 0.9


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = fit_tiny(0, epochs=1), fit_tiny(0, epochs=1), fit_tiny(1, epochs=1)
    sa, sb, sc = a.network_.state_dict(), b.network_.state_dict(), c.network_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.0.weight"], sc["conv1.0.weight"])


def test_early_stopping_ends_training_and_keeps_the_best_epoch() -> None:
    model = fit_tiny(epochs=6, lr=1e-9, early_stopping=2)
    assert model.n_epochs_ == 3 and model.best_epoch_ == 1


def test_follows_the_scikit_learn_estimator_contract() -> None:
    from sklearn.base import clone

    params = {"architecture": TINY, "train": {**TINY_TRAIN, "epochs": 1}, "augment": NO_AUGMENT, "threads": 1}
    model = CNNClassifier(**params, device="cpu", random_state=3)
    assert model.get_params() == {**params, "device": "cpu", "random_state": 3}
    assert model.get_params()["train"] is params["train"]  # stored exactly as given
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    assert twin.set_params(random_state=4) is twin and twin.random_state == 4 and model.random_state == 3
    with pytest.raises(TypeError):
        CNNClassifier(TINY)  # type: ignore[misc]  # hyperparameters are keyword-only
    x, y = tiny_images(120, 0)
    names = np.array([f"class {c}" for c in range(10)])[y]  # any labels, not only 0..K-1
    assert model.fit(x, names) is model
    assert list(model.classes_) == sorted(set(names)) and model.n_classes_ == len(model.classes_)
    assert set(model.predict(x[:10])) <= set(names) and model.predict_proba(x[:10]).shape == (10, model.n_classes_)
    assert not hasattr(clone(model), "network_")  # clone keeps the settings, not the learned state


@pytest.mark.parametrize(
    ("params", "error", "fragment"),
    [
        ({"device": "tpu"}, ValueError, "unknown device 'tpu'; valid: auto, cpu, cuda"),
        ({"train": {"schedule": "linear"}}, ValueError, "unknown train.schedule 'linear'; valid: constant, onecycle"),
        ({"train": {"optimiser": "sgd"}}, ValueError, "unknown train key 'optimiser'; valid: optimizer, lr"),
        ({"train": "fast"}, TypeError, "train must be a CnnTrainConfig"),
        ({"augment": {"shift": 20}}, ValueError, "augment.shift: Input should be less than or equal to 8"),
        ({"threads": 0}, ValueError, "threads must be >= 1, got 0"),
        ({"random_state": 1.5}, TypeError, "random_state must be an int"),
        ({"architecture": [{"name": "d", "type": "dense", "units": "classes"}]}, ValueError, "add a flatten layer"),
    ],
)
def test_bad_hyperparameters_raise_value_or_type_error_in_fit(params: dict, error: type, fragment: str) -> None:
    model = CNNClassifier(**{"architecture": TINY, "train": TINY_TRAIN, "device": "cpu", **params})  # stored as given
    x, y = tiny_images(40, 0)
    with pytest.raises(error) as info:
        model.fit(x, y)
    assert fragment in str(info.value) and not isinstance(info.value, FmnistError)


def test_bad_images_or_labels_and_unfitted_prediction_raise_value_error() -> None:
    from sklearn.exceptions import NotFittedError

    model = CNNClassifier(architecture=TINY, train=TINY_TRAIN, device="cpu")
    x, y = tiny_images(40, 0)
    with pytest.raises(ValueError, match=r"shaped \(N, 1, 28, 28\)"):
        model.fit(x.reshape(40, -1), y)
    with pytest.raises(ValueError, match="one per image"):
        model.fit(x, y[:-1])
    with pytest.raises(ValueError, match="NaN or infinite values"):
        model.fit(np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(x, np.zeros(40, int))
    with pytest.raises(NotFittedError):
        model.predict(x)


class _KillAfterEpoch:
    """A progress reporter that raises once the given epoch has been saved (a simulated kill)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def task(self, description: str, total: float | None = None) -> Any:
        outer = self

        class Task:
            def advance(self, amount: float = 1, **fields: Any) -> None:
                if amount == 0 and fields.get("epoch") == outer.epoch:
                    raise KeyboardInterrupt

            def close(self) -> None:
                pass

        return Task()


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_resume_after_a_kill_gives_the_uninterrupted_weights(tmp_path: Path, schedule: str) -> None:
    x, y = tiny_images(300, 0)
    settings = {
        "n_classes": 10,
        "architecture": CnnConfig(architecture=TINY).architecture,
        "train": CnnTrainConfig(**{**TINY_TRAIN, "schedule": schedule}),
        "augment": AugmentConfig(**NO_AUGMENT),
        "threads": 1,
        "device": "cpu",
    }
    straight = Trainer().train(x, y, **settings)
    state = tmp_path / STATE_FILE
    with pytest.raises(KeyboardInterrupt):
        Trainer(progress=_KillAfterEpoch(2), state_path=state).train(x, y, **settings)
    assert state.is_file()
    resumed = Trainer(state_path=state, resume=True).train(x, y, **settings)
    assert resumed.resumed_from == 2 and len(resumed.history) == 3
    sa, sb = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]
    other = {**settings, "train": CnnTrainConfig(**{**TINY_TRAIN, "schedule": schedule, "lr": 0.02})}
    with pytest.raises(FmnistError, match="different 'train'"):
        Trainer(state_path=state, resume=True).train(x, y, **other)
    with pytest.raises(FmnistError, match="no interrupted run"):
        Trainer(state_path=tmp_path / "none.pt", resume=True).train(x, y, **settings)
    with pytest.raises(ValueError, match="resume needs a state_path"):
        Trainer(resume=True)


# -- the stage ----------------------------------------------------------------------------
def test_train_cnn_cli_writes_a_loadable_checkpoint_and_metrics(tmp_path: Path, data_dir: Path) -> None:
    result, out = train(tmp_path, data_dir)
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    for name in (
        MODEL_FILE,
        "metrics.json",
        "predictions.npz",
        "learning_curves.png",
        "confusion_matrix.png",
        "misclassified.png",
        "manifest.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / STATE_FILE).exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 100 and metrics["n_right"] + metrics["n_wrong"] == 100
    assert metrics["test_accuracy"] == metrics["n_right"] / 100 >= 0.9
    assert metrics["n_train"] == 240 and metrics["n_val"] == 60
    assert metrics["per_class"]["3"]["name"] == "Dress" and metrics["per_class"]["3"]["n"] == 10
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    assert timings["train_images_per_s"] > 0 and timings["inference_images_per_s"] > 0 and timings["train_seconds"] > 0
    assert not {"train_seconds", "train_images_per_s", "inference_images_per_s"} & set(metrics)
    assert not {"seconds", "images_per_s"} & set(metrics["history"][0])  # a run's times are its record only
    assert len(metrics["history"]) == 3 and {"val_loss", "val_acc"} <= set(metrics["history"][0])

    model, info = load_checkpoint(out)
    assert info["n_classes"] == 10 and info["class_names"][0] == "T-shirt/top"
    assert [layer["name"] for layer in info["architecture"]] == [layer["name"] for layer in TINY]
    assert info["test_flip"] is True and metrics["test_flip"] is True
    assert 0.9 <= metrics["test_accuracy_single_view"] <= 1.0
    data, _ = load_dataset(data_dir)
    proba = predict_proba(model, data.x_test, batch_size=7, test_flip=info["test_flip"])
    saved = np.load(out / "predictions.npz")
    np.testing.assert_allclose(proba, saved["proba"], atol=1e-6)
    assert (proba.argmax(1) == saved["y_pred"]).all() and (saved["y_true"] == data.y_test).all()


def test_same_config_and_seed_give_identical_model_files(tmp_path: Path, data_dir: Path) -> None:
    first, out1 = train(tmp_path, data_dir, "a", "--epochs", "1")
    second, out2 = train(tmp_path, data_dir, "b", "--epochs", "1")
    assert first.exit_code == 0 and second.exit_code == 0
    a, _ = load_checkpoint(out1)
    b, _ = load_checkpoint(out2)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert sha256_file(out1 / "predictions.npz") == sha256_file(out2 / "predictions.npz")
    assert_same_outputs(out1, out2)


def test_mystery_labels_take_k_from_the_data(tmp_path: Path) -> None:
    folder = write_twisted(tmp_path / "tw", n_train=200, n_test=50)
    data = tmp_path / "data"
    assert (
        runner.invoke(app, ["preprocess", "--source", "twisted-csv", "--path", str(folder), "-o", str(data)]).exit_code
        == 0
    )
    result, out = train(tmp_path, data, "cnn", "--epochs", "2")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_classes"] == 3 and metrics["class_names"] is None
    assert metrics["per_class"]["2"]["name"] == "label 2"
    _, info = load_checkpoint(out)
    assert info["n_classes"] == 3 and info["class_names"] is None


# -- bad input ----------------------------------------------------------------------------
def test_data_without_labels_is_refused(tmp_path: Path) -> None:
    x, _ = tiny_images(20, 0)
    folder = tmp_path / "nolabels"
    with StageRun("preprocess", folder, {}) as run:
        run.save_npz(DATA_FILE, **Dataset(x, None, x, None).to_arrays())
        run.commit()
    result, out = train(tmp_path, folder)
    assert result.exit_code == 2
    assert "has no train labels" in result.output
    assert not (out / MODEL_FILE).exists()


def test_missing_input_folder_is_refused(tmp_path: Path) -> None:
    result, _ = train(tmp_path, tmp_path / "nowhere")
    assert result.exit_code == 2 and "preprocess" in result.output


def _rewrite_model(out: Path, payload: bytes) -> None:
    """Replace model.pt and record its new hash, as if the file had been written that way."""
    (out / MODEL_FILE).write_bytes(payload)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["outputs"][MODEL_FILE] = sha256_file(out / MODEL_FILE)
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_corrupt_or_foreign_checkpoints_give_one_clear_error(tmp_path: Path, data_dir: Path) -> None:
    result, out = train(tmp_path, data_dir, "cnn", "--epochs", "1")
    assert result.exit_code == 0
    good = (out / MODEL_FILE).read_bytes()

    (out / MODEL_FILE).write_bytes(good[: len(good) // 2])  # damaged after the fact
    with pytest.raises(FmnistError, match="does not match the sha256"):
        load_checkpoint(out)

    _rewrite_model(out, good[: len(good) // 2])  # truncated when written
    with pytest.raises(FmnistError, match="not a readable checkpoint"):
        load_checkpoint(out)

    other = Network([{**TINY[0], "filters": 6}, *TINY[1:]], n_classes=10)  # another architecture's weights
    blob = torch.load(_bytes_io(checkpoint_bytes(other, None)), weights_only=True)
    blob["architecture"] = TINY
    _rewrite_model(out, _torch_bytes(blob))
    with pytest.raises(FmnistError, match="do not fit the architecture"):
        load_checkpoint(out)

    _rewrite_model(out, _torch_bytes({"something": "else"}))
    with pytest.raises(FmnistError, match="not an fmnist-cluster CNN checkpoint"):
        load_checkpoint(out)

    encoded = runner.invoke(app, ["encode", "-m", str(out), "-i", str(data_dir), "-o", str(tmp_path / "enc")])
    assert encoded.exit_code == 2 and "model.pt" in encoded.output


def test_resume_without_state_and_unknown_device(tmp_path: Path, data_dir: Path) -> None:
    result, _ = train(tmp_path, data_dir, "cnn", "--resume")
    assert result.exit_code == 2 and "no interrupted run" in result.output
    result, _ = train(tmp_path, data_dir, "cnn", "--device", "tpu")
    assert result.exit_code == 2 and "device" in result.output


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _torch_bytes(obj: Any) -> bytes:
    buf = _bytes_io(b"")
    torch.save(obj, buf)
    return buf.getvalue()
