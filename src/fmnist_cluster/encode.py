"""Encodings: the output of one named layer of a trained network, for every image.

:func:`encode_images` registers a forward hook on the chosen layer of a network from
:func:`fmnist_cluster.cnn.load_checkpoint`, runs the images through in batches and keeps the
hooked output flattened to (N, D) float32; the layers after it are skipped, since nothing
downstream of the hook is needed. :func:`run_encode` is the ``encode`` stage: it writes
``data.npz`` in the same format as ``preprocess`` (features in place of pixels, the labels,
the class names and the layer name), so ``cluster``, ``embed`` and ``train-som`` read it with
:func:`fmnist_cluster.data.load_dataset`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun
from fmnist_cluster.cnn import (
    MODEL_FILE,
    describe_layers,
    fold_batchnorm,
    load_checkpoint,
)
from fmnist_cluster.config import EncodeConfig
from fmnist_cluster.data import DATA_FILE, Dataset, load_dataset
from fmnist_cluster.device import resolve_device, torch_threads
from fmnist_cluster.errors import FmnistError, user_errors


class _Captured(Exception):
    """Raised by the hook to end the forward pass once the layer's output is in hand."""


def _check_layer(model: nn.Module, layer: str) -> nn.Module:
    names = [name for name, _ in model.named_children()]
    if layer not in names:
        raise FmnistError(f"unknown layer '{layer}'; valid: {', '.join(names)} (see encode --list-layers)")
    return model.get_submodule(layer)


def encode_images(
    model: nn.Module,
    x: np.ndarray,
    layer: str,
    batch_size: int = 1000,
    device: str = "cpu",
    progress: Progress = NULL_PROGRESS,
    description: str = "encode",
) -> np.ndarray:
    """The flattened output of the named ``layer`` for each image.

    Parameters
    ----------
    model : torch.nn.Module
        A network whose named children are its layers (from :func:`load_checkpoint`).
    x : ndarray of float32, shape (N, 1, 28, 28)
        Images.
    layer : str
        Name of the layer to read.
    batch_size : int
        Images per forward pass.
    device : {'cpu', 'cuda', 'auto'}
        Where to run.
    progress : Progress
        Receives one bar advanced per batch.
    description : str
        The bar's label.

    Returns
    -------
    ndarray of float32, shape (N, D)
        D is the size of the layer's output for one image.

    Raises
    ------
    FmnistError
        Unknown layer (the message lists the valid ones) or images of the wrong shape.
    """
    target = _check_layer(model, layer)
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise FmnistError(f"images have shape {x.shape}; encode needs images shaped (N, 1, 28, 28)")
    if batch_size <= 0:
        raise FmnistError(f"batch_size must be > 0, got {batch_size}")
    dev = resolve_device(device)
    model.to(dev).eval()
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        captured.append(output.detach().flatten(1).float().cpu())
        raise _Captured

    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    chunks: list[np.ndarray] = []
    task = progress.task(description, total=len(x))
    handle = target.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                batch = data[start : start + batch_size].to(dev)
                try:
                    model(batch)
                except _Captured:
                    pass
                chunks.append(captured.pop().numpy())
                task.advance(len(batch))
    finally:
        handle.remove()
        task.close()
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def list_layers(model_dir: Path | str) -> tuple[list[dict[str, Any]], str]:
    """The named layers of the network saved in ``model_dir`` and the default encoding layer.

    Returns
    -------
    (list of dict, str)
        One row per layer (``name``, ``type``, ``shape``, ``size``) and the default layer name.
    """
    model, info = load_checkpoint(model_dir)
    return describe_layers(model), info["default_layer"]


def run_encode(
    config: EncodeConfig,
    model_dir: Path | str,
    data_dir: Path | str,
    out_dir: Path | str,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:
    """The ``encode`` stage: features of one layer for the train and test images.

    Parameters
    ----------
    config : EncodeConfig
        Validated stage config.
    model_dir : path
        Output folder of ``train-cnn``.
    data_dir : path
        Output folder of ``preprocess`` whose images are encoded (prepared as for training).
    out_dir : path
        Output folder: ``data.npz`` (x_train, x_test float32 (N, D), the labels, class
        names and ``layer``), ``metrics.json`` and ``manifest.json``.
    progress : Progress
        Progress reporter.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``, and the run's ``seconds`` and ``images_per_s``
        (in the manifest's ``timings``: a run's durations are not part of its outputs).

    Raises
    ------
    FmnistError
        Missing or damaged checkpoint, unknown layer, a data folder that holds features
        rather than images, or labels that do not fit the model's K.
    """
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    model, info = load_checkpoint(model_dir)
    layer = config.layer if config.layer is not None else info["default_layer"]
    _check_layer(model, layer)
    dataset, digest = load_dataset(data_dir)
    data_path = data_dir / DATA_FILE
    if not dataset.is_image:
        raise FmnistError(
            f"{data_path} holds features shaped {dataset.x_train.shape}, not images; "
            "pass the output folder of `fmnist-cluster preprocess` to --input"
        )
    k_model, k_data = info["n_classes"], dataset.n_classes
    if k_data and k_data != k_model:
        raise FmnistError(
            f"the model in {model_dir} was trained for K={k_model} labels but {data_path} has K={k_data}; "
            "encode the data the model was trained on, or retrain it on this data"
        )
    with user_errors("device"):
        resolve_device(config.device)
    with StageRun("encode", Path(out_dir), {**config.model_dump(mode="json"), "layer": layer}) as run:
        run.add_input(model_dir / MODEL_FILE)
        run.add_input(data_path, digest)
        with torch_threads(config.threads):
            tick = time.perf_counter()
            model = fold_batchnorm(model)
            with run.timer("encode"):
                x_train = encode_images(
                    model, dataset.x_train, layer, config.batch_size, config.device, progress, "encode train"
                )
                x_test = encode_images(
                    model, dataset.x_test, layer, config.batch_size, config.device, progress, "encode test"
                )
            seconds = time.perf_counter() - tick
        if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
            raise FmnistError(
                f"layer '{layer}' of the model in {model_dir} gives NaN or infinite features for these images; "
                "check that --input is prepared like the training images, or retrain the model"
            )
        n = len(x_train) + len(x_test)
        encoded = Dataset(x_train, dataset.y_train, x_test, dataset.y_test, dataset.class_names, layer=layer)
        metrics = {
            "layer": layer,
            "dim": int(x_train.shape[1]),
            "n_train": len(x_train),
            "n_test": len(x_test),
            "n_classes": k_model,
            "device": str(resolve_device(config.device)),
            "zero_share": float(np.mean(x_train == 0)) if x_train.size else 0.0,
        }
        with run.timer("write"):
            run.save_npz(DATA_FILE, **encoded.to_arrays())
            run.save_json("metrics.json", metrics)
        speeds = {"seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1) if seconds > 0 else None}
        run.measured(**speeds)
        run.commit()
    return {**metrics, **speeds}
