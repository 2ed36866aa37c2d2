"""CSV folders: Kaggle's Fashion-MNIST CSV files and the Twisted format (mystery labels).

Every reader names the line and column of a bad cell.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.data.dataset import IMAGE_SIDE, MAX_LABEL, N_PIXELS, Dataset, data_folder
from fmnist_cluster.errors import FmnistError, why_not_a_file

_KAGGLE_FILES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}


def _first_true(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    order = np.lexsort((cols, rows))[0]
    return int(rows[order]), int(cols[order])


def _line(path: Path, row: int) -> int:
    """The line number in ``path`` of data row ``row`` (0-based, after the header; blank lines,
    which the reader skips, counted)."""
    seen = -1  # the header: the first line that is not blank
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                if seen == row:
                    return number
                seen += 1
    return row + 2


def _first_line_cells(path: Path) -> list[str]:
    """The cells of the first line of ``path`` that is not blank, as written (pandas renames a
    column name given twice, ``3`` to ``3.1``; a byte-order mark is left out, as pandas does)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        for line in fh:
            if line.strip():
                return next(csv.reader([line]))
    return []


_NAMED_BY_NUMBER = 0.9
"""A first line of numbers is a header when at least this share of its cells name their own
column (counted from 0 or from 1): one name mistyped or given twice leaves it a header."""


def _header_is_data(cells: list[str]) -> bool:
    """Whether a first line of numbers is really the first data row, not column names that
    count 0, 1, 2, ... or 1, 2, 3, ... (a lone label column: ``0`` or ``1``)."""
    try:
        numbers = np.array([float(c.strip()) for c in cells])
    except ValueError:
        return False
    if not len(numbers):
        return False
    position = np.arange(len(numbers))
    named = max(np.mean(numbers == position), np.mean(numbers == position + 1))
    return not (named >= _NAMED_BY_NUMBER if len(numbers) > 1 else named == 1)


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
                    f"{path}: line {_line(path, row)}, column '{col}' (#{col_index + 1}) holds text {value!r}, "
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
        raise FmnistError(f"{path} {why_not_a_file(path)}; the CSV source needs it")
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
    if not isinstance(frame.index, pd.RangeIndex):  # pandas takes a first cell the header lacks as the index
        raise FmnistError(
            f"{path}: the rows have one cell more than the header ({frame.shape[1] + 1} against {frame.shape[1]}); "
            "remove the index column, or name every column in the header"
        )
    if frame.shape[1] != n_columns:
        raise FmnistError(f"{path} has {frame.shape[1]} columns; expected {what}")
    if len(frame) == 0:
        raise FmnistError(f"{path} has a header but no rows; it needs one row per image")
    values = frame.to_numpy(dtype=np.float64, copy=False)
    nan = np.isnan(values)
    if nan.any():
        row, col = _first_true(nan)
        raise FmnistError(
            f"{path}: line {_line(path, row)}, column '{frame.columns[col]}' is empty or NaN; every cell needs a number"
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
            f"{path}: line {_line(path, row)}, column '{columns[col]}' holds {values[row, col]:g}; "
            f"{what} must be integers {allowed}"
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
    folder = data_folder(folder, "x_train.csv etc.")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        xpath, ypath = folder / f"x_{split}.csv", folder / f"y_{split}.csv"
        for p in (xpath, ypath):
            if not p.is_file():
                raise FmnistError(
                    f"{p} {why_not_a_file(p)}; the twisted-csv source needs x_train.csv, y_train.csv, x_test.csv, "
                    "y_test.csv"
                )
        xv, xcols = read_csv_matrix(xpath, N_PIXELS, f"{N_PIXELS} pixel columns")
        yv, ycols = read_csv_matrix(ypath, 1, "1 label column")
        for path, columns in ((xpath, xcols), (ypath, ycols)):
            if _header_is_data(_first_line_cells(path)):
                names = f"0..{len(columns) - 1}" if len(columns) > 1 else "0"
                raise FmnistError(
                    f"{path} has no header row: its first line holds numbers, not the column names {names}, "
                    f"and would be lost as one; add the header line"
                )
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
    return Dataset.from_pixels(out, class_names=None)


def load_kaggle_folder(folder: Path | str) -> Dataset:
    """Read Kaggle's ``fashion-mnist_train.csv`` and ``fashion-mnist_test.csv`` (a ``label``
    column and ``pixel1..pixel784``)."""
    folder = data_folder(folder, "the Kaggle CSV files")
    out: dict[str, np.ndarray] = {}
    for split, name in _KAGGLE_FILES.items():
        path = folder / name
        values, columns = read_csv_matrix(path, N_PIXELS + 1, f"{N_PIXELS + 1} (label, pixel1..pixel{N_PIXELS})")
        if columns[0] != "label":
            raise FmnistError(f"{path}: first column is '{columns[0]}'; the Kaggle format starts with 'label'")
        _check_integers(values[:, :1], path, columns[:1], 0, len(FASHION_CLASSES) - 1, "labels")
        out[f"x_{split}"] = _pixels_from_csv(values[:, 1:], path, columns[1:])
        out[f"y_{split}"] = values[:, 0].astype(np.int64)
    return Dataset.from_pixels(out, class_names=FASHION_CLASSES)
