"""Typed stage configurations, loaded from YAML and ``--set`` overrides.

Every stage has one pydantic model here. Models forbid unknown keys, so a mistyped key is
an error that lists the valid keys instead of a silently ignored setting. The shipped
``configs/<stage>.yaml`` files hold exactly these defaults (a test keeps them in step).

Reading YAML happens only in :func:`load_config`; library code receives validated models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fmnist_cluster.errors import FmnistError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------
# preprocess
# --------------------------------------------------------------------------------------

SOURCES = ("idx", "kaggle-csv", "twisted-csv", "torchvision", "sample")


class PreprocessConfig(StrictModel):
    """Configuration of ``preprocess``.

    Attributes
    ----------
    source : {'sample', 'idx', 'kaggle-csv', 'twisted-csv', 'torchvision'}
        Where the images come from. ``sample`` is the stratified real sample shipped in the
        package; ``idx`` a folder with the four standard ``*-idx?-ubyte[.gz]`` files;
        ``kaggle-csv`` a folder with ``fashion-mnist_train.csv`` / ``fashion-mnist_test.csv``;
        ``twisted-csv`` a folder with ``x_train.csv``, ``y_train.csv``, ``x_test.csv``,
        ``y_test.csv``; ``torchvision`` downloads through ``torchvision.datasets``.
    path : str or None
        The folder for ``idx``, ``kaggle-csv`` and ``twisted-csv``.
    cache_dir : str
        Download folder for ``torchvision``.
    limit : int or None
        Keep at most this many images of each split, stratified by label.
    standardize : {'none', 'global', 'per-pixel'}
        Subtract the training mean and divide by the training standard deviation, over all
        pixels (``global``) or pixel by pixel (``per-pixel``). Output then leaves [0, 1].
    deskew : bool
        Remove the slant of each image by an affine shear from its second moments.
    center : bool
        Shift each image so that its centre of mass is the image centre.
    seed : int
        Seed of the stratified ``limit`` draw.
    """

    source: Literal["sample", "idx", "kaggle-csv", "twisted-csv", "torchvision"] = "sample"
    path: str | None = None
    cache_dir: str = "~/.cache/fmnist-cluster"
    limit: int | None = Field(default=None, gt=0)
    standardize: Literal["none", "global", "per-pixel"] = "none"
    deskew: bool = False
    center: bool = False
    seed: int = 0


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Split one ``--set dotted.key=value`` item; the value is read as YAML.

    Parameters
    ----------
    item : str
        For example ``som.sigma=2.5``, ``limit=500`` or ``path=null``.

    Returns
    -------
    tuple of (str, Any)
        The dotted key and the typed value.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise FmnistError(f"--set '{item}': expected dotted.key=value, for example --set seed=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _format_validation(model: type[BaseModel], err: ValidationError, origin: str) -> str:
    errors = err.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        valid = ", ".join(_valid_keys(model, loc[:-1])) or "(none)"
        msg = f"unknown config key '{dotted}' in {origin}; valid: {valid}"
    else:
        got = first.get("input")
        msg = f"config key '{dotted}' in {origin}: {first['msg']} (got {got!r})"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem(s))"
    return msg


def load_config(model: type[M], path: Path | str | None = None, overrides: list[str] | None = None) -> M:
    """Build a validated config from an optional YAML file and ``--set`` overrides.

    Parameters
    ----------
    model : type
        The stage's config model, e.g. :class:`PreprocessConfig`.
    path : path or None
        YAML file; ``None`` starts from the model's defaults.
    overrides : list of str
        ``dotted.key=value`` items applied on top, in order.

    Returns
    -------
    model instance

    Raises
    ------
    FmnistError
        Missing or unreadable file, YAML that is not a mapping, unknown key, wrong type or
        out-of-range value; the message names the key and the accepted values.
    """
    tree: dict[str, Any] = {}
    origin = "the defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise FmnistError(f"config file {path} does not exist; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise FmnistError(f"config file {path}{line} is not valid YAML; fix its syntax") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise FmnistError(f"config file {path} must hold a mapping of keys to values, not {type(loaded).__name__}")
        tree = loaded
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    if overrides:
        origin = f"{origin} with --set overrides"
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise FmnistError(_format_validation(model, exc, origin)) from None


def config_to_yaml(config: BaseModel) -> str:
    """Render a config as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
