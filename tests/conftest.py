"""Shared fixtures: tiny hand-made data sets written in every supported format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist_cluster.data import write_idx


def make_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 28x28 images with labels 0..9 (each label's images share a bright bar)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, 2 + 2 * y : 4 + 2 * y, :] = 250
    return images, labels.astype(np.uint8)


def write_idx_folder(folder: Path, n_train: int = 50, n_test: int = 20) -> Path:
    """The four gzipped IDX files of ``make_images`` (train seed 0, test seed 1) in ``folder``."""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A folder with the four gzipped IDX files: 50 train and 20 test images."""
    return write_idx_folder(tmp_path / "idx")


def write_twisted(folder: Path, n_train: int = 40, n_test: int = 20, mapping: np.ndarray | None = None) -> Path:
    """A Twisted-format folder whose mystery label is ``mapping[class]``."""
    mapping = np.array([0, 1, 0, 1, 2, 2, 0, 2, 1, 2]) if mapping is None else mapping
    folder.mkdir(parents=True, exist_ok=True)
    header = ",".join(str(i) for i in range(784))
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = make_images(n, seed)
        np.savetxt(
            folder / f"x_{split}.csv", images.reshape(n, -1), fmt="%d", delimiter=",", header=header, comments=""
        )
        np.savetxt(folder / f"y_{split}.csv", mapping[labels], fmt="%d", header="0", comments="")
    return folder


@pytest.fixture
def twisted_dir(tmp_path: Path) -> Path:
    return write_twisted(tmp_path / "twisted")


RUN_RECORD = ("timings", "created_at", "command", "storage")
"""Manifest keys that record the run itself (when, how long, how it was called, where the study
lives): the only things two runs with the same config, seed and inputs may differ in."""


def assert_same_outputs(a: Path, b: Path) -> None:
    """Two artefact folders of the same config, seed and inputs: every output the same bytes,
    and the manifests the same but for the run's record and the paths of the inputs."""
    import json

    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["outputs"] and ma["outputs"] == mb["outputs"]
    for name, digest in ma["outputs"].items():
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert len(digest) == 64
    assert sorted(ma["inputs"].values()) == sorted(mb["inputs"].values())
    skip = {*RUN_RECORD, "inputs", "input_folders"}
    assert {k: v for k, v in ma.items() if k not in skip} == {k: v for k, v in mb.items() if k not in skip}
