"""Where torch work runs: the device names every stage accepts, and the CPU thread count.

The names are declared once here (:data:`Device`); the config models use the same type.
torch is imported only when a device is resolved, so reading configs stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)


def resolve_device(device: str) -> torch.device:
    """Turn a device name into a torch device.

    Parameters
    ----------
    device : {'auto', 'cpu', 'cuda'}
        ``auto``: CUDA when a usable CUDA device is present, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        Unknown name, or ``cuda`` on a machine without a usable CUDA device.
    """
    import torch

    if device not in DEVICES:
        raise ValueError(f"unknown device '{device}'; valid: {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available; use cpu or auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch CPU threads (None: leave as is), then restore."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
