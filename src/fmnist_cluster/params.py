"""Checks of estimator arguments, shared by every estimator.

One wording for each kind of mistake, raised as ``ValueError`` when ``fit`` starts (scikit-learn
stores arguments as given and checks them there). numpy's scalars pass wherever Python's do, so
a grid of ``np.arange`` values works in ``GridSearchCV``; ``True`` and ``False`` are not numbers
here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Whether ``value`` is a whole-number type (int or numpy integer), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (int, float or numpy scalar), not a bool."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def check_choice(name: str, value: Any, valid: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` "unknown name 'value'; valid: a, b, c" unless ``value`` is one of
    ``valid`` and of its kind (``1.0`` is not the choice ``1``, nor ``True``)."""

    def same(v: Any) -> bool:
        if isinstance(v, str) or isinstance(value, str):
            return isinstance(v, str) and isinstance(value, str) and v == value
        return is_int(v) and is_int(value) and v == value

    if not any(same(v) for v in valid):
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


#: Seeds run from 0 to this (scikit-learn's ``random_state`` range).
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an int seed in 0..MAX_SEED (results are
    reproducible, so there is no unseeded mode)."""
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be an int from 0 to {MAX_SEED} (a seed), got {value!r}")
