"""Convolutional networks defined in YAML: build, train, checkpoint, predict.

A network is a list of named layers (:class:`~fmnist_cluster.config.LayerSpec`) built into a
:class:`Network`, a :class:`torch.nn.Sequential` whose children carry the layer names, so
``encode`` can hook any of them. The last layer is a dense layer with ``units: classes``:
K outputs, the logits of a softmax (the softmax lives in the loss and in :func:`predict_proba`).

:class:`CNNClassifier` trains a network with the scikit-learn estimator contract. Training
keeps all images in memory as tensors and runs a plain loop (no loader processes), holds out
a seeded, stratified validation split, saves its full state after every epoch atomically so
a killed run resumes where it stopped, keeps the best epoch's weights and can stop early.

:func:`run_train_cnn` is the ``train-cnn`` stage: it writes ``model.pt`` (weights, the
architecture, K and the class names, so it loads without the YAML), ``metrics.json``,
``predictions.npz`` and the figures. :func:`load_checkpoint` and :func:`predict_proba` are the
public entry points for other stages.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import pickle
import time
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

from fmnist_cluster.artefacts import (
    NULL_PROGRESS,
    Progress,
    StageRun,
    array_digest,
    atomic_write_bytes,
    keep_freed_memory,
    require_file,
)
from fmnist_cluster.config import AugmentConfig, CnnConfig, CnnTrainConfig, LayerSpec
from fmnist_cluster.data import DATA_FILE, Dataset, label_names, load_dataset, stratified_indices
from fmnist_cluster.device import resolve_device, torch_threads
from fmnist_cluster.errors import FmnistError, FmnistWarning, user_errors

MODEL_FILE = "model.pt"
STATE_FILE = "train-state.pt"
CHECKPOINT_FORMAT = "fmnist-cluster-cnn"
CHECKPOINT_VERSION = 1
PRODUCER = "fmnist-cluster train-cnn"
INPUT_SHAPE = (1, 28, 28)
PRECISIONS = ("auto", "fp32", "bf16")
_MONTAGE_MAX = 40


class CnnWarning(FmnistWarning):
    """A training result the user should look at (shown in yellow by the CLI)."""


# --------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (CPU: AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto``, ``fp32`` or ``bf16`` into the precision training uses on ``device``."""
    if precision not in PRECISIONS:
        raise FmnistError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


# --------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------


def _activation(name: str, negative_slope: float) -> nn.Module | None:
    if name == "none":
        return None
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    return {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}[name]()


def _block(parts: Sequence[nn.Module | None]) -> nn.Module:
    kept = [p for p in parts if p is not None]
    return kept[0] if len(kept) == 1 else nn.Sequential(*kept)


def _make_layer(spec: LayerSpec, shape: tuple[int, ...], n_classes: int) -> nn.Module:
    kind = spec.type
    if (
        kind in ("conv", "pool", "global_pool", "batchnorm")
        and len(shape) != 3
        and not (kind == "batchnorm" and len(shape) == 1)
    ):
        raise FmnistError(
            f"layer '{spec.name}' ({kind}) needs image-shaped input (C, H, W) but gets {shape}; "
            "move it before 'flatten'"
        )
    if kind == "conv":
        conv = nn.Conv2d(shape[0], spec.filters, spec.kernel, spec.stride, spec.padding, bias=spec.bias)
        norm = nn.BatchNorm2d(spec.filters) if spec.batchnorm else None
        return _block([conv, norm, _activation(spec.activation, spec.negative_slope)])
    if kind == "dense":
        if len(shape) != 1:
            raise FmnistError(
                f"dense layer '{spec.name}' needs a flat input but gets {shape}; add a flatten layer before it"
            )
        units = n_classes if spec.units == "classes" else int(spec.units)
        linear = nn.Linear(shape[0], units, bias=spec.bias)
        norm = nn.BatchNorm1d(units) if spec.batchnorm else None
        return _block([linear, norm, _activation(spec.activation, spec.negative_slope)])
    if kind == "pool":
        if spec.size > min(shape[1:]):
            raise FmnistError(
                f"pool layer '{spec.name}' has size {spec.size} but its input is only {shape[1]}x{shape[2]}; "
                "remove a pool layer or make it smaller"
            )
        return nn.MaxPool2d(spec.size) if spec.mode == "max" else nn.AvgPool2d(spec.size)
    if kind == "global_pool":
        pool = nn.AdaptiveMaxPool2d(1) if spec.mode == "max" else nn.AdaptiveAvgPool2d(1)
        return nn.Sequential(pool, nn.Flatten())
    if kind == "dropout":
        return nn.Dropout(spec.rate)
    if kind == "batchnorm":
        return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
    if kind == "activation":
        return _activation(spec.activation, spec.negative_slope)
    return nn.Flatten()


