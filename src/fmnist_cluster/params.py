"""Checks of estimator arguments, shared by every estimator.

One wording for each kind of mistake, raised as ``ValueError`` when ``fit`` starts (scikit-learn
stores arguments as given and checks them there). numpy's scalars pass wherever Python's do, so
a grid of ``np.arange`` values works in ``GridSearchCV``; ``True`` and ``False`` are not numbers
here.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Whether ``value`` is a whole-number type (int or numpy integer), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (int, float or numpy scalar), not a bool."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    return ok and bool(np.isfinite(value))


def check_choice(name: str, value: Any, valid: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` "unknown name 'value'; valid: a, b, c" unless ``value`` is in ``valid``."""
    if isinstance(value, bool | np.bool_) or value not in valid:
        raise ValueError(f"unknown {name} '{value}'; valid: {', '.join(str(v) for v in valid)}")


def check_positive(
    name: str, value: Any, *, integer: bool = False, zero: bool = False, least: int | None = None
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (>= 0 with ``zero``); with
    ``integer`` a whole number >= ``least`` (default 1, or 0 with ``zero``)."""
    if integer:
        low = least if least is not None else (0 if zero else 1)
        if not is_int(value) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    elif not is_number(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if zero else '> 0'}, got {value!r}")


def check_seed(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an int seed >= 0 (results are reproducible, so
    there is no unseeded mode)."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (a seed), got {value!r}")
