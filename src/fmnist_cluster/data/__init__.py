"""Loading, checking and preprocessing images; the shared reader of ``data.npz``.

* :mod:`~fmnist_cluster.data.dataset` -- :class:`Dataset` and the checks every loader shares;
* :mod:`~fmnist_cluster.data.idx` -- IDX files (reading and writing);
* :mod:`~fmnist_cluster.data.csv_files` -- Kaggle and Twisted CSV folders;
* :mod:`~fmnist_cluster.data.sources` -- the sources of ``preprocess`` (sample, IDX, CSV, torchvision);
* :mod:`~fmnist_cluster.data.transforms` -- limit, deskew, centring, standardisation, relabelling;
* :mod:`~fmnist_cluster.data.preprocess` -- the ``preprocess`` stage;
* :mod:`~fmnist_cluster.data.load` -- :func:`load_dataset`, which reads the ``data.npz`` that
  ``preprocess`` and ``encode`` both write, so every later stage reads pixels and encodings
  the same way.

Every reader checks its input and raises :class:`~fmnist_cluster.errors.FmnistError` with one
line naming the file (and row/column) and the fix. Every public name is importable from this
package.
"""

from fmnist_cluster.data.csv_files import load_kaggle_folder, load_twisted_folder, read_csv_matrix
from fmnist_cluster.data.dataset import (
    DATA_FILE,
    IMAGE_SIDE,
    MAX_LABEL,
    N_PIXELS,
    Dataset,
    check_labels,
    data_folder,
    label_names,
    to_float_images,
)
from fmnist_cluster.data.idx import load_idx_folder, read_idx, write_idx
from fmnist_cluster.data.load import FEATURE_STAGES, load_dataset
from fmnist_cluster.data.preprocess import run_preprocess
from fmnist_cluster.data.sources import SAMPLE_DIR, check_source, load_source, load_torchvision, source_files
from fmnist_cluster.data.transforms import center_by_mass, deskew, grouping, relabel, stratified_indices, transform

__all__ = [
    "DATA_FILE",
    "FEATURE_STAGES",
    "IMAGE_SIDE",
    "MAX_LABEL",
    "N_PIXELS",
    "SAMPLE_DIR",
    "Dataset",
    "center_by_mass",
    "check_labels",
    "check_source",
    "data_folder",
    "deskew",
    "grouping",
    "label_names",
    "load_dataset",
    "load_idx_folder",
    "load_kaggle_folder",
    "load_source",
    "load_torchvision",
    "load_twisted_folder",
    "read_csv_matrix",
    "read_idx",
    "relabel",
    "run_preprocess",
    "source_files",
    "stratified_indices",
    "to_float_images",
    "transform",
    "write_idx",
]
