"""Configuration of the ``cluster`` stage: feature preparation, the four algorithms, and the
mystery-label decoder and explainer that run inside it."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator

from fmnist_cluster.config.base import Seed, Split, StrictModel
from fmnist_cluster.device import Device

EpsRule = Literal["most-clusters", "knee"]
EPS_RULES: tuple[str, ...] = get_args(EpsRule)
"""How an automatic DBSCAN eps is chosen on the k-distance curve."""
Linkage = Literal["ward", "average", "complete", "single"]
LINKAGES: tuple[str, ...] = get_args(Linkage)


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
    k: Annotated[int, Field(ge=2)] | Literal["labels", "auto"] = "labels"
    k_range: list[int] = Field(default_factory=lambda: [2, 12])
    n_init: int = Field(default=10, gt=0, le=1000)

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
    eps: Annotated[float, Field(gt=0)] | Literal["auto"] = "auto"
    eps_rule: EpsRule = "most-clusters"
    min_samples: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    max_noise: float = Field(default=0.10, gt=0, lt=1)
    reduce: DBSCANReduceConfig = Field(default_factory=DBSCANReduceConfig)


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
    min_cluster_size: Annotated[int, Field(ge=2)] | Literal["auto"] = "auto"
    min_samples: int | None = Field(default=None, gt=0)


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
    linkage: Linkage = "ward"
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
        Images shown per label in the decoding's per-label montages (drawn for the labels the
        explainer draws none for; its montages take ``explain.montage_images``).
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
        Named image properties tried (None: all of them; see
        ``fmnist_cluster.explain.properties``); single pixels are set by ``pixels``.
    validation_share : float
        Share of the training split held out to choose hypotheses and their complexity.
    simplicity_tolerance : float
        The simplest hypothesis (fewest properties its rule names, then no class evidence, then
        fewest rules, then fewest thresholds) whose validation agreement is within this of the
        best one wins, or one that passes ``simplicity_z``. Neither admits a hypothesis that
        recalls some label less than half as often as the best does (when the best recalls
        most of its rows, 3 at least): it is not simpler but worse, since a rare label weighs
        little in the agreement and its few rows make no significant difference.
    simplicity_z : float
        A simpler hypothesis also wins when its validation agreement is less than this many
        standard errors of the paired difference below the best one's and this many binomial
        standard errors above chance (0: the tolerance alone). The best of some thirty
        candidates scored on the same rows is the luckiest of them: 3 is about what a 5 % test
        over 30 comparisons asks (Bonferroni, one-sided).
    complexity_tolerance : float
        Within one hypothesis, the fewest ranges / leaves / thresholds whose validation
        agreement is within this of its best variant, without losing a label as above.
    extra_segments : int
        Ranges of one property tried beyond the number of labels (a label may own several).
    pair_candidates : int
        Every pair of properties is screened with two quick trees (a greedy one and one that
        looks a level ahead); this many of the best pairs are then fitted in full.
    pixels : int
        Single pixels tried as properties too (``pixel_rR_cC``, 0 = none): those whose best
        one or two cuts (a threshold or a band of values) agree with most labels of the fit
        rows. They join the named properties in every property family, after them (a named
        property wins a tie), whatever ``properties`` says. At most 20: every pair of
        properties is screened, so the work grows with the square of their number.
    explained_lift : float
        Verdict ``explained`` when ``(agreement - chance) / (1 - chance)`` on the test split
        reaches this (and ``min_z`` holds). With exact evidence a true rule reaches 1; a
        stand-in for a rule outside the explainer's vocabulary (a pixel for a patch) 0.91-0.95
        on the development sets, hence 0.98.
    partial_lift : float
        Verdict ``partly explained`` from this lift (and ``min_z``); below it ``unexplained``.
    min_z : float
        Smallest one-sided binomial z score of the agreement over chance for any verdict
        other than ``unexplained``.
    label_fit : float
        A label's rule is only ``partly explained`` when its precision or recall on the test
        split is under this, whatever the whole verdict.
    reference_fit : float
        ``explained_lift`` and ``label_fit`` both, when the chosen rule uses classes predicted
        by ``--reference``: that network's own errors cap the agreement of a true rule.
    montage_images : int
        Images shown per label in the per-label figures.
    """

    enabled: bool = True
    properties: list[str] | None = None
    validation_share: float = Field(default=0.2, gt=0, lt=0.9)
    simplicity_tolerance: float = Field(default=0.005, ge=0, lt=1)
    simplicity_z: float = Field(default=3.0, ge=0, le=10)
    complexity_tolerance: float = Field(default=0.001, ge=0, lt=1)
    extra_segments: int = Field(default=3, ge=0, le=20)
    pair_candidates: int = Field(default=15, ge=0, le=200)
    pixels: int = Field(default=3, ge=0, le=20)
    explained_lift: float = Field(default=0.98, gt=0, le=1)
    partial_lift: float = Field(default=0.1, gt=0, le=1)
    min_z: float = Field(default=3.0, ge=0)
    label_fit: float = Field(default=0.98, gt=0, le=1)
    reference_fit: float = Field(default=0.9, gt=0, le=1)
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

    split: Split = "test"
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    kmeans: KMeansConfig = Field(default_factory=KMeansConfig)
    dbscan: DBSCANConfig = Field(default_factory=DBSCANConfig)
    hdbscan: HDBSCANConfig = Field(default_factory=HDBSCANConfig)
    agglomerative: AgglomerativeConfig = Field(default_factory=AgglomerativeConfig)
    silhouette_sample: int = Field(default=3000, ge=10)
    images_per_cluster: int = Field(default=10, gt=0)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    seed: Seed = 0
