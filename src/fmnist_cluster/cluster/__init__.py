"""Clustering: estimators with automatic choices, their scores, and the ``cluster`` stage.

* :mod:`~fmnist_cluster.cluster.estimators` -- :class:`SilhouetteKMeans`,
  :class:`AutoDBSCAN`, :class:`SampledAgglomerative`;
* :mod:`~fmnist_cluster.cluster.metrics` -- ARI, NMI, purity, contingency, silhouette;
* :mod:`~fmnist_cluster.cluster.stage` -- :func:`run_cluster`.

The rows come from :mod:`fmnist_cluster.features`.
"""

from fmnist_cluster.artefacts import figure_name
from fmnist_cluster.cluster.estimators import (
    EPS_RULES,
    LINKAGES,
    AutoDBSCAN,
    SampledAgglomerative,
    SilhouetteKMeans,
    auto_min_samples,
    knee_index,
)
from fmnist_cluster.cluster.metrics import contingency, majority_counts, purity, score_clustering
from fmnist_cluster.cluster.stage import (
    ALGORITHMS,
    LABELS_FILE,
    METRICS_FILE,
    ClusterWarning,
    cluster_all,
    run_cluster,
)
from fmnist_cluster.features import FeatureSet, load_features, reduce_features

__all__ = [
    "ALGORITHMS",
    "EPS_RULES",
    "LABELS_FILE",
    "LINKAGES",
    "METRICS_FILE",
    "AutoDBSCAN",
    "ClusterWarning",
    "FeatureSet",
    "SampledAgglomerative",
    "SilhouetteKMeans",
    "auto_min_samples",
    "cluster_all",
    "contingency",
    "figure_name",
    "knee_index",
    "load_features",
    "majority_counts",
    "purity",
    "reduce_features",
    "run_cluster",
    "score_clustering",
]
