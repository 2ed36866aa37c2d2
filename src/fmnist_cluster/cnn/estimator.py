"""The scikit-learn estimator (:class:`CNNClassifier`) and prediction with a trained network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from fmnist_cluster.cnn.network import check_architecture, check_images
from fmnist_cluster.cnn.training import Trainer, logits
from fmnist_cluster.config import AugmentConfig, CnnConfig, CnnTrainConfig, LayerSpec
from fmnist_cluster.device import resolve_device, torch_threads


def predict_proba(
    model: nn.Module, x: np.ndarray, batch_size: int = 512, device: str = "cpu", test_flip: bool = False
) -> np.ndarray:
    """Class probabilities (softmax of the network's K outputs) for images.

    Parameters
    ----------
    model : torch.nn.Module
        A network from :func:`~fmnist_cluster.cnn.load_checkpoint` or :attr:`CNNClassifier.network_`.
    x : ndarray of float32, shape (N, 1, 28, 28)
        Images, preprocessed as the training images were.
    batch_size : int
        Images per forward pass.
    device : {'cpu', 'cuda', 'auto'}
        Where to run the forward passes.
    test_flip : bool
        Average the probabilities of each image and its left-right mirror image.

    Returns
    -------
    ndarray of float32, shape (N, K)

    Raises
    ------
    ValueError
        Images of another shape, a batch size below 1 or an unknown device.
    """
    return predict_views(model, x, batch_size, device, test_flip)[1]


def predict_views(
    model: nn.Module, x: np.ndarray, batch_size: int, device: str, test_flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(single-view probabilities, probabilities as ``test_flip`` asks), from one pass per view."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    x = check_images(x)
    dev = resolve_device(device)
    model.to(dev)
    images = torch.from_numpy(np.ascontiguousarray(x))
    single = torch.softmax(logits(model, images, batch_size, dev), dim=1)
    proba = single
    if test_flip:
        proba = 0.5 * (single + torch.softmax(logits(model, images.flip(-1), batch_size, dev), dim=1))
    return single.numpy().astype(np.float32), proba.numpy().astype(np.float32)


def _settings(value: Any, model: type[BaseModel], name: str) -> Any:
    """``value`` (None, a dict or the model itself) as a validated ``model``."""
    if isinstance(value, model):
        return value
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name} must be a {model.__name__}, a dict or None, got {type(value).__name__}")
    try:
        return model.model_validate(value or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(map(str, first["loc"]))
        if first["type"] == "extra_forbidden":
            raise ValueError(f"unknown {name} key '{key}'; valid: {', '.join(model.model_fields)}") from None
        field = model.model_fields.get(str(first["loc"][0]))
        allowed = get_args(field.annotation) if field is not None and first["type"] == "literal_error" else ()
        if allowed:
            raise ValueError(f"unknown {name}.{key} {first['input']!r}; valid: {', '.join(allowed)}") from None
        raise ValueError(f"{name}.{key}: {first['msg']} (got {first['input']!r})") from None


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """A YAML-defined convolutional network trained as a scikit-learn estimator.

    Parameters
    ----------
    architecture : list of LayerSpec or dict, optional
        The layers; default the architecture of :class:`~fmnist_cluster.config.CnnConfig`.
        The last layer needs ``units: classes``.
    train : CnnTrainConfig or dict, optional
        Optimiser, schedule, batch size, epochs, validation split, early stopping, precision
        (see :class:`~fmnist_cluster.config.CnnTrainConfig` for the keys and allowed values).
    augment : AugmentConfig or dict, optional
        Training-time augmentation and ``test_flip``.
    device : {'auto', 'cpu', 'cuda'}
        Where to train and predict.
    threads : int or None
        torch CPU threads while fitting and predicting (None: torch's default).
    random_state : int
        Seeds weights, validation split, shuffling, augmentation and dropout. On the CPU, the
        same seed, data and thread count give identical weights.

    Attributes
    ----------
    classes_ : ndarray, shape (K,)
        The labels seen in ``fit``, sorted; the network's output ``i`` is ``classes_[i]``.
    n_classes_ : int
        K.
    network_ : Network
        The trained network (in eval mode, on the training device).
    precision_ : {'fp32', 'bf16'}
        Arithmetic the training forward passes used (``train.precision`` resolved).
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``,
        ``seconds``, ``images_per_s``.
    best_epoch_ : int
        1-based epoch whose weights were kept.
    n_epochs_ : int
        Epochs trained (fewer than asked after early stopping).
    train_images_per_s_ : float
        Training throughput over all epochs (augmentation, forward, backward, step).
    """

    def __init__(
        self,
        *,
        architecture: Sequence[LayerSpec | dict[str, Any]] | None = None,
        train: CnnTrainConfig | dict[str, Any] | None = None,
        augment: AugmentConfig | dict[str, Any] | None = None,
        device: str = "auto",
        threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.architecture = architecture
        self.train = train
        self.augment = augment
        self.device = device
        self.threads = threads
        self.random_state = random_state

    def _check_params(self) -> tuple[list[LayerSpec], CnnTrainConfig, AugmentConfig]:
        arch = CnnConfig().architecture if self.architecture is None else check_architecture(self.architecture)
        train = _settings(self.train, CnnTrainConfig, "train")
        augment = _settings(self.augment, AugmentConfig, "augment")
        if self.threads is not None:
            _check_int("threads", self.threads, minimum=1)
        _check_int("random_state", self.random_state, minimum=0)
        resolve_device(self.device)
        return arch, train, augment

    def fit(self, X: np.ndarray, y: np.ndarray) -> CNNClassifier:
        """Train a new network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : ndarray of float32, shape (N, 1, 28, 28)
            Images.
        y : ndarray, shape (N,)
            Labels, at least two different ones.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            A bad hyperparameter, images of another shape or labels that do not match them.
        """
        arch, train, augment = self._check_params()
        X = check_images(X, "training images")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"labels have shape {y.shape}; expected {len(X)} labels, one per image")
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.n_classes_ = len(self.classes_)
        run = Trainer().train(
            X,
            codes.astype(np.int64),
            n_classes=self.n_classes_,
            architecture=arch,
            train=train,
            augment=augment,
            device=self.device,
            threads=self.threads,
            seed=int(self.random_state),
        )
        self.network_ = run.network
        self.precision_ = run.precision
        self.history_ = run.history
        self.best_epoch_ = run.best_epoch
        self.n_epochs_ = len(run.history)
        self.train_images_per_s_ = run.train_images_per_s
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (N, K), columns in the order of ``classes_``; with
        ``augment.test_flip`` each image's are averaged with its mirror image's."""
        check_is_fitted(self, "network_")
        _, train, augment = self._check_params()
        with torch_threads(self.threads):
            return predict_proba(self.network_, X, train.eval_batch_size, self.device, augment.test_flip)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable label of each image, shape (N,)."""
        best = self.predict_proba(X).argmax(1)  # checks that the network is fitted first
        return self.classes_[best]
