"""Configuration of the ``preprocess`` stage."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from fmnist_cluster.config.base import Seed, StrictModel

Source = Literal["sample", "idx", "kaggle-csv", "twisted-csv", "torchvision"]
SOURCES: tuple[str, ...] = get_args(Source)
"""Where ``preprocess`` reads images from."""
Standardize = Literal["none", "global", "per-pixel"]


class PreprocessConfig(StrictModel):
    """Configuration of ``preprocess``.

    Attributes
    ----------
    source : {'sample', 'idx', 'kaggle-csv', 'twisted-csv', 'torchvision'}
        Where the images come from. ``sample`` is the stratified real sample shipped in the
        package; ``idx`` a folder with the four standard ``*-idx?-ubyte[.gz]`` files;
        ``kaggle-csv`` a folder with ``fashion-mnist_train.csv`` / ``fashion-mnist_test.csv``;
        ``twisted-csv`` a folder with ``x_train.csv``, ``y_train.csv``, ``x_test.csv``,
        ``y_test.csv``; ``torchvision`` downloads through ``torchvision.datasets``.
    path : str or None
        The folder for ``idx``, ``kaggle-csv`` and ``twisted-csv``.
    cache_dir : str
        Download folder for ``torchvision``.
    limit : int or None
        Keep at most this many images of each split, stratified by label.
    standardize : {'none', 'global', 'per-pixel'}
        Subtract the training mean and divide by the training standard deviation, over all
        pixels (``global``) or pixel by pixel (``per-pixel``). Output then leaves [0, 1].
    deskew : bool
        Remove the slant of each image by an affine shear from its second moments.
    center : bool
        Shift each image so that its centre of mass is the image centre.
    relabel : list of 10 ints, 'random' or None
        Turn the 10 Fashion-MNIST classes into mystery labels: class ``c`` gets label
        ``relabel[c]`` (labels 0..K-1, each used), or a seeded random grouping into
        ``relabel_groups`` labels. Class names are then dropped, as in a Twisted set. Only for
        sources with the 10 known classes; makes mystery-label data sets from any source.
    relabel_groups : int
        Number of labels of a ``random`` grouping, 2..10.
    seed : int
        Seed of the stratified ``limit`` draw and of a ``random`` grouping.
    """

    source: Source = "sample"
    path: str | None = None
    cache_dir: str = "~/.cache/fmnist-cluster"
    limit: int | None = Field(default=None, gt=0)
    standardize: Standardize = "none"
    deskew: bool = False
    center: bool = False
    relabel: list[int] | Literal["random"] | None = None
    relabel_groups: int = Field(default=5, ge=2, le=10)
    seed: Seed = 0

    @field_validator("relabel")
    @classmethod
    def _check_relabel(cls, value: list[int] | str | None) -> list[int] | str | None:
        if isinstance(value, list):
            if len(value) != 10:
                raise ValueError(f"needs 10 label ids, one per class 0..9, got {len(value)}")
            used = set(value)
            if min(value) < 0 or used != set(range(max(value) + 1)):
                raise ValueError("label ids must be 0..K-1 with every id used")
        return value
