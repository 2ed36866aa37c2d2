"""The base of every stage configuration: strict models, YAML loading, ``--set`` overrides.

Models forbid unknown keys, so a mistyped key is an error that lists the valid keys instead of
a silently ignored setting. Reading YAML happens only in :func:`load_config` (through
:func:`~fmnist_cluster.config.yaml_text.read_yaml`); library code receives validated models.
The command line's help texts read their defaults from the models (:func:`overrides_help`).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from fmnist_cluster.config.yaml_text import YamlSyntaxError, read_yaml
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.params import MAX_SEED

MAX_EPOCHS = 10_000
"""Most epochs a training config accepts."""
MAX_NEURONS = 10_000
"""Most neurons of a SOM (rows x cols)."""


MAX_THREADS = 256
"""Most CPU threads a config may ask for (torch crashes on absurd counts)."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated, no number
    may be NaN or infinite, and ``true``/``false`` are not numbers (pydantic would read them as
    1 and 0: ``limit: true`` would keep one image)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        flags = [value] if isinstance(value, bool) else value if isinstance(value, list) else []
        if (
            any(isinstance(v, bool) for v in flags)
            and info.field_name
            and not _takes_bool(cls.model_fields[info.field_name].annotation)
        ):
            raise ValueError("true and false are yes/no values; this key takes another kind of value")
        return value


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's annotation accepts a bool as such (``bool``, ``Any``, a union with one)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(arg) for arg in get_args(annotation))


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A random seed: 0..2**32-1, what numpy, torch and scikit-learn all accept."""
Threads = Annotated[int, Field(gt=0, le=MAX_THREADS)]
"""A CPU thread count."""


Split = Literal["test", "train", "all"]
"""Rows a stage works on: the test split, the training split, or train then test."""
SPLITS: tuple[str, ...] = get_args(Split)

# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters without building the whole of a huge value."""
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict = 3, 6, 6, 6
    short.maxstring = short.maxother = short.maxlong = limit
    try:
        shown = short.repr(value)
    except ValueError:  # an int too long to write out
        shown = f"<{type(value).__name__} too long to show>"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at the dotted key ``dotted`` (``a.b.c``) of a nested dict, creating levels."""
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _set_in_mapping(mapping: dict[str, Any], rest: str, value: Any) -> None:
    """Set ``rest`` of a ``--set`` key inside a mapping field whose own keys may hold dots
    (``tune``'s ``space`` names ``train-som`` keys): ``som.sigma.low`` sets ``low`` of the
    existing key ``som.sigma``; a key the mapping does not hold is taken whole (``som.rows``)."""
    name = next((k for k in sorted(mapping, key=len, reverse=True) if rest.startswith(k + ".")), rest)
    if name == rest:
        mapping[name] = value
        return
    if not isinstance(mapping.get(name), dict):
        mapping[name] = {}
    set_dotted(mapping[name], rest[len(name) + 1 :], value)


def get_dotted(config: Any, dotted: str) -> Any:
    """The value at the dotted key ``dotted`` (``a.b.c``) of a config model."""
    value = config
    for key in dotted.split("."):
        value = getattr(value, key)
    return value


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
    if not raw.strip():
        return key, None
    try:
        return key, read_yaml(raw)
    except YamlSyntaxError:
        return key, raw  # plain text that is not YAML: the string itself
    except ValueError as exc:
        raise FmnistError(f"--set {short_repr(item, 60)}: {exc}") from None


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    key_next = False
    for part in loc:
        if isinstance(part, int) or key_next:  # a list index or a mapping key: same model below
            key_next = False
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current, key_next = _inner_model(fields[part].annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _inner_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config model inside a field's annotation (``X``, ``list[X]``, ``dict[str, X]``, ``X | None``)
    and whether the field is a mapping whose keys come next in an error location."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    is_dict = getattr(annotation, "__origin__", None) is dict
    for arg in getattr(annotation, "__args__", ()):
        found, _ = _inner_model(arg)
        if found is not None:
            return found, is_dict
    return None, is_dict


def _field_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` cut to the config key it names: pydantic appends union members (``k.int``)."""
    out: list[Any] = []
    current: type[BaseModel] | None = model
    key_next = False
    for part in loc:
        if isinstance(part, int) or key_next:
            key_next = False
        elif current is not None and part in current.model_fields:
            current, key_next = _inner_model(current.model_fields[part].annotation)
        else:
            break
        out.append(part)
    return tuple(out)


def _format_validation(model: type[BaseModel], err: ValidationError, origin: str, options: set[str]) -> str:
    errors = err.errors()
    first = errors[0]
    if first["type"] == "extra_forbidden":
        loc = tuple(first["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        valid = ", ".join(_valid_keys(model, loc[:-1])) or "(none)"
        msg = f"unknown config key '{dotted}' in {origin}; valid: {valid}"
        rest = len(errors) - 1
    else:
        loc = _field_loc(model, tuple(first["loc"]))
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        same = [e for e in errors if _field_loc(model, tuple(e["loc"])) == loc and e["type"] != "extra_forbidden"]
        texts = [str(e["msg"]).removeprefix("Value error, ") for e in same]
        text = texts[0] + "".join(f", or {t.removeprefix('Input should be ')}" for t in texts[1:])
        got = first.get("input")
        shown = short_repr(got)
        where = f"option {option_flag(dotted)}" if dotted in options else origin
        if first["type"] == "literal_error" and len(same) == 1:
            msg = f"unknown {dotted} {shown} in {where}; valid: {', '.join(literal_choices(first))}"
        elif first["type"] == "value_error" and isinstance(got, dict):  # a check across a section's keys
            msg = f"config section '{dotted}' in {where}: {text}" if loc else f"config in {where}: {text}"
        else:
            msg = f"config key '{dotted}' in {where}: {text} (got {shown})"
        rest = len(errors) - len(same)
    if rest > 0:
        msg += f" (and {rest} more problem(s))"
    return msg


def literal_choices(error: Any) -> list[str]:
    """The values a pydantic ``literal_error`` would have accepted, in declared order."""
    return re.findall(r"'((?:[^'\\]|\\.)*)'", str(error.get("ctx", {}).get("expected", "")))


def option_flag(key: str) -> str:
    """The command-line option that sets the dotted config ``key``: ``train.device`` -> ``--device``."""
    return "--" + key.rsplit(".", 1)[-1].replace("_", "-")


def load_config(
    model: type[M],
    path: Path | str | None = None,
    overrides: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> M:
    """Build a validated config from an optional YAML file, ``--set`` overrides and options.

    Parameters
    ----------
    model : type
        The stage's config model, e.g. :class:`PreprocessConfig`.
    path : path or None
        YAML file; ``None`` starts from the model's defaults.
    overrides : list of str
        ``dotted.key=value`` items applied on top, in order (each value read as YAML).
    options : dict, optional
        ``dotted.key -> value`` applied last, as given (not read as YAML): a command's own
        options (``--device`` for ``train.device``, :func:`option_flag`); None values are skipped.

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
        if path.is_dir():
            raise FmnistError(f"--config {path} is a folder; pass a YAML file (e.g. configs/<stage>.yaml)")
        if not path.exists():
            raise FmnistError(f"config file {path} does not exist; pass an existing YAML file to --config")
        if not path.is_file():
            raise FmnistError(f"config file {path} is not a regular file; pass a YAML file to --config")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise FmnistError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
        except OSError as exc:
            why = exc.strerror or exc
            raise FmnistError(f"cannot read config file {path} ({why}); check its permissions") from None
        try:
            loaded = read_yaml(text)
        except YamlSyntaxError as exc:
            raise FmnistError(f"config file {path}: {exc}; fix its syntax") from None
        except ValueError as exc:
            raise FmnistError(f"config file {path}: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise FmnistError(f"config file {path} must hold a mapping of keys to values, not {type(loaded).__name__}")
        tree = loaded
    for item in overrides or []:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        field = model.model_fields.get(head)
        if rest and field is not None and get_origin(field.annotation) is dict:
            if not isinstance(tree.get(head), dict):  # a mapping given in part would replace the default
                tree[head] = model().model_dump(mode="json")[head]
            _set_in_mapping(tree[head], rest, value)
        else:
            set_dotted(tree, key, value)
    if overrides:
        origin = f"{origin} with --set overrides"
    given = {key: value for key, value in (options or {}).items() if value is not None}
    for key, value in given.items():
        set_dotted(tree, key, str(value) if isinstance(value, Path) else value)
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise FmnistError(_format_validation(model, exc, origin, set(given))) from None


def config_to_yaml(config: BaseModel) -> str:
    """Render a config as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def overrides_help(model: type[BaseModel], key: str, none: str = "none") -> str:
    """Help text "Overrides 'key' (default: value)." with the default read from the config model.

    Parameters
    ----------
    model : type
        The stage's config model.
    key : str
        Dotted config key, e.g. ``som.epochs``.
    none : str
        How a default of None is shown.
    """
    value = get_dotted(model(), key)
    shown = none if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f"Overrides '{key}' (default: {shown})."


def one_of(values: Iterable[str]) -> str:
    """Allowed values as help texts list them: ``a, b or c``."""
    *rest, last = values
    return f"{', '.join(rest)} or {last}" if rest else last
