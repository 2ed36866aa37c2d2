"""Loading, checking and preprocessing images; the shared feature-artefact loader.

Sources: IDX folders, Kaggle CSV, Twisted CSV (mystery labels), torchvision download and the
stratified real sample shipped in the package. Every reader checks its input and raises
:class:`~fmnist_cluster.errors.FmnistError` with one line naming the file (and row/column)
and the fix.

:func:`load_dataset` reads the ``data.npz`` that ``preprocess`` and ``encode`` both write,
so every later stage reads pixels and encodings the same way.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun, atomic_write_bytes, load_npz, require_file
from fmnist_cluster.config import PreprocessConfig
from fmnist_cluster.errors import FmnistError

SAMPLE_DIR = Path(__file__).parent / "sample"
DATA_FILE = "data.npz"
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_KAGGLE_FILES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}
MAX_LABEL = 999
"""Largest label any stage accepts (K <= 1000): one bound, checked where labels enter."""
FEATURE_STAGES = ("preprocess", "encode")
"""Stages whose ``data.npz`` :func:`load_dataset` reads."""


@dataclass
class Dataset:
    """Images or features with labels, as stored in ``data.npz``.

    Attributes
    ----------
    x_train, x_test : ndarray of float32
        Images shaped (N, 1, 28, 28) or features shaped (N, D).
    y_train, y_test : ndarray of int64 or None
        Labels 0..K-1 (None where an artefact has none).
    class_names : tuple of str or None
        Names of labels 0..K-1 where known (Fashion-MNIST), None for mystery labels.
    layer : str or None
        For encodings, the network layer the features were taken from.
    """

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    class_names: tuple[str, ...] | None = None
    layer: str | None = None

    @property
    def n_classes(self) -> int:
        """K: one more than the largest label in either split."""
        labels = [y for y in (self.y_train, self.y_test) if y is not None and y.size]
        return int(max(int(y.max()) for y in labels)) + 1 if labels else 0

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"x_train": self.x_train, "x_test": self.x_test}
        if self.y_train is not None:
            arrays["y_train"] = self.y_train
        if self.y_test is not None:
            arrays["y_test"] = self.y_test
        if self.class_names is not None:
            arrays["class_names"] = np.array(self.class_names, dtype=str)
        if self.layer is not None:
            arrays["layer"] = np.array(self.layer, dtype=str)
        return arrays


def label_names(n_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """Names of labels 0..K-1: the class names where known, else ``label k`` (mystery labels)."""
    if class_names is not None and len(class_names) >= n_classes:
        return [str(n) for n in class_names[:n_classes]]
    return [f"label {k}" for k in range(n_classes)]


# --------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------


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
    folder = Path(folder)
    if not folder.is_dir():
        raise FmnistError(f"data folder {folder} does not exist; pass the folder holding the IDX files with --path")
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
    return Dataset(
        x_train=_to_float_images(arrays["x_train"]),
        y_train=arrays["y_train"],
        x_test=_to_float_images(arrays["x_test"]),
        y_test=arrays["y_test"],
        class_names=FASHION_CLASSES,
    )


def write_idx(path: Path | str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    atomic_write_bytes(path, payload)


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------


def _first_true(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    order = np.lexsort((cols, rows))[0]
    return int(rows[order]), int(cols[order])


def _diagnose_text(path: Path, frame: Any) -> None:
    import pandas as pd

    for col_index, col in enumerate(frame.columns):
        if frame[col].dtype == object:
            numeric = pd.to_numeric(frame[col], errors="coerce")
            bad = numeric.isna() & frame[col].notna()
            if bad.any():
                row = int(np.argmax(bad.to_numpy()))
                value = frame[col].iloc[row]
                raise FmnistError(
                    f"{path}: line {row + 2}, column '{col}' (#{col_index + 1}) holds text {value!r}, "
                    "not a number; fix or remove that row"
                )


def read_csv_matrix(path: Path | str, n_columns: int, what: str) -> tuple[np.ndarray, list[str]]:
    """Read a numeric CSV with one header row into a float64 matrix.

    Parameters
    ----------
    path : path
        The CSV file.
    n_columns : int
        The number of columns it must have.
    what : str
        What the columns are, for the error message (e.g. ``784 pixel columns``).

    Returns
    -------
    (ndarray, list of str)
        Values shaped (rows, n_columns) and the header names.

    Raises
    ------
    FmnistError
        Missing or empty file, wrong column count, a text, empty or NaN cell; the message
        gives the line and column.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FmnistError(f"{path} is missing; the CSV source needs it")
    try:
        frame = pd.read_csv(path, header=0, dtype=np.float64, engine="c", na_filter=True)
    except pd.errors.EmptyDataError:
        raise FmnistError(f"{path} is empty; it needs a header row and one row per image") from None
    except pd.errors.ParserError as exc:
        raise FmnistError(
            f"{path} is not a well-formed CSV ({str(exc).strip().splitlines()[-1]}); every row needs {n_columns} cells"
        ) from None
    except UnicodeDecodeError:  # before ValueError, its base class
        raise FmnistError(
            f"{path} is not a text CSV file (a compressed or binary file?); pass the plain-text CSV"
        ) from None
    except (ValueError, TypeError):
        frame = pd.read_csv(path, header=0, dtype=object, engine="c", na_filter=True)
        if frame.shape[1] != n_columns:
            raise FmnistError(f"{path} has {frame.shape[1]} columns; expected {what}") from None
        _diagnose_text(path, frame)
        raise FmnistError(f"{path} holds a cell that is not a number; fix it") from None
    if frame.shape[1] != n_columns:
        raise FmnistError(f"{path} has {frame.shape[1]} columns; expected {what}")
    if len(frame) == 0:
        raise FmnistError(f"{path} has a header but no rows; it needs one row per image")
    values = frame.to_numpy(dtype=np.float64, copy=False)
    nan = np.isnan(values)
    if nan.any():
        row, col = _first_true(nan)
        raise FmnistError(
            f"{path}: line {row + 2}, column '{frame.columns[col]}' is empty or NaN; every cell needs a number"
        )
    return values, [str(c) for c in frame.columns]


