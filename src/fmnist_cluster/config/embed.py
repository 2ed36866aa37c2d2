"""Configuration of the ``embed`` stage."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from fmnist_cluster.config.base import Seed, Split, StrictModel, Threads

TsneMethod = Literal["fft", "barnes-hut"]
TSNE_METHODS: tuple[str, ...] = get_args(TsneMethod)


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
    method: TsneMethod = "fft"
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
        Minimum distance of points in the embedding, 0..1 (at most UMAP's ``spread``, 1).
    """

    enabled: bool = True
    n_neighbors: int = Field(default=15, gt=1)
    min_dist: float = Field(default=0.1, ge=0, le=1)


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

    split: Split = "test"
    standardize: bool = False
    pca_components: int = Field(default=50, gt=1)
    tsne: TSNEConfig = Field(default_factory=TSNEConfig)
    umap: UMAPConfig = Field(default_factory=UMAPConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    threads: Threads | None = None
    seed: Seed = 0