class Network(nn.Sequential):
    """A :class:`torch.nn.Sequential` of named layers built from layer specs.

    Parameters
    ----------
    architecture : sequence of LayerSpec or dict
        The layers in order.
    n_classes : int
        K, the size of ``units: classes`` dense layers.
    input_shape : tuple of int
        Shape of one input, (1, 28, 28) for Fashion-MNIST images.

    Attributes
    ----------
    specs : list of LayerSpec
        The validated layer specs.
    shapes : dict of str to tuple
        Output shape of each named layer for one input (without the batch axis).
    n_classes : int
        K.

    Raises
    ------
    FmnistError
        A layer that does not fit its input (dense on images, conv after flatten, pooling
        below 1 pixel) or an output that is not K values.
    """

    def __init__(
        self,
        architecture: Sequence[LayerSpec | dict[str, Any]],
        n_classes: int,
        input_shape: tuple[int, ...] = INPUT_SHAPE,
    ) -> None:
        specs = _check_architecture(architecture)
        if n_classes < 2:
            raise FmnistError(f"the data has {n_classes} label(s); a classifier needs at least 2")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        shapes: dict[str, tuple[int, ...]] = {}
        shape = tuple(int(s) for s in input_shape)
        probe = torch.zeros((2, *shape))
        for spec in specs:
            layer = _make_layer(spec, shape, n_classes)
            layer.eval()
            try:
                with torch.no_grad():
                    probe = layer(probe)
            except RuntimeError as exc:  # e.g. a kernel or pool window larger than its input
                detail = str(exc).strip().splitlines()
                raise FmnistError(
                    f"layer '{spec.name}' ({spec.type}) cannot take an input of shape {shape} "
                    f"({detail[0] if detail else 'no detail'}); use a smaller kernel/size or fewer layers before it"
                ) from None
            shape = tuple(int(s) for s in probe.shape[1:])
            if min(shape) < 1:
                raise FmnistError(
                    f"layer '{spec.name}' ({spec.type}) shrinks its input to {shape}; use fewer or smaller layers"
                )
            layers[spec.name] = layer
            shapes[spec.name] = shape
        if shape != (n_classes,):
            raise FmnistError(
                f"the network outputs {shape} but the data has K={n_classes} labels; "
                "end the architecture with a dense layer with units: classes"
            )
        super().__init__(layers)
        self.specs = specs
        self.shapes = shapes
        self.n_classes = n_classes
        self.input_shape = tuple(int(s) for s in input_shape)

    def layer_names(self) -> list[str]:
        """The layer names in order."""
        return [spec.name for spec in self.specs]

    def default_layer(self) -> str:
        """The encoding layer used by default: the last dense layer before the output layer, or
        else the layer just before the output layer."""
        names = self.layer_names()
        dense = [s.name for s in self.specs if s.type == "dense"]
        if len(dense) >= 2:
            return dense[-2]
        if len(names) >= 2:
            return names[-2]
        return names[-1]


def _check_architecture(architecture: Sequence[LayerSpec | dict[str, Any]]) -> list[LayerSpec]:
    if not architecture:
        raise FmnistError("the architecture has no layers; list at least one dense layer with units: classes")
    specs: list[LayerSpec] = []
    for i, item in enumerate(architecture):
        try:
            spec = item if isinstance(item, LayerSpec) else LayerSpec.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise FmnistError(f"architecture layer {i}: {first['msg']}") from None
        specs.append(spec)
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FmnistError(f"layer name(s) {', '.join(dupes)} used twice; each layer needs a unique name")
    return specs


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