def _check_integers(values: np.ndarray, path: Path, columns: list[str], low: int, high: int | None, what: str) -> None:
    bad = (values != np.round(values)) | (values < low)
    if high is not None:
        bad |= values > high
    if bad.any():
        row, col = _first_true(bad)
        allowed = f"in {low}..{high}" if high is not None else f">= {low}"
        raise FmnistError(
            f"{path}: line {row + 2}, column '{columns[col]}' holds {values[row, col]:g}; "
            f"{what} must be integers {allowed}"
        )


def check_labels(labels: np.ndarray, path: Path | str, max_label: int = MAX_LABEL) -> None:
    """The one range check of labels wherever they enter: integers in ``0..max_label``.

    Raises
    ------
    FmnistError
        A negative label or one above ``max_label`` (by default :data:`MAX_LABEL`), named with its file.
    """
    if labels.size and labels.min() < 0:
        raise FmnistError(f"{path} holds label {int(labels.min())}; labels must be integers in 0..{max_label}")
    if labels.size and labels.max() > max_label:
        raise FmnistError(
            f"{path} holds label {int(labels.max())}; labels must be integers in 0..{max_label} "
            f"(at most {max_label + 1} labels)"
        )


def _pixels_from_csv(values: np.ndarray, path: Path, columns: list[str]) -> np.ndarray:
    _check_integers(values, path, columns, 0, 255, "pixels")
    return values.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def load_twisted_folder(folder: Path | str) -> Dataset:
    """Read a Twisted-format folder: ``x_{train,test}.csv`` (784 pixel columns, header row)
    and ``y_{train,test}.csv`` (one label column, header row).

    The labels are an unknown grouping 0..K-1; K is read from the data.

    Raises
    ------
    FmnistError
        Missing file, wrong column count, text/empty/NaN cell, pixel outside 0..255,
        negative or non-integer label, x and y row counts that differ.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FmnistError(f"data folder {folder} does not exist; pass the folder holding x_train.csv etc. with --path")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        xpath, ypath = folder / f"x_{split}.csv", folder / f"y_{split}.csv"
        for p in (xpath, ypath):
            if not p.is_file():
                raise FmnistError(
                    f"{p} is missing; the twisted-csv source needs x_train.csv, y_train.csv, x_test.csv, y_test.csv"
                )
        xv, xcols = read_csv_matrix(xpath, N_PIXELS, f"{N_PIXELS} pixel columns")
        yv, ycols = read_csv_matrix(ypath, 1, "1 label column")
        _check_integers(yv, ypath, ycols, 0, MAX_LABEL, "labels")
        if len(xv) != len(yv):
            raise FmnistError(f"{xpath} has {len(xv)} rows but {ypath} has {len(yv)}; each image needs one label")
        out[f"x_{split}"] = _pixels_from_csv(xv, xpath, xcols)
        out[f"y_{split}"] = yv[:, 0].astype(np.int64)
    k = int(max(out["y_train"].max(), out["y_test"].max())) + 1
    missing = np.setdiff1d(np.arange(k), out["y_train"])
    if missing.size:
        shown = ", ".join(str(int(v)) for v in missing[:10])
        shown += f" and {missing.size - 10} more" if missing.size > 10 else ""
        raise FmnistError(
            f"{folder / 'y_train.csv'} never uses label(s) {shown} although labels go up to {k - 1}; "
            "labels must be 0..K-1 with every value present in training"
        )
    return Dataset(
        x_train=_to_float_images(out["x_train"]),
        y_train=out["y_train"],
        x_test=_to_float_images(out["x_test"]),
        y_test=out["y_test"],
        class_names=None,
    )


def load_kaggle_folder(folder: Path | str) -> Dataset:
    """Read Kaggle's ``fashion-mnist_train.csv`` and ``fashion-mnist_test.csv`` (a ``label``
    column and ``pixel1..pixel784``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FmnistError(
            f"data folder {folder} does not exist; pass the folder holding the Kaggle CSV files with --path"
        )
    out: dict[str, np.ndarray] = {}
    for split, name in _KAGGLE_FILES.items():
        path = folder / name
        values, columns = read_csv_matrix(path, N_PIXELS + 1, f"{N_PIXELS + 1} (label, pixel1..pixel{N_PIXELS})")
        if columns[0] != "label":
            raise FmnistError(f"{path}: first column is '{columns[0]}'; the Kaggle format starts with 'label'")
        _check_integers(values[:, :1], path, columns[:1], 0, len(FASHION_CLASSES) - 1, "labels")
        out[f"x_{split}"] = _pixels_from_csv(values[:, 1:], path, columns[1:])
        out[f"y_{split}"] = values[:, 0].astype(np.int64)
    return Dataset(
        x_train=_to_float_images(out["x_train"]),
        y_train=out["y_train"],
        x_test=_to_float_images(out["x_test"]),
        y_test=out["y_test"],
        class_names=FASHION_CLASSES,
    )


