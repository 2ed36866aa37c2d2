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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from fmnist_cluster.device import Device
from fmnist_cluster.errors import FmnistError

MAX_EPOCHS = 10_000
"""Most epochs a training config accepts."""
MAX_NEURONS = 10_000
"""Most neurons of a SOM (rows x cols)."""


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
    normalize : bool
        Scale every row to unit length first (compare directions: cosine geometry).
    standardize : bool
        Scale every feature to zero mean and unit variance (after ``normalize``).
    pca_components : int or None
        Project onto this many principal components last (None keeps every feature; a value
        at least the feature count is ignored).
    """

    normalize: bool = False
    standardize: bool = False
    pca_components: int | None = Field(default=None, gt=0)


class DBSCANReduceConfig(ReduceConfig):
    """Feature preparation for DBSCAN only (``dbscan.reduce``): the keys of ``reduce``, with
    a projection on the first 5 principal components by default."""

    pca_components: int | None = Field(default=5, gt=0)


class KMeansConfig(StrictModel):
    """KMeans section of ``cluster``.

    Attributes
    ----------
    enabled : bool
        Run KMeans.
    k : int, 'labels' or 'auto'
        Number of clusters: a number; ``labels`` (default) the number of distinct labels of
        the data (K mystery labels: K clusters), or ``auto`` when the data has no labels;
        ``auto`` the k of ``k_range`` with the best silhouette on a sample. With ``labels`` and
        ``auto`` the silhouette of every k of ``k_range`` is computed and plotted: a peak away
        from the number of labels says the labels group visually distinct kinds of images.
    k_range : list of 2 ints
        Smallest and largest k tried by ``auto`` (inclusive).
    n_init : int
        KMeans restarts of the final fit; the best is kept (the search over k uses at most 2).
    """

    enabled: bool = True
    k: int | Literal["labels", "auto"] = "labels"
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
        if len(value) != 2 or value[0] < 2 or value[1] < value[0] or value[1] > 1000:
            raise ValueError("k_range needs [low, high] with 2 <= low <= high <= 1000")
        return value


class DBSCANConfig(StrictModel):
    """DBSCAN section of ``cluster``.

    Attributes
    ----------
    enabled : bool
        Run DBSCAN.
    eps : float or 'auto'
        Neighbourhood radius; ``auto`` chooses it on the sorted k-distance curve (the distance
        of every point to its ``min_samples``-th neighbour) by ``eps_rule``.
    eps_rule : {'most-clusters', 'knee'}
        ``most-clusters``: of the eps values at quantiles 0.5..0.995 of the curve that leave at
        most ``max_noise`` noise, the one giving the most clusters of at least 1 % of the points.
        ``knee``: the knee of the curve, raised until at most ``max_noise`` is noise.
    min_samples : int or 'auto'
        Core-point neighbour count; ``auto`` is 1 % of the points (``N // 100``), at least 4
        and at most 500: a cluster must be a dense region of real size, not a handful of
        near-duplicates.
    max_noise : float
        Largest share of points an automatic eps may leave beyond the k-distance cut, in (0, 1).
    reduce : ReduceConfig
        Extra feature preparation for DBSCAN only, after the stage's ``reduce``. Density is
        hard to read in many dimensions, so by default DBSCAN sees the features projected on
        their first 5 principal components; ``dbscan.reduce.pca_components=null`` runs it on
        the stage's features as they are.
    """

    enabled: bool = True
    eps: float | Literal["auto"] = "auto"
    eps_rule: Literal["most-clusters", "knee"] = "most-clusters"
    min_samples: int | Literal["auto"] = "auto"
    max_noise: float = Field(default=0.10, gt=0, lt=1)
    reduce: DBSCANReduceConfig = Field(default_factory=DBSCANReduceConfig)

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
    device: Device = "auto"


class ExplainConfig(StrictModel):
    """Mystery-label explainer section of ``cluster`` (runs whenever the input rows carry
    mystery labels: labels without class names).

    Every hypothesis is fitted on the training split less a validation share, chosen on that
    validation share, refitted on the whole training split and scored on the test split.

    Attributes
    ----------
    enabled : bool
        Explain the mystery labels.
    properties : list of str or None
        Image properties tried (None: all of them; see ``fmnist_cluster.explain.properties``).
    validation_share : float
        Share of the training split held out to choose hypotheses and their complexity.
    simplicity_tolerance : float
        The simplest hypothesis (fewest properties, then no class evidence, then fewest rules)
        whose validation agreement is within this of the best one wins.
    complexity_tolerance : float
        Within one hypothesis, the fewest ranges / leaves / thresholds whose validation
        agreement is within this of its best variant.
    extra_segments : int
        Ranges of one property tried beyond the number of labels (a label may own several).
    pair_candidates : int
        Every pair of properties is screened with a quick tree; this many of the best pairs
        are then fitted in full.
    explained_lift : float
        Verdict ``explained`` when ``(agreement - chance) / (1 - chance)`` on the test split
        reaches this (and ``min_z`` holds).
    partial_lift : float
        Verdict ``partly explained`` from this lift (and ``min_z``); below it ``unexplained``.
    min_z : float
        Smallest one-sided binomial z score of the agreement over chance for any verdict
        other than ``unexplained``.
    montage_images : int
        Images shown per label in the per-label figures.
    """

    enabled: bool = True
    properties: list[str] | None = None
    validation_share: float = Field(default=0.2, gt=0, lt=0.9)
    simplicity_tolerance: float = Field(default=0.005, ge=0, lt=1)
    complexity_tolerance: float = Field(default=0.001, ge=0, lt=1)
    extra_segments: int = Field(default=3, ge=0, le=20)
    pair_candidates: int = Field(default=15, ge=0, le=200)
    explained_lift: float = Field(default=0.9, gt=0, le=1)
    partial_lift: float = Field(default=0.1, gt=0, le=1)
    min_z: float = Field(default=3.0, ge=0)
    montage_images: int = Field(default=20, gt=0, le=200)

    @field_validator("properties")
    @classmethod
    def _known_properties(cls, value: list[str] | None) -> list[str] | None:
        from fmnist_cluster.explain.properties import PROPERTIES  # declared there, with the formulas

        if value is not None:
            for name in value:
                if name not in PROPERTIES:
                    raise ValueError(f"unknown property '{name}'; valid: {', '.join(PROPERTIES)}")
            if not value:
                raise ValueError("give at least one property, or null for all of them")
        return value

    @model_validator(mode="after")
    def _lifts_ordered(self) -> ExplainConfig:
        if self.partial_lift > self.explained_lift:
            raise ValueError(
                f"partial_lift {self.partial_lift} is above explained_lift {self.explained_lift}; "
                "keep partial_lift <= explained_lift"
            )
        return self


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
    explain : ExplainConfig
        Mystery-label explainer (which rule of the data the labels follow).
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
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    seed: int = 0


class TSNEConfig(StrictModel):
    """t-SNE section of ``embed``.

    Attributes
    ----------
    enabled : bool
        Compute a 2-D t-SNE.
    method : {'fft', 'barnes-hut'}
        ``fft``: openTSNE's FFT-accelerated interpolation (time linear in the rows);
        ``barnes-hut``: ``sklearn.manifold.TSNE``.
    perplexity : float
        Effective neighbour count.
    max_iter : int
        Optimisation steps (at least 250), the first 250 with early exaggeration.
    pca_components : int
        Features are first projected on this many principal components (the usual speed-up).
    max_points : int or None
        Embed a seeded sample of at most this many rows (None: all).
    """

    enabled: bool = True
    method: Literal["fft", "barnes-hut"] = "fft"
    perplexity: float = Field(default=30.0, gt=1)
    max_iter: int = Field(default=750, ge=250)
    pca_components: int = Field(default=50, gt=1)
    max_points: int | None = Field(default=None, gt=10)


class UMAPConfig(StrictModel):
    """UMAP section of ``embed`` (runs only when ``umap-learn`` is installed).

    Attributes
    ----------
    enabled : bool
        Compute a 2-D UMAP when the package is available (recorded as skipped when it is not).
    n_neighbors : int
        Local neighbourhood size.
    min_dist : float
        Minimum distance of points in the embedding.
    """

    enabled: bool = True
    n_neighbors: int = Field(default=15, gt=1)
    min_dist: float = Field(default=0.1, ge=0)


class QualityConfig(StrictModel):
    """Neighbourhood-preservation scores of every embedding (section ``quality`` of ``embed``).

    Attributes
    ----------
    k : int
        Neighbours of trustworthiness and k-NN preservation.
    points : int or None
        Rows scored: all up to this many, else a seeded sample of this many (each ranked against
        every row); None: all rows.
    """

    k: int = Field(default=10, ge=1)
    points: int | None = Field(default=5000, gt=10)


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
    quality : QualityConfig
    threads : int or None
        CPU threads of t-SNE; None uses one per core.
    seed : int
        Seed of t-SNE, UMAP and sampling.
    """

    split: Literal["test", "train", "all"] = "test"
    standardize: bool = False
    pca_components: int = Field(default=50, gt=1)
    tsne: TSNEConfig = Field(default_factory=TSNEConfig)
    umap: UMAPConfig = Field(default_factory=UMAPConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    threads: int | None = Field(default=None, gt=0)
    seed: int = 0


class ReportConfig(StrictModel):
    """Configuration of ``report``.

    Attributes
    ----------
    title : str
        Heading of the report.
    max_points : int
        Points drawn in each scatter plot and in the explorer (a seeded sample beyond that).
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
# train-cnn, encode
# --------------------------------------------------------------------------------------

LAYER_TYPES = ("conv", "pool", "global_pool", "dense", "dropout", "batchnorm", "activation", "flatten")
ACTIVATIONS = ("none", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh")
_LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "conv": ("filters", "kernel", "stride", "padding", "bias", "batchnorm", "activation", "negative_slope"),
    "dense": ("units", "bias", "batchnorm", "activation", "negative_slope"),
    "pool": ("mode", "size"),
    "global_pool": ("mode",),
    "dropout": ("rate",),
    "batchnorm": (),
    "activation": ("activation", "negative_slope"),
    "flatten": (),
}


class LayerSpec(StrictModel):
    """One named layer of a network built by ``train-cnn``.

    Every layer has a ``name`` (letters, digits, ``_``; unique) that ``encode`` uses to take
    its output, and a ``type``. A ``conv`` or ``dense`` layer is one block: the weights, then
    optional batch norm, then the optional activation, so its output is the activated value.

    Attributes
    ----------
    name : str
        Stable layer name, e.g. ``conv1`` or ``dense64``.
    type : {'conv', 'pool', 'global_pool', 'dense', 'dropout', 'batchnorm', 'activation', 'flatten'}
        ``conv``: 2-D convolution; ``pool``: ``mode`` pooling over ``size`` x ``size``;
        ``global_pool``: pools each channel to one value and flattens; ``dense``: fully
        connected (needs a flat input: put ``flatten`` first); ``dropout``: drops a ``rate``
        share in training; ``batchnorm``: batch normalisation; ``activation``: a non-linearity.
    filters : int
        conv: output channels (required).
    kernel, stride, padding : int
        conv: square kernel side (3), stride (1) and zero padding (1).
    units : int or 'classes'
        dense: output size (required); ``classes`` means K, the number of labels in the data.
    bias : bool
        conv, dense: learn an additive bias (True).
    batchnorm : bool
        conv, dense: batch norm between weights and activation (False).
    activation : {'none', 'relu', 'leaky_relu', 'elu', 'gelu', 'silu', 'tanh'}
        conv, dense, activation: the non-linearity (``none`` for conv/dense).
    negative_slope : float
        Slope of ``leaky_relu`` for negative inputs (0.01).
    mode : {'max', 'avg'}
        pool, global_pool: maximum or average ('max').
    size : int
        pool: window side and stride (2).
    rate : float
        dropout: share of values zeroed in training, 0 <= rate < 1 (0.5).
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)
    type: Literal["conv", "pool", "global_pool", "dense", "dropout", "batchnorm", "activation", "flatten"]
    filters: int | None = Field(default=None, gt=0)
    kernel: int = Field(default=3, gt=0)
    stride: int = Field(default=1, gt=0)
    padding: int = Field(default=1, ge=0)
    units: int | Literal["classes"] | None = None
    bias: bool = True
    batchnorm: bool = False
    activation: Literal["none", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh"] = "none"
    negative_slope: float = Field(default=0.01, ge=0)
    mode: Literal["max", "avg"] = "max"
    size: int = Field(default=2, gt=0)
    rate: float = Field(default=0.5, ge=0, lt=1)

    @model_validator(mode="after")
    def _check_keys(self) -> LayerSpec:
        allowed = set(_LAYER_KEYS[self.type]) | {"name", "type"}
        stray = sorted(set(self.model_fields_set) - allowed)
        if stray:
            raise ValueError(
                f"layer '{self.name}' ({self.type}) does not take {', '.join(stray)}; "
                f"valid: {', '.join(['name', 'type', *_LAYER_KEYS[self.type]])}"
            )
        if self.type == "conv" and self.filters is None:
            raise ValueError(f"conv layer '{self.name}' needs filters (output channels)")
        if self.type == "dense" and self.units is None:
            raise ValueError(f"dense layer '{self.name}' needs units (an int, or 'classes' for K)")
        if self.type == "activation" and self.activation == "none":
            raise ValueError(f"activation layer '{self.name}' needs activation; valid: {', '.join(ACTIVATIONS[1:])}")
        if isinstance(self.units, int) and self.units <= 0:
            raise ValueError(f"dense layer '{self.name}' needs units > 0")
        return self

    @model_serializer(mode="wrap")
    def _dump_used(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        keep = {"name", "type", *_LAYER_KEYS[data["type"]]}
        return {key: value for key, value in data.items() if key in keep}


class CnnTrainConfig(StrictModel):
    """Training settings of ``train-cnn``.

    Attributes
    ----------
    optimizer : {'sgd', 'adam', 'adamw'}
        SGD (with ``momentum``), Adam or AdamW.
    lr : float
        Learning rate (the peak rate of a ``onecycle`` schedule), > 0.
    momentum : float
        SGD momentum, 0 <= momentum < 1.
    nesterov : bool
        Nesterov momentum for SGD.
    weight_decay : float
        L2 penalty (decoupled for AdamW), >= 0.
    batch_size : int
        Images per step, > 0.
    epochs : int
        Passes over the training part, > 0.
    schedule : {'constant', 'onecycle', 'cosine', 'step'}
        Learning-rate schedule: constant; one-cycle (warm up over ``warmup`` of the steps,
        then cosine down); cosine decay to 0 over all steps; or x0.1 at 50 % and 75 % of epochs.
    warmup : float
        Share of the steps spent warming up in ``onecycle``, 0 < warmup < 1.
    label_smoothing : float
        Cross-entropy label smoothing, 0 <= value < 1.
    val_fraction : float
        Share of the training images held out (seeded, stratified) for validation,
        0 <= value <= 0.5. With 0 no validation is done and the last epoch is kept.
    early_stopping : int or None
        Stop after this many epochs without a better validation accuracy; None trains every epoch.
    restore_best : bool
        Keep the weights of the epoch with the best validation accuracy (else the last epoch's).
    eval_batch_size : int
        Images per forward pass when evaluating, > 0.
    precision : {'auto', 'fp32', 'bf16'}
        Arithmetic of the training forward pass. ``bf16`` runs convolutions and dense layers
        in bfloat16 under autocast (weights, optimiser and loss stay float32) with
        channels-last images: about 1.8x faster on CPUs with AVX-512 BF16 or AMX and on
        recent GPUs, and very slow where the hardware lacks it. ``auto`` picks ``bf16`` where
        the hardware supports it, else ``fp32``; ``metrics.json`` records the choice.
        Evaluation and prediction always run in float32.
    """

    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(default=0.003, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.02, ge=0)
    batch_size: int = Field(default=128, gt=0)
    epochs: int = Field(default=22, gt=0, le=MAX_EPOCHS)
    schedule: Literal["constant", "onecycle", "cosine", "step"] = "onecycle"
    warmup: float = Field(default=0.2, gt=0, lt=1)
    label_smoothing: float = Field(default=0.05, ge=0, lt=1)
    val_fraction: float = Field(default=0.1, ge=0, le=0.5)
    early_stopping: int | None = Field(default=None, gt=0)
    restore_best: bool = True
    eval_batch_size: int = Field(default=256, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"


class AugmentConfig(StrictModel):
    """On-the-fly training augmentation of ``train-cnn`` (label preserving, seeded).

    Attributes
    ----------
    flip : bool
        Mirror each image left-right with probability 0.5.
    shift : int
        Translate each image by up to this many pixels in x and y (zero fill), 0..8.
    erase : float
        Probability of blanking one random rectangle (random erasing), 0..1.
    test_flip : bool
        At test and prediction time, average the class probabilities of each image and its
        mirror image (test-time augmentation). Stored in the checkpoint, so every later
        prediction from the model (``cluster --reference`` included) does the same.
    """

    flip: bool = True
    shift: int = Field(default=2, ge=0, le=8)
    erase: float = Field(default=0.0, ge=0, le=1)
    test_flip: bool = True


def _default_architecture() -> list[LayerSpec]:
    return [
        LayerSpec(name="conv1", type="conv", filters=32, bias=False, batchnorm=True, activation="relu"),
        LayerSpec(name="conv1b", type="conv", filters=32, bias=False, batchnorm=True, activation="relu"),
        LayerSpec(name="pool1", type="pool"),
        LayerSpec(name="conv2", type="conv", filters=96, bias=False, batchnorm=True, activation="relu"),
        LayerSpec(name="conv2b", type="conv", filters=96, bias=False, batchnorm=True, activation="relu"),
        LayerSpec(name="pool2", type="pool"),
        LayerSpec(name="conv3", type="conv", filters=192, bias=False, batchnorm=True, activation="relu"),
        LayerSpec(name="pool3", type="pool"),
        LayerSpec(name="flatten", type="flatten"),
        LayerSpec(name="drop1", type="dropout", rate=0.1),
        LayerSpec(name="dense64", type="dense", units=64, bias=False, batchnorm=True, activation="relu"),
        LayerSpec(name="drop2", type="dropout", rate=0.2),
        LayerSpec(name="output", type="dense", units="classes"),
    ]


class CnnConfig(StrictModel):
    """Configuration of ``train-cnn``: the network, its training and augmentation.

    The network ends in a dense layer with ``units: classes``; its K outputs are the logits
    of a softmax (the softmax is part of the loss and of :func:`predict_proba`).

    Attributes
    ----------
    architecture : list of LayerSpec
        The layers in order (see :class:`LayerSpec`).
    train : CnnTrainConfig
        Optimiser, schedule, batch size, epochs, validation split, early stopping.
    augment : AugmentConfig
        Training-time augmentation.
    device : {'auto', 'cpu', 'cuda'}
        Where to train; ``auto`` takes CUDA when present.
    threads : int or None
        CPU threads for torch; None keeps torch's default (one per core).
    seed : int
        Seeds weights, validation split, shuffling, augmentation and dropout.
    """

    architecture: list[LayerSpec] = Field(default_factory=_default_architecture, min_length=1)
    train: CnnTrainConfig = Field(default_factory=CnnTrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    device: Device = "auto"
    threads: int | None = Field(default=None, gt=0)
    seed: int = 0

    @field_validator("architecture")
    @classmethod
    def _check_names(cls, layers: list[LayerSpec]) -> list[LayerSpec]:
        seen: set[str] = set()
        for layer in layers:
            if layer.name in seen:
                raise ValueError(f"layer name '{layer.name}' is used twice; names must be unique")
            seen.add(layer.name)
        return layers


class EncodeConfig(StrictModel):
    """Configuration of ``encode``.

    Attributes
    ----------
    layer : str or None
        Named layer whose output becomes the features (``encode --list-layers`` shows them);
        None takes the last dense layer before the output layer (else the layer before it).
    batch_size : int
        Images per forward pass, > 0.
    device : {'auto', 'cpu', 'cuda'}
        Where to run; ``auto`` takes CUDA when present.
    threads : int or None
        CPU threads for torch; None keeps torch's default.
    """

    layer: str | None = None
    batch_size: int = Field(default=256, gt=0)
    device: Device = "auto"
    threads: int | None = Field(default=None, gt=0)


# --------------------------------------------------------------------------------------
# train-som and tune
# --------------------------------------------------------------------------------------


class SomMapConfig(StrictModel):
    """The map and its training schedule (section ``som``).

    Attributes
    ----------
    engine : {'batch', 'minisom'}
        ``batch``: the toolkit's Kohonen batch map in torch (fast, CPU or CUDA);
        ``minisom``: MiniSom's online updates, one sample at a time.
    rows, cols : int
        Map size (>= 1).
    topology : {'rectangular', 'hexagonal'}
    neighbourhood : {'gaussian', 'bubble', 'triangle', 'mexican_hat'}
        ``mexican_hat`` only with ``engine: minisom``.
    init : {'pca', 'random'}
        Plane of the first two principal components, or random samples of the data.
    sigma : float or None
        Initial neighbourhood width (> 0); None means max(rows, cols) / 2.
    sigma_end : float
        Batch engine: width in the last epoch (> 0, <= sigma).
    epochs : float
        Batch engine: number of epochs (a whole number >= 1). MiniSom: passes over the
        data when ``steps`` is None.
    schedule : {'exponential', 'linear'}
        Batch engine: how sigma shrinks from ``sigma`` to ``sigma_end``.
    learning_rate : float
        MiniSom: initial learning rate (> 0).
    decay_function : {'asymptotic_decay', 'inverse_decay_to_zero', 'linear_decay_to_zero'}
        MiniSom: learning-rate decay.
    sigma_decay_function : {'asymptotic_decay', 'inverse_decay_to_one', 'linear_decay_to_one'}
        MiniSom: sigma decay.
    order : {'random', 'sequential'}
        MiniSom: ``train_random`` (shuffled) or ``train_batch`` (in order) sample order.
    steps : int or None
        MiniSom: number of single-sample updates; None means ``epochs`` passes.
    """

    engine: Literal["batch", "minisom"] = "batch"
    rows: int = Field(default=50, ge=1, le=1000)
    cols: int = Field(default=50, ge=1, le=1000)
    topology: Literal["rectangular", "hexagonal"] = "rectangular"
    neighbourhood: Literal["gaussian", "bubble", "triangle", "mexican_hat"] = "gaussian"
    init: Literal["pca", "random"] = "pca"
    sigma: float | None = Field(default=4.5, gt=0)
    sigma_end: float = Field(default=0.665, gt=0)
    epochs: float = Field(default=13, gt=0, le=MAX_EPOCHS)
    schedule: Literal["exponential", "linear"] = "exponential"
    learning_rate: float = Field(default=0.5, gt=0)
    decay_function: Literal["asymptotic_decay", "inverse_decay_to_zero", "linear_decay_to_zero"] = "asymptotic_decay"
    sigma_decay_function: Literal["asymptotic_decay", "inverse_decay_to_one", "linear_decay_to_one"] = (
        "asymptotic_decay"
    )
    order: Literal["random", "sequential"] = "random"
    steps: int | None = Field(default=None, ge=1, le=10**9)

    @model_validator(mode="after")
    def _check_engine_options(self) -> SomMapConfig:
        if self.rows * self.cols > MAX_NEURONS:
            raise ValueError(
                f"a {self.rows}x{self.cols} map has {self.rows * self.cols} neurons; at most {MAX_NEURONS} "
                "(its neuron-to-neuron distances must fit in memory), e.g. 100x100"
            )
        if self.engine == "batch":
            if self.neighbourhood == "mexican_hat":
                raise ValueError(
                    "neighbourhood 'mexican_hat' needs engine 'minisom'; batch valid: gaussian, bubble, triangle"
                )
            if self.epochs != int(self.epochs):
                raise ValueError(f"epochs must be a whole number for the batch engine, got {self.epochs}")
            if self.sigma is not None and self.sigma < self.sigma_end:
                raise ValueError(f"sigma ({self.sigma}) must be >= sigma_end ({self.sigma_end})")
        return self


class SomTrainConfig(StrictModel):
    """How ``train-som`` feeds and runs the map (section ``train``).

    Attributes
    ----------
    pool : bool
        Train on train + test together (as the original tutorial did); the test accuracy
        is then not held out (metrics.json says so). Default False: train on the training
        split, score on the test split.
    limit : int or None
        Train on at most this many (seeded random) rows.
    chunk_size : int
        Rows per chunk of the winner search (memory ~ chunk_size x neurons x 4 bytes).
    search_dims : int
        Batch engine: 0 searches winners exactly in every epoch; p > 0 searches them among
        the first p principal components in all but the last ``exact_epochs`` epochs (much
        faster on 784 pixels; final metrics are always exact).
    exact_epochs : int
        Batch engine: epochs at the end with the exact search when ``search_dims > 0``.
    exact_candidates : int
        Batch engine: 0 compares every row with every neuron in the exact epochs; c >= 2
        re-ranks the c best neurons of the subspace search by exact distance instead
        (several times faster; final metrics are always exact).
    device : {'auto', 'cpu', 'cuda'}
    early_stop_tol : float or None
        Batch engine: stop when the quantisation error improved by less than this
        fraction for ``patience`` epochs in a row; None trains every epoch.
    patience : int
    """

    pool: bool = False
    limit: int | None = Field(default=None, gt=0)
    chunk_size: int = Field(default=2048, ge=1)
    search_dims: int = Field(default=64, ge=0)
    exact_epochs: int = Field(default=2, ge=0)
    exact_candidates: int = Field(default=8, ge=0)
    device: Device = "auto"
    early_stop_tol: float | None = Field(default=None, ge=0)
    patience: int = Field(default=2, ge=1)


class SomAnalysisConfig(StrictModel):
    """Figures of ``train-som`` (section ``analysis``).

    Attributes
    ----------
    winner_neurons : list of int or None
        Neurons (index row * cols + col) whose samples are shown; None: the 4 most hit.
    n_winner_samples : int
        Samples shown per chosen neuron.
    n_largest_qe : int
        Samples in the largest-quantisation-error montage.
    """

    winner_neurons: list[int] | None = None
    n_winner_samples: int = Field(default=10, ge=1)
    n_largest_qe: int = Field(default=30, ge=1)


class SomConfig(StrictModel):
    """Configuration of ``train-som``: sections ``som``, ``train``, ``analysis`` and a ``seed``."""

    som: SomMapConfig = SomMapConfig()
    train: SomTrainConfig = SomTrainConfig()
    analysis: SomAnalysisConfig = SomAnalysisConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _check_winner_neurons(self) -> SomConfig:
        n = self.som.rows * self.som.cols
        bad = [k for k in self.analysis.winner_neurons or [] if not 0 <= k < n]
        if bad:
            raise ValueError(f"analysis.winner_neurons {bad} out of range; neurons of this map are 0..{n - 1}")
        return self


class SearchParam(StrictModel):
    """One dimension of the search space: a range (``low``/``high``, optional ``log`` and
    ``integer``) or a list of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either a non-empty 'choices' list or 'low' and 'high', not both")
        elif self.low is None or self.high is None:
            raise ValueError("a range needs both 'low' and 'high' (or give 'choices')")
        elif self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high}); swap them")
        elif self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


def _default_space() -> dict[str, SearchParam]:
    return {
        "som.sigma": SearchParam(low=1.0, high=10.0, log=True),
        "som.sigma_end": SearchParam(low=0.3, high=3.0, log=True),
        "som.epochs": SearchParam(low=2, high=8, integer=True),
        "som.neighbourhood": SearchParam(choices=["gaussian", "bubble", "triangle"]),
    }


class TuneConfig(StrictModel):
    """Configuration of ``tune``: Optuna TPE over ``train-som`` settings.

    Attributes
    ----------
    base : SomConfig
        The map settings every trial starts from; ``space`` keys replace parts of it.
    space : dict of dotted key -> SearchParam
        Keys are dotted ``train-som`` config keys (``som.sigma``, ``som.rows``, ...).
    n_trials : int
        Finished trials the study should hold (shared by every worker on one storage).
    timeout : float or None
        Stop this worker after that many seconds.
    objective : {'pareto', 'scalar'}
        ``pareto``: minimise held-out QE and TE together (multi-objective TPE, Pareto
        front); ``scalar``: minimise ``qe + te_weight * te`` with median pruning on the
        per-epoch QE.
    te_weight : float
        Weight of TE in the scalar score, also used to pick the best trial of a Pareto front.
    holdout : float
        Share of the (possibly limited) training rows kept out of training for scoring (0..0.9).
    limit : int or None
        Use at most this many training rows (seeded) per trial, before the holdout split.
    storage : str or None
        Optuna database URL (``postgresql+psycopg://user@host/db``, ``mysql+pymysql://...``) for
        workers on many machines; None: the journal file ``study.journal`` in the output folder.
    study_name : str
    seed : int
        Seed of the holdout split and of the samplers (each worker derives its own from it).
    workers : int
        Worker processes this command starts on this host (1: trials run in the command itself).
    heartbeat_interval : int
        Seconds between a database worker's heartbeats while it runs a trial.
    grace_period : int
        Seconds without a heartbeat after which a database trial counts as dead: it is failed
        and queued again.
    max_retry : int
        How often the trial of a dead worker is queued again (0: never).
    """

    base: SomConfig = SomConfig(som=SomMapConfig(rows=10, cols=10), train=SomTrainConfig(device="auto"))
    space: dict[str, SearchParam] = Field(default_factory=_default_space)
    n_trials: int = Field(default=30, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    objective: Literal["pareto", "scalar"] = "pareto"
    te_weight: float = Field(default=5.0, ge=0)
    holdout: float = Field(default=0.2, gt=0, lt=0.9)
    limit: int | None = Field(default=5000, gt=0)
    storage: str | None = None
    study_name: str = "som"
    seed: int = 0
    workers: int = Field(default=1, ge=1, le=64)
    heartbeat_interval: int = Field(default=10, ge=1)
    grace_period: int = Field(default=30, ge=2)
    max_retry: int = Field(default=1, ge=0)


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


class _DuplicateKeyError(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKeyError(f"key '{key}' appears twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at the dotted key ``dotted`` (``a.b.c``) of a nested dict, creating levels."""
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
    key_next = False
    for part in loc:
        if isinstance(part, int) or key_next:  # a list index or a mapping key: same model below
            key_next = False
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current, key_next = _inner_model(fields[part].annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _inner_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config model inside a field's annotation (``X``, ``list[X]``, ``dict[str, X]``, ``X | None``)
    and whether the field is a mapping whose keys come next in an error location."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    is_dict = getattr(annotation, "__origin__", None) is dict
    for arg in getattr(annotation, "__args__", ()):
        found, _ = _inner_model(arg)
        if found is not None:
            return found, is_dict
    return None, is_dict


def _field_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` cut to the config key it names: pydantic appends union members (``k.int``)."""
    out: list[Any] = []
    current: type[BaseModel] | None = model
    key_next = False
    for part in loc:
        if isinstance(part, int) or key_next:
            key_next = False
        elif current is not None and part in current.model_fields:
            current, key_next = _inner_model(current.model_fields[part].annotation)
        else:
            break
        out.append(part)
    return tuple(out)


def _format_validation(model: type[BaseModel], err: ValidationError, origin: str) -> str:
    errors = err.errors()
    first = errors[0]
    if first["type"] == "extra_forbidden":
        loc = tuple(first["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        valid = ", ".join(_valid_keys(model, loc[:-1])) or "(none)"
        msg = f"unknown config key '{dotted}' in {origin}; valid: {valid}"
        rest = len(errors) - 1
    else:
        loc = _field_loc(model, tuple(first["loc"]))
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        same = [e for e in errors if _field_loc(model, tuple(e["loc"])) == loc and e["type"] != "extra_forbidden"]
        texts = [str(e["msg"]).removeprefix("Value error, ") for e in same]
        text = texts[0] + "".join(f", or {t.removeprefix('Input should be ')}" for t in texts[1:])
        got = first.get("input")
        shown = repr(got) if len(repr(got)) <= 80 else repr(got)[:77] + "..."
        msg = f"config key '{dotted}' in {origin}: {text} (got {shown})"
        rest = len(errors) - len(same)
    if rest > 0:
        msg += f" (and {rest} more problem(s))"
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
        if path.is_dir():
            raise FmnistError(f"--config {path} is a folder; pass a YAML file (e.g. configs/<stage>.yaml)")
        if not path.is_file():
            raise FmnistError(f"config file {path} does not exist; pass an existing YAML file to --config")
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
        except _DuplicateKeyError as exc:
            raise FmnistError(f"config file {path}: {exc}; keep one of them") from None
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
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
        set_dotted(tree, key, value)
    if overrides:
        origin = f"{origin} with --set overrides"
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise FmnistError(_format_validation(model, exc, origin)) from None


def config_to_yaml(config: BaseModel) -> str:
    """Render a config as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