# --------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the label-preserving augmentations of ``config`` to a batch (N, 1, H, W).

    Random draws come from ``generator`` only, so a seeded generator repeats them exactly.
    """
    n, _, h, w = x.shape
    if config.flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    if config.shift > 0:
        s = config.shift
        padded = F.pad(x, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]
        x = padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    if config.erase > 0:
        apply = torch.rand(n, generator=generator) < config.erase
        eh = torch.randint(h // 7, h // 2 + 1, (n,), generator=generator)
        ew = torch.randint(w // 7, w // 2 + 1, (n,), generator=generator)
        y0 = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
        x0 = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
        ys, xs = torch.arange(h), torch.arange(w)
        in_y = (ys[None, :] >= y0[:, None]) & (ys[None, :] < (y0 + eh)[:, None])
        in_x = (xs[None, :] >= x0[:, None]) & (xs[None, :] < (x0 + ew)[:, None])
        mask = in_y[:, :, None] & in_x[:, None, :] & apply[:, None, None]
        x = x.masked_fill(mask[:, None], 0.0)
    return x.contiguous()


# --------------------------------------------------------------------------------------
# optimiser and schedule
# --------------------------------------------------------------------------------------


def _optimizer(params: Any, train: CnnTrainConfig) -> torch.optim.Optimizer:
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=train.lr,
            momentum=train.momentum,
            nesterov=train.nesterov and train.momentum > 0,
            weight_decay=train.weight_decay,
        )
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)


def lr_factor(train: CnnTrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning-rate multiplier of step ``i`` (0-based) under ``train.schedule``."""
    total = max(1, train.epochs * steps_per_epoch)
    if train.schedule == "constant":
        return lambda i: 1.0
    if train.schedule == "cosine":
        return lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, total) / total))
    if train.schedule == "step":
        return lambda i: 0.1 ** ((i >= 0.5 * total) + (i >= 0.75 * total))
    warm = max(1, round(train.warmup * total))

    def onecycle(i: int) -> float:
        if i < warm:
            return 0.04 + 0.96 * i / warm
        t = min(1.0, (i - warm) / max(1, total - warm))
        return 1e-3 + (1.0 - 1e-3) * 0.5 * (1.0 + math.cos(math.pi * t))

    return onecycle


# --------------------------------------------------------------------------------------
# evaluation helpers
# --------------------------------------------------------------------------------------