def load_torchvision(cache_dir: Path | str, download: bool = True) -> Dataset:
    """Fetch Fashion-MNIST through ``torchvision.datasets.FashionMNIST`` into ``cache_dir``.

    Raises
    ------
    FmnistError
        The download failed (for example on an offline machine).
    """
    from torchvision import datasets

    root = Path(cache_dir).expanduser()
    splits = {}
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
        splits[split] = (images, labels)
    return Dataset(
        x_train=_to_float_images(splits["train"][0]),
        y_train=splits["train"][1],
        x_test=_to_float_images(splits["test"][0]),
        y_test=splits["test"][1],
        class_names=FASHION_CLASSES,
    )


# --------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------


def _to_float_images(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of at most ``n`` items with the label shares of ``labels`` kept.

    Each label gets ``floor(n * share)`` items and the remainder goes to the labels with the
    largest fractional parts; within a label the items are a seeded random draw. The result
    is sorted, so the original order is kept.
    """
    total = len(labels)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / total
    quota = np.floor(exact).astype(int)
    short = n - int(quota.sum())
    if short > 0:
        order = np.argsort(-(exact - quota), kind="stable")
        quota[order[:short]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
        if q > 0
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def center_by_mass(images: np.ndarray) -> np.ndarray:
    """Shift each (1, 28, 28) image so that its centre of mass sits at the image centre."""
    from scipy import ndimage

    out = np.empty_like(images)
    centre = (IMAGE_SIDE - 1) / 2.0
    for i, img in enumerate(images[:, 0]):
        mass = img.sum()
        if mass <= 0:
            out[i, 0] = img
            continue
        cy, cx = ndimage.center_of_mass(img)
        out[i, 0] = ndimage.shift(img, (centre - cy, centre - cx), order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0)


def deskew(images: np.ndarray) -> np.ndarray:
    """Remove each image's slant: a horizontal shear by its covariance ratio about the centre
    of mass (the classic moment-based deskew)."""
    from scipy import ndimage

    out = np.empty_like(images)
    ys, xs = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE].astype(np.float64)
    centre = (IMAGE_SIDE - 1) / 2.0
    for i, img in enumerate(images[:, 0].astype(np.float64)):
        mass = img.sum()
        if mass <= 0:
            out[i, 0] = img
            continue
        my, mx = (ys * img).sum() / mass, (xs * img).sum() / mass
        var_y = (((ys - my) ** 2) * img).sum() / mass
        cov = (((ys - my) * (xs - mx)) * img).sum() / mass
        alpha = cov / var_y if var_y > 0 else 0.0
        matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
        offset = np.array([my, mx]) - matrix @ np.array([centre, centre])
        out[i, 0] = ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_source(config: PreprocessConfig) -> Dataset:
    """Read the images named by a :class:`PreprocessConfig` (no transforms)."""
    _check_source(config)
    if config.source == "sample":
        return load_idx_folder(SAMPLE_DIR)
    if config.source == "idx":
        return load_idx_folder(Path(config.path).expanduser())
    if config.source == "kaggle-csv":
        return load_kaggle_folder(Path(config.path).expanduser())
    if config.source == "twisted-csv":
        return load_twisted_folder(Path(config.path).expanduser())
    return load_torchvision(config.cache_dir)


def _check_source(config: PreprocessConfig) -> None:
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


def _source_files(config: PreprocessConfig) -> list[Path]:
    if config.source == "sample":
        folder = SAMPLE_DIR
    elif config.source == "torchvision":
        return []
    else:
        folder = Path(config.path).expanduser()
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in (".gz", ".csv") or "ubyte" in p.name))


def transform(
    dataset: Dataset, config: PreprocessConfig, progress: Progress = NULL_PROGRESS
) -> tuple[Dataset, dict[str, Any]]:
    """Apply the stratified limit, deskew/centre and standardisation of ``config``.

    Returns
    -------
    (Dataset, dict)
        The new data set and a record of what was done (for the manifest and metrics).
    """
    record: dict[str, Any] = {}
    mapping = grouping(config)
    if mapping is not None:
        dataset = relabel(dataset, mapping)
    xs: dict[str, np.ndarray] = {"train": dataset.x_train, "test": dataset.x_test}
    ys: dict[str, np.ndarray | None] = {"train": dataset.y_train, "test": dataset.y_test}
    if config.limit is not None:
        for offset, split in enumerate(("train", "test")):
            y = ys[split]
            idx = stratified_indices(
                y if y is not None else np.zeros(len(xs[split]), int), config.limit, config.seed + offset
            )
            xs[split] = xs[split][idx]
            ys[split] = y[idx] if y is not None else None
    for name, enabled, fn in (("deskew", config.deskew, deskew), ("center", config.center, center_by_mass)):
        if enabled:
            task = progress.task(f"{name} images", total=2)
            for split in ("train", "test"):
                xs[split] = fn(xs[split]).astype(np.float32)
                task.advance()
            task.close()
    extra: dict[str, np.ndarray] = {}
    if config.standardize != "none":
        axis = None if config.standardize == "global" else 0
        mean = xs["train"].mean(axis=axis, keepdims=axis == 0, dtype=np.float64).astype(np.float32)
        std = xs["train"].std(axis=axis, keepdims=axis == 0, dtype=np.float64).astype(np.float32)
        std = np.where(std > 1e-6, std, np.float32(1.0)).astype(np.float32)
        for split in ("train", "test"):
            xs[split] = ((xs[split] - mean) / std).astype(np.float32)
        extra = {"mean": np.asarray(mean), "std": np.asarray(std)}
        record["standardize"] = config.standardize
    record.update(
        {
            "n_train": len(xs["train"]),
            "n_test": len(xs["test"]),
            "n_classes": dataset.n_classes,
            "class_counts_train": _counts(ys["train"]),
            "class_counts_test": _counts(ys["test"]),
        }
    )
    out = Dataset(xs["train"], ys["train"], xs["test"], ys["test"], dataset.class_names, dataset.layer)
    record["_extra_arrays"] = extra
    return out, record


def grouping(config: PreprocessConfig) -> np.ndarray | None:
    """The class-to-label map asked for by ``relabel`` (None when not relabelling).

    A ``random`` grouping puts each of the 10 classes into one of ``relabel_groups`` labels,
    every label non-empty, drawn from ``seed``.
    """
    if config.relabel is None:
        return None
    if config.relabel != "random":
        return np.asarray(config.relabel, dtype=np.int64)
    rng = np.random.default_rng([config.seed, 10_007])
    k = config.relabel_groups
    labels = np.concatenate([np.arange(k), rng.integers(0, k, size=10 - k)])
    return rng.permutation(labels).astype(np.int64)


def relabel(dataset: Dataset, mapping: np.ndarray) -> Dataset:
    """Replace the 10 known classes by mystery labels ``mapping[class]`` and drop the names."""
    if dataset.class_names is None or len(dataset.class_names) != len(mapping):
        raise FmnistError(
            "relabel needs a source with the 10 known Fashion-MNIST classes (sample, idx, kaggle-csv, "
            "torchvision); remove relabel for this source"
        )
    ys = [None if y is None else mapping[y] for y in (dataset.y_train, dataset.y_test)]
    return Dataset(dataset.x_train, ys[0], dataset.x_test, ys[1], None, dataset.layer)


def _counts(y: np.ndarray | None) -> dict[str, int]:
    if y is None:
        return {}
    values, counts = np.unique(y, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


# --------------------------------------------------------------------------------------
# stage entry point and the shared loader
# --------------------------------------------------------------------------------------


def run_preprocess(config: PreprocessConfig, out_dir: Path | str, progress: Progress = NULL_PROGRESS) -> dict[str, Any]:
    """The ``preprocess`` stage: read a source, transform it, write ``data.npz``.

    Parameters
    ----------
    config : PreprocessConfig
        Validated stage config.
    out_dir : path
        Output folder; gets ``data.npz``, ``metrics.json`` and ``manifest.json``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    _check_source(config)
    with StageRun("preprocess", Path(out_dir), config.model_dump(mode="json"), seed=config.seed) as run:
        with run.timer("read"):
            for path in _source_files(config) if config.source != "torchvision" else []:
                run.add_input(path)
            dataset = load_source(config)
        with run.timer("transform"):
            dataset, record = transform(dataset, config, progress)
        extra = record.pop("_extra_arrays")
        with run.timer("write"):
            run.save_npz(DATA_FILE, **dataset.to_arrays(), **extra)
            metrics = {"source": config.source, **record}
            run.save_json("metrics.json", metrics)
        run.commit()
    return metrics


def load_dataset(
    folder: Path | str,
    producer: str = "fmnist-cluster preprocess",
    stages: tuple[str, ...] = FEATURE_STAGES,
    option: str = "--input",
) -> tuple[Dataset, str]:
    """Load the ``data.npz`` of a ``preprocess`` or ``encode`` artefact folder.

    Parameters
    ----------
    folder : path
        The upstream output folder.
    producer : str
        The command quoted in errors when the folder is missing or incomplete.
    stages : tuple of str
        Stages whose output is accepted (default ``preprocess`` and ``encode``).
    option : str
        The option naming the folder, quoted in errors.

    Returns
    -------
    (Dataset, str)
        The data and the sha256 of ``data.npz`` (for the manifest of the reading stage).

    Raises
    ------
    FmnistError
        Missing folder, manifest or file; a folder of another stage; wrong arrays; labels out of
        range; labels and features that disagree.
    """
    path, digest = require_file(folder, DATA_FILE, producer, stage=stages, option=option)
    arrays = load_npz(path, ("x_train", "x_test"), producer)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != np.float32 or x.ndim not in (2, 4):
            raise FmnistError(
                f"{path}: {name} is {x.dtype} shaped {x.shape}; expected float32 (N, D) or (N, 1, 28, 28)"
            )
        if not np.isfinite(x).all():
            raise FmnistError(f"{path}: {name} holds NaN or infinite values; run `{producer}` again")
    if len(x_train) == 0:
        raise FmnistError(
            f"{path} has no training samples (x_train has no rows); run `{producer}` on a non-empty source"
        )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise FmnistError(f"{path}: x_train rows are {x_train.shape[1:]} but x_test rows are {x_test.shape[1:]}")
    ys: dict[str, np.ndarray | None] = {}
    for split, x in (("train", x_train), ("test", x_test)):
        y = arrays.get(f"y_{split}")
        if y is not None:
            if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
                raise FmnistError(f"{path}: y_{split} is {y.dtype} shaped {y.shape}; expected {len(x)} integer labels")
            check_labels(y, f"{path}: y_{split}")
            y = y.astype(np.int64)
        ys[split] = y
    names = arrays.get("class_names")
    layer = arrays.get("layer")
    dataset = Dataset(
        x_train=x_train,
        y_train=ys["train"],
        x_test=x_test,
        y_test=ys["test"],
        class_names=tuple(str(n) for n in names) if names is not None else None,
        layer=str(layer.reshape(-1)[0]) if layer is not None and layer.size == 1 else None,
    )
    return dataset, digest
