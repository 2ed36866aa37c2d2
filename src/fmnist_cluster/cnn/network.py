"""The network: a :class:`torch.nn.Sequential` of named layers built from YAML layer specs.

A network is a list of named layers (:class:`~fmnist_cluster.config.LayerSpec`) built into a
:class:`Network` whose children carry the layer names, so ``encode`` can hook any of them. The
last layer is a dense layer with ``units: classes``: K outputs, the logits of a softmax (the
softmax lives in the loss and in :func:`~fmnist_cluster.cnn.predict_proba`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from fmnist_cluster.config import LayerSpec, literal_choices

INPUT_SHAPE = (1, 28, 28)


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
        raise ValueError(
            f"layer '{spec.name}' ({kind}) needs image-shaped input (C, H, W) but gets {shape}; "
            "move it before 'flatten'"
        )
    if kind == "conv":
        conv = nn.Conv2d(shape[0], spec.filters, spec.kernel, spec.stride, spec.padding, bias=spec.bias)
        norm = nn.BatchNorm2d(spec.filters) if spec.batchnorm else None
        return _block([conv, norm, _activation(spec.activation, spec.negative_slope)])
    if kind == "dense":
        if len(shape) != 1:
            raise ValueError(
                f"dense layer '{spec.name}' needs a flat input but gets {shape}; add a flatten layer before it"
            )
        units = n_classes if spec.units == "classes" else int(spec.units)
        linear = nn.Linear(shape[0], units, bias=spec.bias)
        norm = nn.BatchNorm1d(units) if spec.batchnorm else None
        return _block([linear, norm, _activation(spec.activation, spec.negative_slope)])
    if kind == "pool":
        if spec.size > min(shape[1:]):
            raise ValueError(
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
    ValueError
        A layer that does not fit its input (dense on images, conv after flatten, pooling
        below 1 pixel) or an output that is not K values.
    """

    def __init__(
        self,
        architecture: Sequence[LayerSpec | dict[str, Any]],
        n_classes: int,
        input_shape: tuple[int, ...] = INPUT_SHAPE,
    ) -> None:
        specs = check_architecture(architecture)
        if n_classes < 2:
            raise ValueError(f"the data has {n_classes} label(s); a classifier needs at least 2")
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
                raise ValueError(
                    f"layer '{spec.name}' ({spec.type}) cannot take an input of shape {shape} "
                    f"({detail[0] if detail else 'no detail'}); use a smaller kernel/size or fewer layers before it"
                ) from None
            shape = tuple(int(s) for s in probe.shape[1:])
            if min(shape) < 1:
                raise ValueError(
                    f"layer '{spec.name}' ({spec.type}) shrinks its input to {shape}; use fewer or smaller layers"
                )
            layers[spec.name] = layer
            shapes[spec.name] = shape
        if shape != (n_classes,):
            raise ValueError(
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


def check_architecture(architecture: Sequence[LayerSpec | dict[str, Any]]) -> list[LayerSpec]:
    """The layer specs of ``architecture`` validated; ValueError for a bad layer or a repeated name."""
    if not architecture:
        raise ValueError("the architecture has no layers; list at least one dense layer with units: classes")
    specs: list[LayerSpec] = []
    for i, item in enumerate(architecture):
        try:
            spec = item if isinstance(item, LayerSpec) else LayerSpec.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "literal_error":
                key, valid = ".".join(map(str, first["loc"])), ", ".join(literal_choices(first))
                got = first["input"]
                raise ValueError(f"unknown {key} {got!r} in architecture layer {i}; valid: {valid}") from None
            raise ValueError(f"architecture layer {i}: {first['msg']}") from None
        specs.append(spec)
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"layer name(s) {', '.join(dupes)} used twice; each layer needs a unique name")
    return specs


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


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


def check_images(x: Any, what: str = "x") -> np.ndarray:
    """``x`` as a float32 array of images shaped (N, 1, 28, 28); ValueError for another shape or
    for NaN or infinite values."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"{what} has shape {x.shape}; the network needs images shaped (N, 1, 28, 28)")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or infinite values; the network needs finite images")
    return x