def _check_images(x: np.ndarray, what: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != INPUT_SHAPE:
        raise FmnistError(f"{what} has shape {x.shape}; the network needs images shaped (N, 1, 28, 28)")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outs.append(model(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros((0, 0))


def predict_proba(
    model: nn.Module, x: np.ndarray, batch_size: int = 512, device: str = "cpu", test_flip: bool = False
) -> np.ndarray:
    """Class probabilities (softmax of the network's K outputs) for images.

    Parameters
    ----------
    model : torch.nn.Module
        A network from :func:`load_checkpoint` or :attr:`CNNClassifier.network_`.
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
    """
    return _predict_views(model, x, batch_size, device, test_flip)[1]


def _predict_views(
    model: nn.Module, x: np.ndarray, batch_size: int, device: str, test_flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(single-view probabilities, probabilities as ``test_flip`` asks), from one pass per view."""
    if batch_size <= 0:
        raise FmnistError(f"batch_size must be > 0, got {batch_size}")
    x = _check_images(x)
    dev = resolve_device(device)
    model.to(dev)
    images = torch.from_numpy(np.ascontiguousarray(x))
    single = torch.softmax(_logits(model, images, batch_size, dev), dim=1)
    proba = single
    if test_flip:
        proba = 0.5 * (single + torch.softmax(_logits(model, images.flip(-1), batch_size, dev), dim=1))
    return single.numpy().astype(np.float32), proba.numpy().astype(np.float32)


def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, float]:
    logits = _logits(model, x, batch_size, device)
    loss = float(F.cross_entropy(logits, y, reduction="mean"))
    acc = int((logits.argmax(1) == y).sum()) / max(1, len(y))
    return loss, acc


# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------


class CNNClassifier:
    """A YAML-defined convolutional network trained as a scikit-learn style estimator.

    Parameters
    ----------
    architecture : list of LayerSpec or dict, optional
        The layers; default the architecture of :class:`~fmnist_cluster.config.CnnConfig`.
    train : CnnTrainConfig or dict, optional
        Optimiser, schedule, batch size, epochs, validation split, early stopping.
    augment : AugmentConfig or dict, optional
        Training-time augmentation.
    device : {'auto', 'cpu', 'cuda'}
        Where to train.
    threads : int or None
        torch CPU threads while fitting and predicting (None: torch's default).
    random_state : int
        Seeds weights, validation split, shuffling, augmentation and dropout. On the CPU, the
        same seed, data and thread count give identical weights.

    Attributes
    ----------
    network_ : Network
        The trained network (in eval mode, on the training device).
    n_classes_ : int
        K.
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
    resumed_from_ : int
        Epochs taken from a saved training state (0 for a fresh run).
    """

    def __init__(
        self,
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

    # -- parameters -----------------------------------------------------------------------
    def _check_params(self) -> tuple[list[LayerSpec], CnnTrainConfig, AugmentConfig]:
        defaults = CnnConfig()
        arch = defaults.architecture if self.architecture is None else _check_architecture(self.architecture)
        try:
            train = (
                self.train
                if isinstance(self.train, CnnTrainConfig)
                else CnnTrainConfig.model_validate(self.train or {})
            )
            augment = (
                self.augment
                if isinstance(self.augment, AugmentConfig)
                else AugmentConfig.model_validate(self.augment or {})
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise FmnistError(f"training setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if self.threads is not None and self.threads <= 0:
            raise FmnistError(f"threads must be > 0 or None, got {self.threads}")
        resolve_device(self.device)
        return arch, train, augment

    def _fingerprint(self, arch: list[LayerSpec], train: CnnTrainConfig, augment: AugmentConfig, k: int) -> dict:
        return {
            "architecture": [s.model_dump(mode="json") for s in arch],
            "train": train.model_dump(mode="json"),
            "augment": augment.model_dump(mode="json"),
            "random_state": int(self.random_state),
            "n_classes": int(k),
        }

    # -- fitting --------------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        n_classes: int | None = None,
        progress: Progress = NULL_PROGRESS,
        state_path: Path | str | None = None,
        resume: bool = False,
    ) -> CNNClassifier:
        """Train on images ``x`` (N, 1, 28, 28) with labels ``y`` in 0..K-1.

        Parameters
        ----------
        x : ndarray of float32, shape (N, 1, 28, 28)
        y : ndarray of int, shape (N,)
        n_classes : int or None
            K; default ``y.max() + 1``.
        progress : Progress
            Receives one bar over all training steps, with the last epoch's metrics.
        state_path : path or None
            Where to save the full training state after each epoch (atomically), for resuming.
        resume : bool
            Continue from the state in ``state_path`` (which must come from the same settings
            and data size).

        Returns
        -------
        self
        """
        arch, train, augment = self._check_params()
        x = _check_images(x, "training images")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise FmnistError(f"labels have shape {y.shape} and dtype {y.dtype}; expected {len(x)} integer labels")
        if len(y) == 0 or y.min() < 0:
            raise FmnistError("labels must be integers >= 0 and there must be at least one image")
        k = int(n_classes) if n_classes is not None else int(y.max()) + 1
        if y.max() >= k:
            raise FmnistError(f"labels go up to {int(y.max())} but n_classes is {k}")
        device = resolve_device(self.device)
        precision = resolve_precision(train.precision, device)
        seed = int(self.random_state)
        fingerprint = self._fingerprint(arch, train, augment, k)
        fingerprint["n_images"] = len(y)
        fingerprint["data_sha256"] = array_digest(x, y) if state_path is not None else None
        fingerprint["precision"] = precision
        layout = torch.channels_last if precision == "bf16" else torch.contiguous_format
        keep_freed_memory()

        with torch_threads(self.threads):
            torch.manual_seed(seed)
            net = Network(arch, k).to(device, memory_format=layout)
            train_idx, val_idx = _split(y, train.val_fraction, seed)
            x_all = torch.from_numpy(np.ascontiguousarray(x))
            y_all = torch.from_numpy(y.astype(np.int64))
            x_tr, y_tr = x_all[train_idx], y_all[train_idx]
            x_va, y_va = (x_all[val_idx], y_all[val_idx]) if len(val_idx) else (None, None)
            bs = min(train.batch_size, len(x_tr))
            n_steps = len(x_tr) // bs + (1 if len(x_tr) % bs > 1 else 0)
            opt = _optimizer(net.parameters(), train)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(train, n_steps))
            loss_fn = nn.CrossEntropyLoss(label_smoothing=train.label_smoothing)

            history: list[dict[str, float]] = []
            best = {"acc": -1.0, "epoch": 0, "state": None}
            start_epoch = 0
            train_seconds, trained = 0.0, 0
            if resume:
                if state_path is None:
                    raise FmnistError("resume needs a state_path to read the training state from")
                state = _read_state(Path(state_path), fingerprint)
                net.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                history = list(state["history"])
                best = {
                    "acc": float(state["best_acc"]),
                    "epoch": int(state["best_epoch"]),
                    "state": state["best_model"],
                }
                start_epoch = int(state["epoch"])
                train_seconds, trained = float(state["train_seconds"]), int(state["trained"])
            self.resumed_from_ = start_epoch

            bar = progress.task("train-cnn", total=train.epochs * n_steps)
            if start_epoch:
                bar.advance(start_epoch * n_steps, epoch=start_epoch, **_bar_fields(history[-1]))
            stop = _stopped_early(history, best, train)
            epoch = start_epoch
            while epoch < train.epochs and not stop:
                gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                torch.manual_seed(seed * 1_000_003 + epoch + 500_009)
                net.train()
                perm = torch.randperm(len(x_tr), generator=gen)
                tick = time.perf_counter()
                loss_sum = torch.zeros((), dtype=torch.float64)
                correct = torch.zeros((), dtype=torch.int64)
                seen = 0
                lr = opt.param_groups[0]["lr"]
                for step in range(n_steps):
                    idx = perm[step * bs : (step + 1) * bs]
                    xb, yb = x_tr[idx], y_tr[idx]
                    if augment.flip or augment.shift or augment.erase:
                        xb = augment_batch(xb, augment, gen)
                    xb = xb.to(device, memory_format=layout, non_blocking=True)
                    yb = yb.to(device, non_blocking=True)
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                        out = net(xb)
                    out = out.float()
                    loss = loss_fn(out, yb)
                    loss.backward()
                    opt.step()
                    sched.step()
                    with torch.no_grad():
                        loss_sum += loss.detach().double().cpu() * len(yb)
                        correct += (out.argmax(1) == yb).sum().cpu()
                    seen += len(yb)
                    if (step + 1) % 25 == 0 or step + 1 == n_steps:
                        done = 25 if (step + 1) % 25 == 0 else (step + 1) % 25
                        bar.advance(done, epoch=epoch + 1, loss=float(loss_sum) / seen, acc=float(correct) / seen)
                seconds = time.perf_counter() - tick
                if not math.isfinite(float(loss_sum)) or not all(torch.isfinite(p).all() for p in net.parameters()):
                    raise FmnistError(
                        f"training diverged in epoch {epoch + 1} (the loss or the weights became NaN or infinite) "
                        f"with train.lr={train.lr}; lower train.lr (the previous model, if any, is kept)"
                    )
                train_seconds += seconds
                trained += seen
                record = {
                    "epoch": epoch + 1,
                    "train_loss": float(loss_sum) / seen,
                    "train_acc": int(correct) / seen,
                    "lr": float(lr),
                    "seconds": round(seconds, 3),
                    "images_per_s": round(seen / seconds, 1) if seconds > 0 else None,
                }
                if x_va is not None:
                    record["val_loss"], record["val_acc"] = _evaluate(net, x_va, y_va, train.eval_batch_size, device)
                    score = record["val_acc"]
                else:
                    score = float(epoch)  # no validation: the last epoch is the best
                history.append(record)
                epoch += 1
                if score > best["acc"] or not train.restore_best:
                    best = {"acc": score, "epoch": epoch, "state": _cpu_state(net)}
                if state_path is not None:
                    _write_state(
                        Path(state_path),
                        {
                            "fingerprint": fingerprint,
                            "epoch": epoch,
                            "model": _cpu_state(net),
                            "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(),
                            "history": history,
                            "best_acc": best["acc"],
                            "best_epoch": best["epoch"],
                            "best_model": best["state"],
                            "train_seconds": train_seconds,
                            "trained": trained,
                        },
                    )
                bar.advance(0, epoch=epoch, **_bar_fields(record))
                stop = _stopped_early(history, best, train)
            bar.close()
            if best["state"] is not None:
                net.load_state_dict(best["state"])
            net.eval()
        self.network_ = net.to(memory_format=torch.contiguous_format)
        self.precision_ = precision
        self.n_classes_ = k
        self.history_ = history
        self.best_epoch_ = int(best["epoch"])
        self.n_epochs_ = len(history)
        self.train_images_per_s_ = trained / train_seconds if train_seconds > 0 else float("nan")
        self.n_train_ = len(train_idx)
        self.n_val_ = len(val_idx)
        return self

    # -- prediction -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise FmnistError("this CNNClassifier is not fitted yet; call fit first")

    def predict_proba(self, x: np.ndarray, batch_size: int | None = None, test_flip: bool | None = None) -> np.ndarray:
        """Class probabilities, float32 (N, K); ``test_flip`` None follows ``augment.test_flip``."""
        self._check_fitted()
        _, train, augment = self._check_params()
        flip = augment.test_flip if test_flip is None else bool(test_flip)
        with torch_threads(self.threads):
            return predict_proba(self.network_, x, batch_size or train.eval_batch_size, self.device, flip)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Most probable label of each image, int64 (N,)."""
        return self.predict_proba(x).argmax(1).astype(np.int64)

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on images ``x`` with labels ``y``."""
        return float(np.mean(self.predict(x) == np.asarray(y)))


def _bar_fields(record: dict[str, Any]) -> dict[str, float]:
    fields = {"loss": record["train_loss"], "acc": record["train_acc"]}
    if "val_acc" in record:
        fields.update(val_loss=record["val_loss"], val_acc=record["val_acc"])
    return fields


def _stopped_early(history: list[dict[str, Any]], best: dict[str, Any], train: CnnTrainConfig) -> bool:
    if train.early_stopping is None or not history or "val_acc" not in history[-1]:
        return False
    return len(history) - int(best["epoch"]) >= train.early_stopping


def _split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = round(len(y) * fraction)
    if n_val < 1 or len(y) - n_val < 2:
        return np.arange(len(y)), np.arange(0)
    val = stratified_indices(y, n_val, seed + 7)
    mask = np.ones(len(y), bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def _cpu_state(net: nn.Module) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict(
        (k, v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)) for k, v in net.state_dict().items()
    )


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(path: Path, producer: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError, KeyError) as exc:
        raise FmnistError(
            f"{path} is not a readable checkpoint ({exc.__class__.__name__}); it is truncated or damaged, "
            f"run `{producer}` again"
        ) from None


def _write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, _torch_bytes(state))


def _read_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    if not path.is_file():
        raise FmnistError(f"{path} does not exist, so there is no interrupted run to resume; run without --resume")
    state = _torch_load(path, f"{PRODUCER} (without --resume)")
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise FmnistError(f"{path} is not a train-cnn training state; run without --resume")
    saved = state["fingerprint"]
    for key in fingerprint:
        if saved.get(key) != fingerprint[key] and key == "data_sha256":
            raise FmnistError(
                f"{path} was saved by a run on other data (the training images or labels differ); "
                "resume with the same --input, or run without --resume"
            )
        if saved.get(key) != fingerprint[key]:
            raise FmnistError(
                f"{path} was saved by a run with a different '{key}' (another architecture, K, data or setting); "
                "resume with the same config and data, or run without --resume"
            )
    return state


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_bytes(network: Network, class_names: Sequence[str] | None, test_flip: bool = False) -> bytes:
    """Serialise a trained network with everything needed to rebuild it and predict as in training."""
    return _torch_bytes(
        {
            "test_flip": bool(test_flip),
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "architecture": [s.model_dump(mode="json") for s in network.specs],
            "n_classes": int(network.n_classes),
            "class_names": list(class_names) if class_names is not None else None,
            "input_shape": list(network.input_shape),
            "state_dict": _cpu_state(network),
        }
    )


def load_checkpoint(model_dir: Path | str, option: str = "--model") -> tuple[nn.Module, dict[str, Any]]:
    """Load the network saved by ``train-cnn`` in ``model_dir``.

    Parameters
    ----------
    model_dir : path
        The ``train-cnn`` output folder (holding ``model.pt`` and ``manifest.json``).
    option : str
        The option that names the folder, quoted in errors.

    Returns
    -------
    (Network, dict)
        The network in eval mode on the CPU, and a dict with ``n_classes`` (K),
        ``class_names`` (list or None), ``architecture`` (list of layer dicts),
        ``input_shape``, ``layers`` (name to output shape), ``default_layer`` and ``test_flip``
        (whether its predictions average each image with its mirror image).

    Raises
    ------
    FmnistError
        Missing folder or file, a file changed since training, or one that is not a readable
        checkpoint or whose weights do not fit its architecture.
    """
    path, _ = require_file(model_dir, MODEL_FILE, PRODUCER, stage="train-cnn", option=option)
    return _load_checkpoint_file(path)


def _load_checkpoint_file(path: Path) -> tuple[Network, dict[str, Any]]:
    blob = _torch_load(path, PRODUCER)
    needed = ("format", "architecture", "n_classes", "class_names", "state_dict")
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT or any(k not in blob for k in needed):
        raise FmnistError(f"{path} is not an fmnist-cluster CNN checkpoint; run `{PRODUCER}` to make one")
    if int(blob.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise FmnistError(f"{path} was written by a newer fmnist-cluster (format {blob['format_version']}); upgrade")
    try:
        net = Network(blob["architecture"], int(blob["n_classes"]), tuple(blob.get("input_shape", INPUT_SHAPE)))
    except FmnistError as exc:
        raise FmnistError(f"{path}: its stored architecture is invalid ({exc}); run `{PRODUCER}` again") from None
    try:
        net.load_state_dict(blob["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = str(exc).strip().splitlines()
        raise FmnistError(
            f"{path}: the weights do not fit the architecture stored with them "
            f"({detail[-1].strip() if detail else 'no detail'}); "
            f"the file is from another model or damaged, run `{PRODUCER}` again"
        ) from None
    if not all(torch.isfinite(t).all() for t in net.state_dict().values() if t.is_floating_point()):
        raise FmnistError(
            f"{path} holds NaN or infinite weights (a diverged training); run `{PRODUCER}` again with a lower train.lr"
        )
    net.eval()
    names = blob["class_names"]
    info = {
        "n_classes": int(blob["n_classes"]),
        "class_names": list(names) if names is not None else None,
        "architecture": list(blob["architecture"]),
        "input_shape": tuple(net.input_shape),
        "layers": dict(net.shapes),
        "default_layer": net.default_layer(),
        "test_flip": bool(blob.get("test_flip", False)),
        "path": str(path),
    }
    return net, info


# --------------------------------------------------------------------------------------
# the train-cnn stage
# --------------------------------------------------------------------------------------


def _check_training_data(dataset: Dataset, where: Path) -> None:
    if not dataset.is_image:
        raise FmnistError(
            f"{where} holds features shaped {dataset.x_train.shape}, not images; train-cnn needs the output "
            "folder of `fmnist-cluster preprocess`"
        )
    for split, y in (("train", dataset.y_train), ("test", dataset.y_test)):
        if y is None:
            raise FmnistError(
                f"{where} has no {split} labels; train-cnn needs labelled images (preprocess a source with labels)"
            )
    if dataset.n_classes < 2:
        raise FmnistError(f"{where} has only one label; train-cnn needs at least 2 labels")


def run_train_cnn(
    config: CnnConfig,
    data_dir: Path | str,
    out_dir: Path | str,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
) -> dict[str, Any]:
    """The ``train-cnn`` stage: train the configured network on a ``preprocess`` artefact.

    Writes ``model.pt``, ``metrics.json``, ``predictions.npz`` (test labels, predictions and
    probabilities), ``learning_curves.png``, ``confusion_matrix.png``, ``misclassified.png``
    and ``manifest.json`` into ``out_dir``. While training, ``train-state.pt`` holds the
    state after the last finished epoch; a killed run continues from it with ``resume``.

    Parameters
    ----------
    config : CnnConfig
        Validated stage config.
    data_dir : path
        Output folder of ``preprocess`` (labelled images).
    out_dir : path
        Output folder.
    progress : Progress
        Progress reporter.
    resume : bool
        Continue an interrupted run from ``out_dir/train-state.pt``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from fmnist_cluster import plots

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    dataset, digest = load_dataset(data_dir)
    _check_training_data(dataset, data_dir / DATA_FILE)
    k = dataset.n_classes
    names = label_names(k, dataset.class_names)
    state_path = out_dir / STATE_FILE
    with user_errors("device"):
        resolve_device(config.device)
    with StageRun("train-cnn", out_dir, config.model_dump(mode="json"), seed=config.seed) as run:
        run.add_input(data_dir / DATA_FILE, digest)
        model = CNNClassifier(
            architecture=config.architecture,
            train=config.train,
            augment=config.augment,
            device=config.device,
            threads=config.threads,
            random_state=config.seed,
        )
        with run.timer("train"):
            model.fit(
                dataset.x_train, dataset.y_train, n_classes=k, progress=progress, state_path=state_path, resume=resume
            )
        with run.timer("test"):
            tick = time.perf_counter()
            with torch_threads(config.threads):
                views = (config.train.eval_batch_size, config.device, config.augment.test_flip)
                single, proba = _predict_views(model.network_, dataset.x_test, *views)
            infer_seconds = time.perf_counter() - tick
        y_test = dataset.y_test
        y_pred = proba.argmax(1).astype(np.int64)
        metrics = _test_metrics(y_test, y_pred, proba, names)
        net = model.network_
        metrics.update(
            {
                "n_classes": k,
                "class_names": list(dataset.class_names) if dataset.class_names is not None else None,
                "n_train": int(model.n_train_),
                "n_val": int(model.n_val_),
                "n_parameters": n_parameters(net),
                "epochs_run": int(model.n_epochs_),
                "best_epoch": int(model.best_epoch_),
                "resumed_from_epoch": int(model.resumed_from_),
                "best_val_accuracy": _best_val(model.history_, model.best_epoch_),
                "test_flip": bool(config.augment.test_flip),
                "test_accuracy_single_view": float(np.mean(single.argmax(1) == y_test)) if len(y_test) else None,
                "train_seconds": round(sum(h["seconds"] for h in model.history_), 3),
                "train_images_per_s": round(float(model.train_images_per_s_), 1),
                "inference_images_per_s": round(len(y_test) / infer_seconds, 1) if infer_seconds > 0 else None,
                "device": str(resolve_device(config.device)),
                "precision": model.precision_,
                "threads": torch.get_num_threads() if config.threads is None else config.threads,
                "history": model.history_,
            }
        )
        if metrics["test_accuracy"] < 1.0 / k + 0.05:
            warnings.warn(
                f"test accuracy {metrics['test_accuracy']:.3f} is near chance (1/K = {1 / k:.3f}); "
                "check the learning rate and the number of epochs",
                CnnWarning,
                stacklevel=2,
            )
        with run.timer("write"):
            run.save_bytes(MODEL_FILE, checkpoint_bytes(net, dataset.class_names, config.augment.test_flip))
            run.save_json("metrics.json", metrics)
            run.save_npz("predictions.npz", y_true=y_test, y_pred=y_pred, proba=proba)
            run.save_bytes(
                "learning_curves.png", plots.figure_png(plots.learning_curves(model.history_, model.best_epoch_))
            )
            run.save_bytes(
                "confusion_matrix.png",
                plots.figure_png(plots.confusion_matrix(np.asarray(metrics["confusion_matrix"]), names)),
            )
            wrong = np.flatnonzero(y_pred != y_test)[:_MONTAGE_MAX]
            run.save_bytes(
                "misclassified.png",
                plots.figure_png(
                    plots.misclassified_montage(dataset.x_test[wrong], y_test[wrong], y_pred[wrong], names)
                ),
            )
        run.extra["summary"] = {
            "test_accuracy": metrics["test_accuracy"],
            "epochs_run": metrics["epochs_run"],
            "train_seconds": metrics["train_seconds"],
        }
        run.commit()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path)
    return metrics


def _best_val(history: list[dict[str, Any]], best_epoch: int) -> float | None:
    for record in history:
        if record["epoch"] == best_epoch and "val_acc" in record:
            return float(record["val_acc"])
    return None


def _test_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, names: list[str]) -> dict[str, Any]:
    k = len(names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    eps = np.finfo(np.float64).tiny
    loss = float(-np.mean(np.log(np.maximum(proba[np.arange(len(y_true)), y_true].astype(np.float64), eps))))
    support = cm.sum(1)
    per_class = {
        str(c): {
            "name": names[c],
            "accuracy": float(cm[c, c] / support[c]) if support[c] else None,
            "n": int(support[c]),
        }
        for c in range(k)
    }
    right = int(np.trace(cm))
    return {
        "test_accuracy": right / len(y_true),
        "test_loss": loss,
        "n_test": len(y_true),
        "n_right": right,
        "n_wrong": len(y_true) - right,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """A copy of a network in eval mode with each batch norm folded into the conv or dense
    weights before it (same outputs up to rounding, fewer operations); the named layers stay,
    so hooks on them see the same values."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    folded = copy.deepcopy(network).eval()
    for block in folded.children():
        if not isinstance(block, nn.Sequential) or len(block) < 2:
            continue
        first, second = block[0], block[1]
        if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(first, second)
        elif isinstance(first, nn.Linear) and isinstance(second, nn.BatchNorm1d):
            block[0] = fuse_linear_bn_eval(first, second)
        else:
            continue
        block[1] = nn.Identity()
    return folded


def describe_layers(network: Network) -> list[dict[str, Any]]:
    """One row per named layer: ``name``, ``type``, ``shape`` (one image's output) and ``size``."""
    return [
        {
            "name": spec.name,
            "type": spec.type,
            "shape": tuple(network.shapes[spec.name]),
            "size": int(np.prod(network.shapes[spec.name])),
        }
        for spec in network.specs
    ]
