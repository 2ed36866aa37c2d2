"""Loaders: round trips, stratified limits, transforms and the bad-input table."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.cli import app
from fmnist_cluster.config import PreprocessConfig
from fmnist_cluster.data import (
    center_by_mass,
    deskew,
    grouping,
    load_dataset,
    load_idx_folder,
    load_twisted_folder,
    read_idx,
    run_preprocess,
    stratified_indices,
    write_idx,
)
from fmnist_cluster.errors import FmnistError
from tests.conftest import assert_same_outputs, make_images, write_twisted

runner = CliRunner()


# -- round trips -----------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    images=arrays(np.uint8, st.tuples(st.integers(1, 5), st.just(28), st.just(28))),
    gz=st.booleans(),
)
def test_idx_round_trip(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray, gz: bool) -> None:
    path = tmp_path_factory.mktemp("idx") / ("a-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, images)
    np.testing.assert_array_equal(read_idx(path), images)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pixels=arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(784))),
    data=st.data(),
)
def test_twisted_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray, data: st.DataObject
) -> None:
    n = len(pixels)
    labels = data.draw(arrays(np.int64, (n,), elements=st.integers(0, 3)))
    labels[0] = 0  # labels must be 0..K-1 with each used in training: make them dense
    _, dense = np.unique(labels, return_inverse=True)
    folder = tmp_path_factory.mktemp("tw")
    header = ",".join(str(i) for i in range(784))
    for split in ("train", "test"):
        np.savetxt(folder / f"x_{split}.csv", pixels, fmt="%d", delimiter=",", header=header, comments="")
        np.savetxt(folder / f"y_{split}.csv", dense, fmt="%d", header="0", comments="")
    ds = load_twisted_folder(folder)
    np.testing.assert_array_equal(np.round(ds.x_train.reshape(n, -1) * 255).astype(np.uint8), pixels)
    np.testing.assert_array_equal(ds.y_test, dense)
    assert ds.class_names is None
    assert ds.n_classes == dense.max() + 1


def test_idx_folder_gives_float_images_and_names(idx_dir: Path) -> None:
    ds = load_idx_folder(idx_dir)
    images, labels = make_images(50, 0)
    assert ds.x_train.shape == (50, 1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    np.testing.assert_allclose(ds.x_train[:, 0] * 255, images, atol=1e-3)
    np.testing.assert_array_equal(ds.y_train, labels)
    assert ds.y_train.dtype == np.int64
    assert ds.class_names == FASHION_CLASSES


def test_kaggle_csv(tmp_path: Path) -> None:
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    for split, n in (("train", 30), ("test", 10)):
        images, labels = make_images(n)
        rows = np.column_stack([labels, images.reshape(n, -1)])
        np.savetxt(tmp_path / f"fashion-mnist_{split}.csv", rows, fmt="%d", delimiter=",", header=header, comments="")
    result = runner.invoke(
        app, ["preprocess", "--source", "kaggle-csv", "--path", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    ds, _ = load_dataset(tmp_path / "o")
    assert ds.x_test.shape == (10, 1, 28, 28) and ds.class_names == FASHION_CLASSES
    np.testing.assert_array_equal(ds.y_train, make_images(30)[1])


def test_torchvision_source_with_download_mocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torchvision import datasets

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            images, labels = make_images(40 if train else 20, int(train))
            self.data, self.targets = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    monkeypatch.setattr(datasets, "FashionMNIST", FakeFashionMNIST)
    out = tmp_path / "o"
    result = runner.invoke(
        app, ["preprocess", "--source", "torchvision", "--set", f"cache_dir={tmp_path}/c", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert calls == [(f"{tmp_path}/c", True, True), (f"{tmp_path}/c", False, True)]
    ds, _ = load_dataset(out)
    assert ds.x_train.shape == (40, 1, 28, 28) and len(ds.y_test) == 20


def test_torchvision_download_failure_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(datasets, "FashionMNIST", offline)
    result = runner.invoke(app, ["preprocess", "--source", "torchvision", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "offline, use --source idx" in result.output
    assert not (tmp_path / "o" / "manifest.json").exists()


# -- stratified limit and transforms ---------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    labels=arrays(np.int64, st.integers(1, 200), elements=st.integers(0, 4)),
    n=st.integers(1, 250),
    seed=st.integers(0, 5),
)
def test_stratified_indices_keep_shares(labels: np.ndarray, n: int, seed: int) -> None:
    idx = stratified_indices(labels, n, seed)
    assert len(idx) == min(n, len(labels))
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    if n < len(labels):
        for c in np.unique(labels):
            share = np.sum(labels == c) * n / len(labels)
            assert abs(np.sum(labels[idx] == c) - share) < 1 + 1e-9
    np.testing.assert_array_equal(idx, stratified_indices(labels, n, seed))


def test_center_by_mass_moves_the_centre() -> None:
    img = np.zeros((1, 1, 28, 28), np.float32)
    img[0, 0, 2:6, 3:7] = 1.0
    out = center_by_mass(img)
    ys, xs = np.mgrid[:28, :28]
    mass = out[0, 0].sum()
    assert abs((ys * out[0, 0]).sum() / mass - 13.5) < 0.05
    assert abs((xs * out[0, 0]).sum() / mass - 13.5) < 0.05


def test_deskew_straightens_a_slanted_bar() -> None:
    img = np.zeros((1, 1, 28, 28), np.float32)
    for row in range(4, 24):
        col = 6 + (row - 4) * 16 // 20  # a bar leaning right
        img[0, 0, row, col : col + 3] = 1.0

    def slant(a: np.ndarray) -> float:
        ys, xs = np.mgrid[:28, :28]
        m = a.sum()
        my, mx = (ys * a).sum() / m, (xs * a).sum() / m
        return float(((ys - my) * (xs - mx) * a).sum() / ((ys - my) ** 2 * a).sum())

    assert slant(img[0, 0]) > 0.5
    assert abs(slant(deskew(img)[0, 0])) < 0.1


def test_standardize_and_limit_recorded(idx_dir: Path, tmp_path: Path) -> None:
    cfg = PreprocessConfig(source="idx", path=str(idx_dir), limit=20, standardize="per-pixel")
    metrics = run_preprocess(cfg, tmp_path / "o")
    assert metrics["n_train"] == 20 and metrics["n_test"] == 20
    arrays_ = np.load(tmp_path / "o" / "data.npz")
    assert arrays_["mean"].shape == (1, 1, 28, 28)
    assert abs(float(arrays_["x_train"].mean())) < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_grouping_is_dense_and_seeded(seed: int) -> None:
    cfg = PreprocessConfig(relabel="random", relabel_groups=4, seed=seed)
    mapping = grouping(cfg)
    assert sorted(set(mapping.tolist())) == [0, 1, 2, 3]
    np.testing.assert_array_equal(mapping, grouping(cfg))


def test_relabel_makes_mystery_labels(idx_dir: Path, tmp_path: Path) -> None:
    mapping = [0, 1, 0, 1, 2, 2, 0, 2, 1, 2]
    for out in ("o", "again"):
        args = ["preprocess", "--source", "idx", "--path", str(idx_dir), "--set", f"relabel={mapping}"]
        result = runner.invoke(app, [*args, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    ds, _ = load_dataset(tmp_path / "o")
    assert ds.class_names is None
    np.testing.assert_array_equal(ds.y_train, np.array(mapping)[make_images(50, 0)[1]])
    assert_same_outputs(tmp_path / "o", tmp_path / "again")


# -- bad input: one clear line naming the file, exit 2, nothing written -----------------------------
def _replace(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _gz(payload: bytes) -> bytes:
    return gzip.compress(payload, mtime=0)


def _idx_bad(kind: str, folder: Path) -> str:
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if kind == "truncated-gz":
        _replace(images, images.read_bytes()[:-200])
    elif kind == "not-gzip":
        _replace(images, raw)
    elif kind == "magic":
        _replace(images, _gz(b"\x00\x00\x07\x03" + raw[4:]))
    elif kind == "dims":
        write_idx(images, np.zeros((50, 27, 28), np.uint8))
    elif kind == "short-data":
        _replace(images, _gz(raw[:-50]))
    elif kind == "count":
        write_idx(labels, np.zeros(49, np.uint8))
        return labels.name
    elif kind == "label-range":
        write_idx(labels, np.full(50, 10, np.uint8))
        return labels.name
    elif kind == "missing":
        images.unlink()
    return images.name


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("truncated-gz", "truncated"),
        ("not-gzip", "not a gzip file"),
        ("magic", "magic number"),
        ("dims", "expected uint8 (N, 28, 28)"),
        ("short-data", "truncated or damaged"),
        ("count", "labels"),
        ("label-range", "0..9"),
        ("missing", "is missing"),
    ],
)
def test_bad_idx_input(idx_dir: Path, tmp_path: Path, kind: str, words: str) -> None:
    name = _idx_bad(kind, idx_dir)
    out = tmp_path / "out"
    result = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert name in lines[0] and words in lines[0]
    assert not (out / "data.npz").exists() and not (out / "manifest.json").exists()
    assert not list(out.glob(".staging-*"))


def _csv_edit(folder: Path, kind: str) -> tuple[str, str]:
    x = folder / "x_train.csv"
    y = folder / "y_train.csv"
    xl = x.read_text().splitlines()
    yl = y.read_text().splitlines()

    def cells(line_no: int, col: int, value: str) -> None:
        row = xl[line_no].split(",")
        row[col] = value
        xl[line_no] = ",".join(row)
        x.write_text("\n".join(xl) + "\n")

    if kind == "no-header":
        x.write_text("\n".join(xl[1:]) + "\n")
        return "x_train.csv", "has no header row"
    if kind == "no-header-bom":  # as a spreadsheet's "CSV UTF-8" writes it
        x.write_text("\ufeff" + "\n".join(xl[1:]) + "\n", encoding="utf-8")
        return "x_train.csv", "has no header row"
    if kind == "no-header-bad-pixel":  # a first image with a value no pixel has is still an image
        first = xl[1].split(",")
        first[0] = "300"
        x.write_text("\n".join([",".join(first), *xl[2:]]) + "\n")
        return "x_train.csv", "has no header row"
    if kind == "no-label-header":
        y.write_text("7\n" + "\n".join(yl[1:]) + "\n")  # its first line a label, not the column name "0"
        return "y_train.csv", "has no header row"
    if kind == "blank-lines-counted":
        xl[2] = "-1" + xl[2][xl[2].index(",") :]
        x.write_text("\n".join([xl[0], "", "", *xl[1:]]) + "\n")
        return "x_train.csv", "line 5, column '0' holds -1"
    if kind == "783-columns":
        x.write_text("\n".join(",".join(line.split(",")[:783]) for line in xl) + "\n")
        return "x_train.csv", "783 columns"
    if kind == "text":
        cells(5, 10, "abc")
        return "x_train.csv", "line 6, column '10'"
    if kind == "empty":
        cells(3, 7, "")
        return "x_train.csv", "line 4, column '7' is empty or NaN"
    if kind == "nan":
        cells(3, 7, "NaN")
        return "x_train.csv", "line 4, column '7' is empty or NaN"
    if kind == "pixel-256":
        cells(2, 0, "256")
        return "x_train.csv", "0..255"
    if kind == "pixel-negative":
        cells(2, 1, "-1")
        return "x_train.csv", "0..255"
    if kind == "label-negative":
        yl[4] = "-1"
        y.write_text("\n".join(yl) + "\n")
        return "y_train.csv", "line 5"
    if kind == "label-float":
        yl[4] = "1.5"
        y.write_text("\n".join(yl) + "\n")
        return "y_train.csv", "integers"
    if kind == "label-text":
        yl[4] = "shoe"
        y.write_text("\n".join(yl) + "\n")
        return "y_train.csv", "text 'shoe'"
    if kind == "rows-differ":
        y.write_text("\n".join(yl[:-3]) + "\n")
        return "y_train.csv", "rows"
    if kind == "missing":
        (folder / "y_test.csv").unlink()
        return "y_test.csv", "is missing"
    if kind == "empty-file":
        x.write_text("")
        return "x_train.csv", "empty"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "783-columns",
        "text",
        "empty",
        "nan",
        "pixel-256",
        "pixel-negative",
        "label-negative",
        "label-float",
        "label-text",
        "rows-differ",
        "missing",
        "empty-file",
        "no-header",
        "no-header-bom",
        "no-header-bad-pixel",
        "no-label-header",
        "blank-lines-counted",
    ],
)
def test_bad_twisted_csv(twisted_dir: Path, tmp_path: Path, kind: str) -> None:
    name, words = _csv_edit(twisted_dir, kind)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["preprocess", "--source", "twisted-csv", "--path", str(twisted_dir), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert name in lines[0] and words in lines[0], lines[0]
    assert not out.exists() or not any(p.name in ("data.npz", "manifest.json") for p in out.iterdir())


@pytest.mark.parametrize(
    "header",
    [
        ",".join(f" {i} " for i in range(784)),
        ",".join(str(i + 1) for i in range(784)),
        ",".join(str(i if i != 4 else 3) for i in range(784)),  # a name given twice: pandas reads '3.1'
        ",".join(str(i if i != 700 else 783) for i in range(784)),
    ],
)
def test_twisted_headers_of_numbered_columns_are_headers(twisted_dir: Path, header: str) -> None:
    """Column names counted from 0 or 1, padded or not, are a header, not a lost first image."""
    x = twisted_dir / "x_train.csv"
    lines = x.read_text().splitlines()
    x.write_text("\n".join([header, *lines[1:]]) + "\n")
    assert len(load_twisted_folder(twisted_dir).x_train) == len(lines) - 1


def test_twisted_labels_with_a_gap_are_rejected(tmp_path: Path) -> None:
    folder = write_twisted(tmp_path / "tw", mapping=np.array([0, 2, 0, 2, 0, 2, 0, 2, 0, 2]))
    with pytest.raises(FmnistError, match="never uses label"):
        load_twisted_folder(folder)


def test_failed_run_keeps_the_previous_artefact(idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(out)])
    assert ok.exit_code == 0
    before = (out / "data.npz").read_bytes()
    _idx_bad("magic", idx_dir)
    bad = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(out)])
    assert bad.exit_code == 2
    assert (out / "data.npz").read_bytes() == before and (out / "manifest.json").exists()


def test_a_data_file_that_cannot_be_read_ends_in_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_dataset reads and hashes data.npz in one pass; a read error there is a one-line error
    too, and a digest that differs from the manifest's stops it before any array is parsed."""
    import fmnist_cluster.artefacts.manifest as manifest_module
    from fmnist_cluster.artefacts import read_hashed
    from fmnist_cluster.errors import FmnistError

    result = runner.invoke(app, ["preprocess", "--source", "sample", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    digest = load_dataset(tmp_path / "o")[1]

    def unreadable(path: Path) -> tuple[np.ndarray, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manifest_module, "read_hashed", unreadable)
    with pytest.raises(FmnistError, match=r"cannot read .*data\.npz \(Permission denied\)"):
        load_dataset(tmp_path / "o")
    parsed: list[Path] = []
    monkeypatch.setattr(manifest_module, "read_hashed", lambda path: (read_hashed(path)[0], "0" * 64))
    monkeypatch.setattr(manifest_module, "load_npz", lambda path, *args, **kwargs: parsed.append(path))
    with pytest.raises(FmnistError, match="does not match the sha256 in its manifest"):
        load_dataset(tmp_path / "o")
    assert len(digest) == 64 and not parsed
