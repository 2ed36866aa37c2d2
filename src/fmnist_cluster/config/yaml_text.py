"""YAML text as a config reads it: ``yaml.SafeLoader`` (no object construction) that also
refuses what a config never needs and a hostile file could abuse, each with one line that says
what to fix: a key given twice in one mapping (YAML would keep the last), aliases (``*name``;
nested ones blow up exponentially), merge keys (``<<``), keys that are not plain values,
numbers of thousands of digits, impossible dates, nesting too deep to read, and the numbers
YAML 1.1 reads in base 60 or 8 (``1:30``, ``017``)."""

from __future__ import annotations

import re
from typing import Any

import yaml


class _RefusedYamlError(yaml.YAMLError):
    """YAML that parses but that a config does not accept; the message says what to fix."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what a config never needs and a hostile file could abuse:
    a key given twice in one mapping (YAML would keep the last), aliases (``*name``: nested
    ones blow up exponentially), merge keys (``<<``) and keys that are not plain values."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event() if self.check_event(yaml.AliasEvent) else None
        if event is not None and event.anchor in self.anchors:  # an unknown one stays a syntax error
            raise _RefusedYamlError(
                f"line {event.start_mark.line + 1} repeats an anchor (*{event.anchor}); write the value out"
            )
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _RefusedYamlError(f"line {line} has a merge key (<<); write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _RefusedYamlError(f"line {line} has a key that is not a plain value; keys are names")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _RefusedYamlError(f"key '{key}' appears twice (lines {seen[key]} and {line}); keep one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_UNCLEAR_NUMBER = re.compile(r"[-+]?(0[0-7_]+|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?)")
"""Plain values YAML 1.1 reads as numbers that few would write meaning them: ``017`` (octal,
15) and ``1:30`` (base 60, 90). Refused unless they mean the same in decimal."""


def _same_in_decimal(value: str) -> bool:
    """Whether a leading-zero value means the same in octal and decimal (``00``, ``007``)."""
    digits = value.lstrip("+-").replace("_", "")
    return ":" not in digits and int(digits, 8) == int(digits, 10)


def _number(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> Any:
    if _UNCLEAR_NUMBER.fullmatch(node.value) and not _same_in_decimal(node.value):
        kind = "a base-60 number" if ":" in node.value else "an octal number"
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        raise _RefusedYamlError(
            f"line {node.start_mark.line + 1} holds {shown}, which YAML reads as {kind}; write the number in "
            "decimal, or quote it if it is text"
        )
    if node.tag.endswith(":int"):
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _number)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _number)


class YamlSyntaxError(ValueError):
    """Text that is not YAML at all (``--set`` then takes it as a plain string)."""


def read_yaml(text: str) -> Any:
    """``text`` read with :class:`_UniqueKeyLoader`; ``YamlSyntaxError`` for text that is not YAML,
    ``ValueError`` for YAML a config cannot be: a refused construct, a number too long to read,
    nesting too deep."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _RefusedYamlError as exc:
        raise ValueError(str(exc)) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        raise YamlSyntaxError(f"line {where.line + 1} is not valid YAML" if where else "not valid YAML") from None
    except RecursionError:
        raise ValueError("is nested too deep to read; flatten it") from None
    except (ValueError, TypeError):  # a number of 5,000 digits, an impossible date
        raise ValueError(
            "holds a value YAML cannot read (a number of thousands of digits, an impossible date); quote it or "
            "shorten it"
        ) from None
