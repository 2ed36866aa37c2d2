"""Self-organising maps: a batch engine in torch, a MiniSom wrapper, map metrics and the
``train-som`` stage.

Modules, one concept each:

* :mod:`~fmnist_cluster.som.grid` -- :class:`SomGrid` (neuron positions and neighbours), the
  chunked winner search and the quantisation and topographic errors;
* :mod:`~fmnist_cluster.som.base`, :mod:`~fmnist_cluster.som.batch`,
  :mod:`~fmnist_cluster.som.minisom_engine` -- the engines :class:`BatchSOM` (Kohonen's batch
  map in torch) and :class:`MiniSomEngine` (MiniSom behind the same interface);
* :mod:`~fmnist_cluster.som.analysis` -- hits, U-matrix, outlier neurons, neuron labels;
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
from fmnist_cluster.som.base import INITS
from fmnist_cluster.som.batch import BATCH_NEIGHBOURHOODS, SCHEDULES, BatchSOM
from fmnist_cluster.som.grid import (
    TOPOLOGIES,
    SomGrid,
    best_units,
    epoch_metrics,
    quantization_error,
    topographic_error,
)
from fmnist_cluster.som.minisom_engine import (
    LR_DECAYS,
    MINISOM_NEIGHBOURHOODS,
    ORDERS,
    SIGMA_DECAYS,
    MiniSomEngine,
)
from fmnist_cluster.som.stage import CHECKPOINT, SomWarning, flatten, make_engine, run_train_som

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
    "SomGrid",
    "SomWarning",
    "analyse",
    "best_units",
    "epoch_metrics",
    "flatten",
    "hit_map",
    "majority_accuracy",
    "make_engine",
    "neuron_classes",
    "neuron_labels",
    "outlier_neurons",
    "quantization_error",
    "run_train_som",
    "topographic_error",
    "u_matrix",
]
