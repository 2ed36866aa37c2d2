"""Typed stage configurations, loaded from YAML and ``--set`` overrides.

Every stage has one pydantic model here. Models forbid unknown keys, so a mistyped key is
an error that lists the valid keys instead of a silently ignored setting. The shipped
``configs/<stage>.yaml`` files hold exactly these defaults (a test keeps them in step).

Reading YAML happens only in :func:`load_config`; library code receives validated models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fmnist_cluster.errors import FmnistError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------
# preprocess
# --------------------------------------------------------------------------------------

SOURCES = ("idx", "kaggle-csv", "twisted-csv", "torchvision", "sample")


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

    source: Literal["sample", "idx", "kaggle-csv", "twisted-csv", "torchvision"] = "sample"
    path: str | None = None
    cache_dir: str = "~/.cache/fmnist-cluster"
    limit: int | None = Field(default=None, gt=0)
    standardize: Literal["none", "global", "per-pixel"] = "none"
    deskew: bool = False
    center: bool = False
    relabel: list[int] | Literal["random"] | None = None
    relabel_groups: int = Field(default=5, ge=2, le=10)
    seed: int = 0

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


# --------------------------------------------------------------------------------------
# cluster, embed, report
# --------------------------------------------------------------------------------------


class ReduceConfig(StrictModel):
    """Feature preparation before clustering or embedding.

    Attributes
    ----------
    standardize : bool
        Scale every feature to zero mean and unit variance first.
    pca_components : int or None
        Project onto this many principal components first (None keeps every feature; a value
        at least the feature count is ignored).
    """

    standardize: bool = False
    pca_components: int | None = Field(default=None, gt=0)


class KMeansConfig(StrictModel):
    """KMeans section of ``cluster``.

    Attributes
    ----------
    enabled : bool
        Run KMeans.
    k : int, 'auto' or 'labels'
        Number of clusters: a number; ``auto`` picks the k of ``k_range`` with the best
        silhouette on a sample; ``labels`` uses the number of distinct labels of the data.
    k_range : list of 2 ints
        Smallest and largest k tried by ``auto`` (inclusive).
    n_init : int
        KMeans restarts; the best is kept.
    """

    enabled: bool = True
    k: int | Literal["auto", "labels"] = "auto"
    k_range: list[int] = Field(default_factory=lambda: [2, 12])
    n_init: int = Field(default=10, gt=0)

    @field_validator("k")
    @classmethod
    def _check_k(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError("k must be at least 2")
        return value

    @field_validator("k_range")
    @classmethod
    def _check_k_range(cls, value: list[int]) -> list[int]:
        if len(value) != 2 or value[0] < 2 or value[1] < value[0]:
            raise ValueError("k_range needs [low, high] with 2 <= low <= high")
        return value


class DBSCANConfig(StrictModel):
    """DBSCAN section of ``cluster``.

    Attributes
    ----------
    enabled : bool
        Run DBSCAN.
    eps : float or 'auto'
        Neighbourhood radius; ``auto`` takes the knee of the sorted k-distance curve (the
        distance of every point to its ``min_samples``-th neighbour), raised if needed so that
        at most ``max_noise`` of the points lie beyond it.
    min_samples : int or 'auto'
        Core-point neighbour count; ``auto`` is ``2 * dimensions`` clipped to [4, ``N / 100``]
        (and at least 4).
    max_noise : float
        Largest share of points an automatic eps may leave beyond the k-distance cut, in (0, 1).
    """

    enabled: bool = True
    eps: float | Literal["auto"] = "auto"
    min_samples: int | Literal["auto"] = "auto"
    max_noise: float = Field(default=0.10, gt=0, lt=1)

    @field_validator("eps")
    @classmethod
    def _check_eps(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and value <= 0:
            raise ValueError("eps must be > 0 or 'auto'")
        return value

    @field_validator("min_samples")
    @classmethod
    def _check_min_samples(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("min_samples must be >= 1 or 'auto'")
        return value


class HDBSCANConfig(StrictModel):
    """HDBSCAN section of ``cluster``.

    Attributes
    ----------
    enabled : bool
        Run HDBSCAN (``sklearn.cluster.HDBSCAN``).
    min_cluster_size : int or 'auto'
        Smallest cluster; ``auto`` is 1 % of the points (at least 5).
    min_samples : int or None
        Density smoothing; None uses ``min_cluster_size``.
    """

    enabled: bool = True
    min_cluster_size: int | Literal["auto"] = "auto"
    min_samples: int | None = Field(default=None, gt=0)

    @field_validator("min_cluster_size")
    @classmethod
    def _check_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError("min_cluster_size must be >= 2 or 'auto'")
        return value


class AgglomerativeConfig(StrictModel):
    """Agglomerative section of ``cluster``.

    Attributes
    ----------
    enabled : bool
        Run agglomerative clustering.
    n_clusters : int or 'kmeans'
        Number of clusters; ``kmeans`` reuses the k KMeans used.
    linkage : {'ward', 'average', 'complete', 'single'}
        Merge rule.
    max_samples : int
        The tree is built on a seeded sample of at most this many points (its memory grows with
        the square of the count); the other points join the cluster of their nearest sampled point.
    """

    enabled: bool = True
    n_clusters: int | Literal["kmeans"] = "kmeans"
    linkage: Literal["ward", "average", "complete", "single"] = "ward"
    max_samples: int = Field(default=5000, ge=10)


class DecodeConfig(StrictModel):
    """Mystery-label decoding section of ``cluster`` (used when ``--originals`` or
    ``--reference`` is given).

    Attributes
    ----------
    min_share : float
        A class is a member of a label when it holds at least this share of the label's images.
    leak_ratio : float
        A class is not a member of a label that holds less than this fraction of the class's
        largest label count (keeps a reference model's confusions out of ``members``).
    montage_images : int
        Images shown per label in the per-label montages.
    batch_size : int
        Batch size of the reference model's predictions.
    device : {'auto', 'cpu', 'cuda'}
        Device of the reference model (``auto``: CUDA when available).
    """

    min_share: float = Field(default=0.10, gt=0, lt=1)
    leak_ratio: float = Field(default=0.25, ge=0, lt=1)
    montage_images: int = Field(default=20, gt=0)
    batch_size: int = Field(default=512, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ClusterConfig(StrictModel):
    """Configuration of ``cluster``.

    Attributes
    ----------
    split : {'test', 'train', 'all'}
        Rows of the input clustered (``all``: train then test).
    reduce : ReduceConfig
        Standardisation / PCA before clustering.
    kmeans, dbscan, hdbscan, agglomerative : sections
        One per algorithm; each can be disabled.
    silhouette_sample : int
        Points drawn (seeded) to compute silhouettes.
    images_per_cluster : int
        Random images per cluster in the cluster montages (needs the images).
    decode : DecodeConfig
        Mystery-label decoding.
    seed : int
        Seed of every random choice.
    """

    split: Literal["test", "train", "all"] = "test"
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    kmeans: KMeansConfig = Field(default_factory=KMeansConfig)
    dbscan: DBSCANConfig = Field(default_factory=DBSCANConfig)
    hdbscan: HDBSCANConfig = Field(default_factory=HDBSCANConfig)
    agglomerative: AgglomerativeConfig = Field(default_factory=AgglomerativeConfig)
    silhouette_sample: int = Field(default=3000, ge=10)
    images_per_cluster: int = Field(default=10, gt=0)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    seed: int = 0


class TSNEConfig(StrictModel):
    """t-SNE section of ``embed``.

    Attributes
    ----------
    enabled : bool
        Compute a 2-D t-SNE (``sklearn.manifold.TSNE``, Barnes-Hut).
    perplexity : float
        Effective neighbour count.
    max_iter : int
        Optimisation steps (at least 250).
    pca_components : int
        Features are first projected on this many principal components (the usual speed-up).
    max_points : int or None
        Embed a seeded sample of at most this many rows (None: all).
    """

    enabled: bool = True
    perplexity: float = Field(default=30.0, gt=1)
    max_iter: int = Field(default=1000, ge=250)
    pca_components: int = Field(default=50, gt=1)
    max_points: int | None = Field(default=None, gt=10)


class UMAPConfig(StrictModel):
    """UMAP section of ``embed`` (runs only when ``umap-learn`` is installed).

    Attributes
    ----------
    enabled : bool
        Compute a 2-D UMAP when the package is available (a warning says when it is not).
    n_neighbors : int
        Local neighbourhood size.
    min_dist : float
        Minimum distance of points in the embedding.
    """

    enabled: bool = True
    n_neighbors: int = Field(default=15, gt=1)
    min_dist: float = Field(default=0.1, ge=0)


class EmbedConfig(StrictModel):
    """Configuration of ``embed``.

    Attributes
    ----------
    split : {'test', 'train', 'all'}
        Rows embedded; use the same as ``cluster`` so that ``report`` can colour the
        embeddings by cluster.
    standardize : bool
        Scale every feature to zero mean and unit variance first.
    pca_components : int
        Components kept for the explained-variance curve.
    tsne : TSNEConfig
    umap : UMAPConfig
    seed : int
        Seed of t-SNE, UMAP and sampling.
    """

    split: Literal["test", "train", "all"] = "test"
    standardize: bool = False
    pca_components: int = Field(default=50, gt=1)
    tsne: TSNEConfig = Field(default_factory=TSNEConfig)
    umap: UMAPConfig = Field(default_factory=UMAPConfig)
    seed: int = 0


class ReportConfig(StrictModel):
    """Configuration of ``report``.

    Attributes
    ----------
    title : str
        Heading of the report.
    max_points : int
        Points drawn in each scatter plot (a seeded sample beyond that).
    include_json : bool
        Also list every metrics file of the inputs as a JSON block in the HTML.
    seed : int
        Seed of the scatter sample.
    """

    title: str = "fmnist-cluster report"
    max_points: int = Field(default=10000, gt=10)
    include_json: bool = False
    seed: int = 0


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Split one ``--set dotted.key=value`` item; the value is read as YAML.

    Parameters
    ----------
    item : str
        For example ``som.sigma=2.5``, ``limit=500`` or ``path=null``.

    Returns
    -------
    tuple of (str, Any)
        The dotted key and the typed value.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise FmnistError(f"--set '{item}': expected dotted.key=value, for example --set seed=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _format_validation(model: type[BaseModel], err: ValidationError, origin: str) -> str:
    errors = err.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        valid = ", ".join(_valid_keys(model, loc[:-1])) or "(none)"
        msg = f"unknown config key '{dotted}' in {origin}; valid: {valid}"
    else:
        got = first.get("input")
        msg = f"config key '{dotted}' in {origin}: {first['msg']} (got {got!r})"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem(s))"
    return msg


def load_config(model: type[M], path: Path | str | None = None, overrides: list[str] | None = None) -> M:
    """Build a validated config from an optional YAML file and ``--set`` overrides.

    Parameters
    ----------
    model : type
        The stage's config model, e.g. :class:`PreprocessConfig`.
    path : path or None
        YAML file; ``None`` starts from the model's defaults.
    overrides : list of str
        ``dotted.key=value`` items applied on top, in order.

    Returns
    -------
    model instance

    Raises
    ------
    FmnistError
        Missing or unreadable file, YAML that is not a mapping, unknown key, wrong type or
        out-of-range value; the message names the key and the accepted values.
    """
    tree: dict[str, Any] = {}
    origin = "the defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise FmnistError(f"config file {path} does not exist; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise FmnistError(f"config file {path}{line} is not valid YAML; fix its syntax") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise FmnistError(f"config file {path} must hold a mapping of keys to values, not {type(loaded).__name__}")
        tree = loaded
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    if overrides:
        origin = f"{origin} with --set overrides"
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise FmnistError(_format_validation(model, exc, origin)) from None


def config_to_yaml(config: BaseModel) -> str:
    """Render a config as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
