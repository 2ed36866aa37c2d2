"""Convolutional networks defined in YAML: build, train, checkpoint, predict.

- :mod:`~fmnist_cluster.cnn.network`: :class:`Network`, built from named layer specs.
- :mod:`~fmnist_cluster.cnn.training`: :class:`Trainer` (the loop, augmentation, schedule,
  precision), with optional progress and resumable state.
- :mod:`~fmnist_cluster.cnn.checkpoint`: ``model.pt`` and ``train-state.pt``.
- :mod:`~fmnist_cluster.cnn.estimator`: :class:`CNNClassifier` (scikit-learn's contract) and
  :func:`predict_proba`.
- :mod:`~fmnist_cluster.cnn.stage`: :func:`run_train_cnn`, the ``train-cnn`` stage.

:func:`load_checkpoint` and :func:`predict_proba` are the entry points for other stages.
"""

from fmnist_cluster.cnn.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    MODEL_FILE,
    STATE_FILE,
    checkpoint_bytes,
    load_checkpoint,
)
from fmnist_cluster.cnn.estimator import CNNClassifier, predict_proba
from fmnist_cluster.cnn.network import INPUT_SHAPE, Network, describe_layers, fold_batchnorm, n_parameters
from fmnist_cluster.cnn.stage import CnnWarning, run_train_cnn
from fmnist_cluster.cnn.training import (
    PRECISIONS,
    Trainer,
    TrainingRun,
    augment_batch,
    bf16_supported,
    make_scheduler,
    resolve_precision,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "INPUT_SHAPE",
    "MODEL_FILE",
    "PRECISIONS",
    "STATE_FILE",
    "CNNClassifier",
    "CnnWarning",
    "Network",
    "Trainer",
    "TrainingRun",
    "augment_batch",
    "bf16_supported",
    "checkpoint_bytes",
    "describe_layers",
    "fold_batchnorm",
    "load_checkpoint",
    "make_scheduler",
    "n_parameters",
    "predict_proba",
    "resolve_precision",
    "run_train_cnn",
]
