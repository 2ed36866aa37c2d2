"""Configuration of the ``train-cnn`` and ``encode`` stages: the network as named layers, its
training and augmentation, and the layer ``encode`` takes."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_serializer, model_validator

from fmnist_cluster.config.base import MAX_EPOCHS, Seed, StrictModel, Threads
from fmnist_cluster.device import Device

LayerType = Literal["conv", "pool", "global_pool", "dense", "dropout", "batchnorm", "activation", "flatten"]
LAYER_TYPES: tuple[str, ...] = get_args(LayerType)
Activation = Literal["none", "relu", "leaky_relu", "elu", "gelu", "silu", "tanh"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
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
    type: LayerType
    filters: int | None = Field(default=None, gt=0)
    kernel: int = Field(default=3, gt=0)
    stride: int = Field(default=1, gt=0)
    padding: int = Field(default=1, ge=0)
    units: int | Literal["classes"] | None = None
    bias: bool = True
    batchnorm: bool = False
    activation: Activation = "none"
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
    precision: Precision = "auto"


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
    threads: Threads | None = None
    seed: Seed = 0

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
    threads: Threads | None = None
