"""The search space of ``tune``: checking it, sampling a trial's parameters, and the
``train-som`` config they give."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fmnist_cluster.config import SearchParam, SomConfig, TuneConfig, set_dotted, short_repr
from fmnist_cluster.errors import FmnistError


def check_space(config: TuneConfig) -> None:
    """Every search-space key must be a ``train-som`` key that accepts its range."""
    if not config.space:
        raise FmnistError("the search space is empty; add keys such as som.sigma: {low: 1, high: 10} under 'space'")
    for key, param in config.space.items():
        probes = param.choices if param.choices is not None else [param.low, param.high]
        for value in probes:
            if param.integer and param.choices is None:
                value = int(value)
            try:
                apply_params(config.base, {key: value}, clamp=False)
            except FmnistError as exc:
                raise FmnistError(f"search space key '{key}' with value {short_repr(value)}: {exc}") from None


def apply_params(base: SomConfig, params: dict[str, Any], clamp: bool = True) -> SomConfig:
    """``base`` with dotted ``params`` replaced (and ``sigma_end`` lowered to ``sigma`` if needed)."""
    tree = base.model_dump(mode="json")
    for key, value in params.items():
        node: Any = tree
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise FmnistError(f"'{key}' is not a train-som config key")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise FmnistError(f"'{key}' is not a train-som config key")
        set_dotted(tree, key, value)
    som = tree["som"]
    if clamp and som.get("sigma") is not None and som["sigma"] < som["sigma_end"]:
        som["sigma_end"] = som["sigma"]
    try:
        return SomConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FmnistError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def suggest(trial: Any, key: str, param: SearchParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    if param.integer:
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(key, float(param.low), float(param.high), log=param.log)
