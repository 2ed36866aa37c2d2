"""Checkpoints: ``model.pt`` (a trained network with everything needed to rebuild it) and
``train-state.pt`` (the full training state after an epoch, for resuming), both read with
``weights_only=True`` (no pickle) and written atomically."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmnist_cluster.artefacts import atomic_write_bytes, read_checked
from fmnist_cluster.cnn.network import INPUT_SHAPE, Network
from fmnist_cluster.data.dataset import MAX_LABEL
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.params import is_int

MODEL_FILE = "model.pt"
STATE_FILE = "train-state.pt"
CHECKPOINT_FORMAT = "fmnist-cluster-cnn"
CHECKPOINT_VERSION = 1
PRODUCER = "fmnist-cluster train-cnn"


def cpu_state(net: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """A contiguous copy of the network's weights on the CPU."""
    return OrderedDict(
        (k, v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)) for k, v in net.state_dict().items()
    )


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(path: Path, producer: str, content: bytes | None = None) -> Any:
    """A checkpoint read with ``weights_only`` (no pickled code), from ``content`` (its bytes,
    already read and checked) when given, else from ``path``."""
    try:
        return torch.load(path if content is None else io.BytesIO(content), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError, KeyError) as exc:
        raise FmnistError(
            f"{path} is not a readable checkpoint ({exc.__class__.__name__}); it is truncated or damaged, "
            f"run `{producer}` again"
        ) from None


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Save a training state atomically (a killed run leaves the previous one)."""
    atomic_write_bytes(path, _torch_bytes(state))


def read_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The training state in ``path``, refused unless it was saved with the same ``fingerprint``."""
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
            "state_dict": cpu_state(network),
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
    path, _, content = read_checked(model_dir, MODEL_FILE, PRODUCER, stage="train-cnn", option=option)
    return _load_checkpoint_file(path, content.tobytes())


def _sound_header(blob: dict[str, Any]) -> bool:
    """Whether a checkpoint's header values have the types and ranges ``train-cnn`` writes."""
    version, k = blob.get("format_version", 0), blob["n_classes"]
    shape, names, flip = blob.get("input_shape", INPUT_SHAPE), blob["class_names"], blob.get("test_flip", False)
    if not (is_int(version) and is_int(k) and 1 <= k <= MAX_LABEL + 1 and isinstance(flip, bool)):
        return False
    if not isinstance(shape, list | tuple) or tuple(shape) != INPUT_SHAPE:
        return False
    return names is None or (
        isinstance(names, list | tuple) and len(names) == k and all(isinstance(n, str) for n in names)
    )


def _load_checkpoint_file(path: Path, content: bytes) -> tuple[Network, dict[str, Any]]:
    blob = _torch_load(path, PRODUCER, content)
    needed = ("format", "architecture", "n_classes", "class_names", "state_dict")
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT or any(k not in blob for k in needed):
        raise FmnistError(f"{path} is not an fmnist-cluster CNN checkpoint; run `{PRODUCER}` to make one")
    if not _sound_header(blob):
        raise FmnistError(
            f"{path} has a damaged header (format_version, n_classes, input_shape, class_names or test_flip are not "
            f"what `{PRODUCER}` writes for 1x28x28 images); run `{PRODUCER}` again"
        )
    if int(blob.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise FmnistError(f"{path} was written by a newer fmnist-cluster (format {blob['format_version']}); upgrade")
    try:
        net = Network(blob["architecture"], int(blob["n_classes"]), tuple(blob.get("input_shape", INPUT_SHAPE)))
    except ValueError as exc:
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
