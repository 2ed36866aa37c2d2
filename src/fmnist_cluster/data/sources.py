"""Where ``preprocess`` reads images from: the shipped sample, IDX or CSV folders, torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.config import PreprocessConfig
from fmnist_cluster.data.csv_files import load_kaggle_folder, load_twisted_folder
from fmnist_cluster.data.dataset import IMAGE_SIDE, Dataset
from fmnist_cluster.data.idx import load_idx_folder
from fmnist_cluster.errors import FmnistError

SAMPLE_DIR = Path(__file__).parent.parent / "sample"
"""The stratified real sample shipped in the package (IDX files)."""


def load_torchvision(cache_dir: Path | str, download: bool = True) -> Dataset:
    """Fetch Fashion-MNIST through ``torchvision.datasets.FashionMNIST`` into ``cache_dir``.

    Raises
    ------
    FmnistError
        The download failed (for example on an offline machine).
    """
    from torchvision import datasets

    root = Path(cache_dir).expanduser()
    splits: dict[str, np.ndarray] = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = datasets.FashionMNIST(root=str(root), train=train, download=download)
        except Exception as exc:  # network and archive errors come in many types
            raise FmnistError(
                f"could not get Fashion-MNIST through torchvision into {root} ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); offline, use --source idx --path DIR"
            ) from None
        images = np.asarray(ds.data, dtype=np.uint8)
        labels = np.asarray(ds.targets, dtype=np.int64)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or len(images) != len(labels):
            raise FmnistError(
                f"torchvision returned images of shape {images.shape} with {len(labels)} labels under {root}; "
                "delete that folder and retry"
            )
        splits[f"x_{split}"], splits[f"y_{split}"] = images, labels
    return Dataset.from_pixels(splits, class_names=FASHION_CLASSES)


def load_source(config: PreprocessConfig) -> Dataset:
    """Read the images named by a :class:`PreprocessConfig` (no transforms)."""
    check_source(config)
    if config.source == "sample":
        return load_idx_folder(SAMPLE_DIR)
    if config.source == "idx":
        return load_idx_folder(Path(config.path).expanduser())
    if config.source == "kaggle-csv":
        return load_kaggle_folder(Path(config.path).expanduser())
    if config.source == "twisted-csv":
        return load_twisted_folder(Path(config.path).expanduser())
    return load_torchvision(config.cache_dir)


def check_source(config: PreprocessConfig) -> None:
    """Refuse a source that needs a data folder without one (or with a missing one)."""
    if config.source in ("idx", "kaggle-csv", "twisted-csv"):
        if not config.path:
            raise FmnistError(
                f"source '{config.source}' needs a data folder; pass --path DIR (or set path: in the config)"
            )
        folder = Path(config.path).expanduser()
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise FmnistError(
                f"data folder {folder} {what}; pass the folder holding the {config.source} files with --path"
            )


def source_files(config: PreprocessConfig) -> list[Path]:
    """The files a source reads (recorded with their sha256 in the manifest)."""
    if config.source == "sample":
        folder = SAMPLE_DIR
    elif config.source == "torchvision":
        return []
    else:
        folder = Path(config.path).expanduser()
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in (".gz", ".csv") or "ubyte" in p.name))
