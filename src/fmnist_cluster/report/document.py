"""The report's building blocks: cells, tables, figures, sections; escaping and safe names.

Every string that comes from an artefact (stage names, class names, configs, commands) reaches
HTML only through :func:`html_text` and Markdown only through :func:`md_text`, and a file name
or an anchor only through :func:`slug`, which keeps ``[a-z0-9-]`` and nothing else.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.text import visible_controls

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_MD_LINE_START = re.compile(r"^(\s*\d*)([#+>.)-])")


def slug(text: str, fallback: str = "item", limit: int = 48) -> str:
    """``text`` as ``[a-z0-9-]`` only (no dots, no slashes): safe in a file name and an id."""
    out = _NOT_SLUG.sub("-", str(text).lower()).strip("-")[:limit].strip("-")
    return out or fallback


def html_text(value: Any) -> str:
    """Any value as escaped HTML text (quotes too, so it is safe inside attributes; control
    characters written out)."""
    return html.escape(visible_controls(str(value)), quote=True)


def md_text(value: Any, *, cell: bool = False) -> str:
    """Any value as Markdown text that renders literally: HTML is escaped, the characters of
    inline Markdown syntax are backslash-escaped, line breaks become spaces. A list or heading
    marker at the start is escaped too, except in a table ``cell``, which never starts a line."""
    text = html.escape(visible_controls(str(value).replace("\r", " ").replace("\n", " ")), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text if cell else _MD_LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text)


def fmt(value: Any) -> str:
    """A metric value as short text."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, (list, tuple)):
        text = ", ".join(fmt(v) for v in value[:12])
        return text + (", …" if len(value) > 12 else "")
    return str(value)


def pct(value: Any, digits: int = 2) -> str:
    """A share as a percentage (``–`` when missing)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return f"{100 * value:.{digits}f} %"
    return "–"


@dataclass
class Cell:
    """A table cell: text, optionally a link to an anchor of the page and a small image."""

    text: str
    href: str | None = None
    png: bytes | None = None


@dataclass
class Table:
    """A small table: a title, column names and rows of cells (strings or :class:`Cell`)."""

    title: str
    columns: list[str]
    rows: list[list[str | Cell]]
    note: str = ""


@dataclass
class Figure:
    """A PNG figure with a caption; ``name`` is a slug, ``group`` the heading it is shown under;
    ``inline`` False when the explorer shows the same thing (the page then links the file)."""

    name: str
    caption: str
    png: bytes
    group: str = "Figures"
    inline: bool = True


@dataclass
class Section:
    """One artefact folder's part of the report."""

    stage: str
    folder: Path
    manifest: dict[str, Any]
    anchor: str = ""
    title: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
