"""IDX files: the format of the original Fashion-MNIST download (optionally gzipped)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.artefacts import atomic_write_bytes
from fmnist_cluster.data.dataset import IMAGE_SIDE, Dataset, check_labels, data_folder
from fmnist_cluster.errors import FmnistError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except gzip.BadGzipFile:
        raise FmnistError(f"{path} is not a gzip file; replace it with the original .gz download") from None
    except (EOFError, zlib.error):
        raise FmnistError(f"{path} is truncated or corrupt (gzip stream ends early); download it again") from None


def read_idx(path: Path | str) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its stored shape.

    Parameters
    ----------
    path : path
        ``*.idx?-ubyte`` or ``*.idx?-ubyte.gz``.

    Raises
    ------
    FmnistError
        Not gzip, truncated, wrong magic number, or a size that does not match its header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise FmnistError(f"{path} has a wrong IDX magic number ({raw[:4].hex() or 'empty file'}); expected 0000 08 0N")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise FmnistError(f"{path} has a truncated IDX header; download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise FmnistError(
            f"{path} holds {len(raw) - header} data bytes but its header {dims} needs {expected}; "
            "the file is truncated or damaged, download it again"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _find_idx(folder: Path, split: str, part: str) -> Path:
    stem = _IDX_FILES[(split, part)]
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise FmnistError(
        f"{folder / (stem + '.gz')} is missing; the idx source needs the four standard files "
        f"{', '.join(v + '.gz' for v in _IDX_FILES.values())}"
    )


def load_idx_folder(folder: Path | str) -> Dataset:
    """Read the four standard Fashion-MNIST IDX files of a folder.

    Raises
    ------
    FmnistError
        Missing folder or file, bad file, images not (N, 28, 28), labels not (N,),
        image/label count mismatch, or labels outside 0..9.
    """
    folder = data_folder(folder, "the IDX files")
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        ipath, lpath = _find_idx(folder, split, "images"), _find_idx(folder, split, "labels")
        images, labels = read_idx(ipath), read_idx(lpath)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or images.dtype != np.uint8:
            raise FmnistError(
                f"{ipath} holds {images.dtype} images of shape {images.shape}; expected uint8 (N, 28, 28)"
            )
        if labels.ndim != 1:
            raise FmnistError(f"{lpath} holds an array of shape {labels.shape}; expected labels shaped (N,)")
        if len(images) != len(labels):
            raise FmnistError(
                f"{ipath} has {len(images)} images but {lpath} has {len(labels)} labels; use matching files"
            )
        if len(images) == 0:
            raise FmnistError(f"{ipath} holds 0 images; pass a file with at least one image")
        check_labels(labels, lpath, max_label=len(FASHION_CLASSES) - 1)
        arrays[f"x_{split}"] = images
        arrays[f"y_{split}"] = labels.astype(np.int64)
    return Dataset.from_pixels(arrays, class_names=FASHION_CLASSES)


def write_idx(path: Path | str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    atomic_write_bytes(path, payload)
