"""Self-organising maps: a batch engine in torch, a MiniSom wrapper, map metrics and the
``train-som`` stage.

Modules, one concept each:

* :mod:`~fmnist_cluster.som.grid` -- :class:`SomGrid` (neuron positions and neighbours), the
  chunked winner search and the quantisation and topographic errors;
* :mod:`~fmnist_cluster.som.base`, :mod:`~fmnist_cluster.som.batch`,
  :mod:`~fmnist_cluster.som.minisom_engine` -- the engines :class:`BatchSOM` (Kohonen's batch
  map in torch) and :class:`MiniSomEngine` (MiniSom behind the same interface), scikit-learn
  estimators;
* :mod:`~fmnist_cluster.som.analysis` -- hits, U-matrix, outlier neurons, neuron labels;
* :mod:`~fmnist_cluster.som.trainer` -- the stage's trainer: progress, per-epoch checkpoints,
  resume;
* :mod:`~fmnist_cluster.som.stage` -- the ``train-som`` stage.
"""

from fmnist_cluster.som.analysis import (
    analyse,
    hit_map,
    majority_accuracy,
    neuron_classes,
    neuron_labels,
    outlier_neurons,
    u_matrix,
)
from fmnist_cluster.som.base import INITS, SomEstimator, Step
from fmnist_cluster.som.batch import BatchSOM
from fmnist_cluster.som.grid import (
    BATCH_NEIGHBOURHOODS,
    SCHEDULES,
    TOPOLOGIES,
    SomGrid,
    best_units,
    epoch_metrics,
    flush_subnormal,
    neighbourhood,
    quantization_error,
    sigma_schedule,
    topographic_error,
    two_smallest,
)
from fmnist_cluster.som.minisom_engine import (
    LR_DECAYS,
    MINISOM_NEIGHBOURHOODS,
    ORDERS,
    SIGMA_DECAYS,
    MiniSomEngine,
)
from fmnist_cluster.som.stage import SomWarning, flatten, make_engine, run_train_som
from fmnist_cluster.som.trainer import CHECKPOINT, train

__all__ = [
    "BATCH_NEIGHBOURHOODS",
    "CHECKPOINT",
    "INITS",
    "LR_DECAYS",
    "MINISOM_NEIGHBOURHOODS",
    "ORDERS",
    "SCHEDULES",
    "SIGMA_DECAYS",
    "TOPOLOGIES",
    "BatchSOM",
    "MiniSomEngine",
    "SomEstimator",
    "SomGrid",
    "SomWarning",
    "Step",
    "analyse",
    "best_units",
    "epoch_metrics",
    "flatten",
    "flush_subnormal",
    "hit_map",
    "majority_accuracy",
    "make_engine",
    "neighbourhood",
    "neuron_classes",
    "neuron_labels",
    "outlier_neurons",
    "quantization_error",
    "run_train_som",
    "sigma_schedule",
    "topographic_error",
    "train",
    "two_smallest",
    "u_matrix",
]
