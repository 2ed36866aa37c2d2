"""encode: layer outputs through hooks, the shared data.npz format, layer listing and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from fmnist_cluster.artefacts import sha256_file
from fmnist_cluster.cli import app
from fmnist_cluster.cnn import load_checkpoint, predict_proba
from fmnist_cluster.data import DATA_FILE, load_dataset, write_idx
from fmnist_cluster.encode import encode_images
from fmnist_cluster.errors import FmnistError
from tests.conftest import assert_same_outputs, make_images, write_twisted

runner = CliRunner()
ARCH = [
    {"name": "conv1", "type": "conv", "filters": 4, "activation": "relu"},
    {"name": "pool1", "type": "pool", "size": 4},
    {"name": "flatten", "type": "flatten"},
    {"name": "dense16", "type": "dense", "units": 16, "activation": "relu"},
    {"name": "drop", "type": "dropout", "rate": 0.5},
    {"name": "output", "type": "dense", "units": "classes"},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, data folder): a tiny network trained 1 epoch on 200 bar images."""
    root = tmp_path_factory.mktemp("enc")
    idx = root / "idx"
    for prefix, n, seed in (("train", 200, 0), ("t10k", 60, 1)):
        images, labels = make_images(n, seed)
        write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", labels)
    data = root / "data"
    assert runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx), "-o", str(data)]).exit_code == 0
    cfg = root / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "architecture": ARCH,
                "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "constant"},
                "augment": {"flip": False, "shift": 0},
                "threads": 1,
            }
        ),
        encoding="utf-8",
    )
    model = root / "cnn"
    result = runner.invoke(app, ["train-cnn", "-c", str(cfg), "-i", str(data), "-o", str(model), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return model, data


def encode(model: Path, data: Path, out: Path, *extra: str):
    return runner.invoke(
        app, ["encode", "-m", str(model), "-i", str(data), "-o", str(out), "--set", "threads=1", *extra]
    )


def test_default_layer_is_the_dense_layer_before_the_output(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = trained
    result = encode(model, data, tmp_path / "enc")
    assert result.exit_code == 0, result.output
    encoded, _ = load_dataset(tmp_path / "enc")
    source, _ = load_dataset(data)
    assert encoded.layer == "dense16"
    assert encoded.x_train.shape == (200, 16) and encoded.x_test.shape == (60, 16)
    assert encoded.x_train.dtype == np.float32 and not encoded.is_image
    assert (encoded.x_train >= 0).all()  # the block's ReLU is part of the layer's output
    np.testing.assert_array_equal(encoded.y_train, source.y_train)
    np.testing.assert_array_equal(encoded.y_test, source.y_test)
    assert encoded.class_names == source.class_names
    metrics = json.loads((tmp_path / "enc" / "metrics.json").read_text())
    assert metrics["dim"] == 16 and metrics["n_train"] == 200 and not {"seconds", "images_per_s"} & set(metrics)
    manifest = json.loads((tmp_path / "enc" / "manifest.json").read_text())
    assert manifest["stage"] == "encode" and manifest["config"]["layer"] == "dense16"


def test_encoding_is_deterministic(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = trained
    assert encode(model, data, tmp_path / "a").exit_code == 0
    assert encode(model, data, tmp_path / "b").exit_code == 0
    assert sha256_file(tmp_path / "a" / DATA_FILE) == sha256_file(tmp_path / "b" / DATA_FILE)
    assert_same_outputs(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["timings"]["images_per_s"] > 0


def test_any_named_layer_flattens_and_the_output_layer_gives_the_logits(trained: tuple[Path, Path]) -> None:
    model_dir, data = trained
    model, info = load_checkpoint(model_dir)
    ds, _ = load_dataset(data)
    conv = encode_images(model, ds.x_test, "conv1", batch_size=13)
    assert conv.shape == (60, 4 * 28 * 28)
    with torch.no_grad():
        direct = model.conv1(torch.from_numpy(ds.x_test[:5])).flatten(1).numpy()
    np.testing.assert_allclose(conv[:5], direct, rtol=1e-5, atol=1e-6)
    logits = encode_images(model, ds.x_test, "output", batch_size=7)
    proba = predict_proba(model, ds.x_test)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), proba, atol=1e-6)
    assert info["layers"]["pool1"] == (4, 7, 7)
    with pytest.raises(
        FmnistError, match="unknown layer 'dense99'; valid: conv1, pool1, flatten, dense16, drop, output"
    ):
        encode_images(model, ds.x_test, "dense99")


def test_list_layers_prints_names_and_shapes(trained: tuple[Path, Path]) -> None:
    model, _ = trained
    result = runner.invoke(app, ["encode", "-m", str(model), "--list-layers"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()[1:]]
    assert [line[0] for line in lines] == [layer["name"] for layer in ARCH]
    assert lines[0][2] == "4x28x28" and lines[3][2] == "16" and "default" in result.output.splitlines()[4]


def test_layer_option_and_unknown_layer(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = trained
    result = encode(model, data, tmp_path / "pool", "--layer", "pool1")
    assert result.exit_code == 0, result.output
    assert load_dataset(tmp_path / "pool")[0].x_train.shape == (200, 4 * 7 * 7)
    bad = encode(model, data, tmp_path / "bad", "--layer", "dense64")
    assert bad.exit_code == 2
    assert "unknown layer 'dense64'; valid: conv1, pool1, flatten, dense16, drop, output" in bad.output
    assert not (tmp_path / "bad" / DATA_FILE).exists()


def test_data_with_another_k_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = trained
    folder = write_twisted(tmp_path / "tw", n_train=30, n_test=10)
    data = tmp_path / "twdata"
    assert (
        runner.invoke(app, ["preprocess", "--source", "twisted-csv", "--path", str(folder), "-o", str(data)]).exit_code
        == 0
    )
    result = encode(model, data, tmp_path / "enc")
    assert result.exit_code == 2 and "K=10" in result.output and "K=3" in result.output


def test_features_or_missing_folders_are_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = trained
    assert encode(model, data, tmp_path / "enc").exit_code == 0
    again = encode(model, tmp_path / "enc", tmp_path / "enc2")
    assert again.exit_code == 2 and "not images" in again.output
    missing = encode(tmp_path / "nomodel", data, tmp_path / "enc3")
    assert missing.exit_code == 2 and "train-cnn" in missing.output
    not_a_model = encode(data, data, tmp_path / "enc4")
    assert not_a_model.exit_code == 2 and "train-cnn" in not_a_model.output


def test_folding_batch_norm_keeps_every_layer_output() -> None:
    from fmnist_cluster.cnn import Network, fold_batchnorm
    from fmnist_cluster.config import CnnConfig

    torch.manual_seed(0)
    net = Network(CnnConfig().architecture, n_classes=5).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = np.random.default_rng(0).random((9, 1, 28, 28), dtype=np.float32)
    for layer in ("conv1", "conv3", "dense64", "output"):
        np.testing.assert_allclose(encode_images(folded, x, layer), encode_images(net, x, layer), rtol=1e-4, atol=1e-4)
