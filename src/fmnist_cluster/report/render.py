"""The report as one self-contained HTML page and as Markdown.

HTML: the findings first (``<section id="findings">``), the explorer, then the evidence of
each artefact folder (long tables and figure groups folded in ``<details>``), the artefact list
last; figures are inline base64 PNG, the explorer's code and data are inline too, nothing is
fetched. Markdown: the same findings and tables, figures linked from ``figures/``. All text from
artefacts is escaped (:func:`html_text`, :func:`md_text`); links point only at anchors made by
:func:`slug`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fmnist_cluster.artefacts import figure_name
from fmnist_cluster.report.document import Cell, Figure, Section, Table, html_text, md_text
from fmnist_cluster.report.evidence import GROUP_ORDER
from fmnist_cluster.report.findings import Block

FOLD_ROWS = 24  # tables longer than this are folded
OPEN_FIGURES = 4  # figure groups up to this size are shown open


@dataclass
class Page:
    """Everything the renderers need."""

    title: str
    findings: list[Block]
    explorer: dict[str, Any] | None
    explorer_note: str
    explorer_json: str
    sections: list[Section]
    overview: Table
    cell_files: dict[int, str]  # id(png bytes) -> file name under figures/ (Markdown)


def _asset(name: str) -> str:
    return resources.files("fmnist_cluster.report").joinpath(name).read_text(encoding="utf-8")


def _html_cell(cell: str | Cell) -> str:
    if isinstance(cell, str):
        return html_text(cell)
    out = html_text(cell.text)
    if cell.png is not None:
        data = base64.b64encode(cell.png).decode("ascii")
        out += f'<img class="strip" alt="images" src="data:image/png;base64,{data}">'
    if cell.href is not None:
        out = f'<a href="{html_text(cell.href)}">{out or "evidence"}</a>'
    return out


def html_table(table: Table, fold: bool = True) -> str:
    """A table with its title and note; folded when long."""
    head = "".join(f"<th>{html_text(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{html_text(table.note)}</p>' if table.note else ""
    inner = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    if fold and len(table.rows) > FOLD_ROWS:
        return f"<details><summary>{html_text(table.title)} ({len(table.rows)} rows)</summary>{inner}</details>"
    return f"<h3>{html_text(table.title)}</h3>{inner}"


def _html_figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = html_text(fig.caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def figure_groups(figures: list[Figure]) -> list[tuple[str, list[Figure]]]:
    """Figures grouped by subject, the groups in a fixed order (unknown ones last)."""
    groups: dict[str, list[Figure]] = {}
    for fig in figures:
        groups.setdefault(fig.group, []).append(fig)
    rank = {name: i for i, name in enumerate(GROUP_ORDER)}
    return sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))


def _html_findings(blocks: list[Block]) -> str:
    parts = ['<section id="findings"><h2>Findings</h2>']
    for block in blocks:
        parts.append(f'<div class="finding" id="{html_text(block.anchor)}"><h3>{html_text(block.heading)}</h3>')
        parts += [f'<p class="lead">{html_text(line)}</p>' for line in block.lines]
        if block.table is not None:
            parts.append(html_table(block.table, fold=False).split("</h3>", 1)[1])
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _html_section(section: Section) -> str:
    manifest = section.manifest
    meta = (
        f'<p class="meta">{html_text(section.folder)} — created {html_text(manifest.get("created_at", ""))}'
        f" — <code>{html_text(manifest.get('command', ''))}</code></p>"
    )
    tables = "".join(html_table(t) for t in section.tables)
    groups = []
    for name, figs in figure_groups(section.figures):
        inner = f'<div class="figs">{"".join(_html_figure(f) for f in figs if f.inline)}</div>'
        linked = [f for f in figs if not f.inline]
        if linked:
            files = ", ".join(f'<a href="{figure_name(f.name)}">{html_text(f.caption)}</a>' for f in linked)
            explorer = '<a href="#explorer-section">explorer</a>'
            inner += f'<p class="note">Interactive in the {explorer}; static copies: {files}.</p>'
        opened = " open" if len(figs) - len(linked) <= OPEN_FIGURES else ""
        groups.append(f"<details{opened}><summary>{html_text(name)} ({len(figs)})</summary>{inner}</details>")
    return (
        f'<section id="{html_text(section.anchor)}"><h2>{html_text(section.title)}</h2>{meta}{tables}'
        f"{''.join(groups)}</section>"
    )


def render_html(page: Page) -> str:
    """The whole report as one HTML document."""
    toc = ['<li><a href="#findings">Findings</a><ul>']
    toc += [f'<li><a href="#{html_text(b.anchor)}">{html_text(b.heading)}</a></li>' for b in page.findings]
    toc.append("</ul></li>")
    if page.explorer is not None:
        toc.append('<li><a href="#explorer-section">Explorer</a></li>')
    toc.append("<li>Evidence<ul>")
    toc += [f'<li><a href="#{html_text(s.anchor)}">{html_text(s.title)}</a></li>' for s in page.sections]
    toc.append('</ul></li><li><a href="#artefacts">Artefacts</a></li>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html_text(page.title)}</title><style>{_asset('report.css')}</style></head><body>",
        f"<header><h1>{html_text(page.title)}</h1>"
        f"<p>{len(page.sections)} artefact folders: findings first, then the explorer and the evidence</p></header>",
        f'<div class="page"><nav id="toc"><strong>Contents</strong><ol>{"".join(toc)}</ol></nav><main>',
        _html_findings(page.findings),
    ]
    if page.explorer is not None:
        parts.append(
            '<section id="explorer-section"><h2>Explorer</h2>'
            f'<p class="note">{html_text(page.explorer_note)}</p>'
            '<div id="explorer"></div><noscript>The explorer needs JavaScript.</noscript></section>'
        )
    parts += [_html_section(s) for s in page.sections]
    parts.append(f'<section id="artefacts"><h2>Artefacts</h2>{html_table(page.overview, fold=False)}</section>')
    parts.append("</main></div>")
    if page.explorer is not None:
        parts.append(f'<script type="application/json" id="explorer-data">{page.explorer_json}</script>')
        parts.append(f"<script>{_asset('explorer.js')}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_cell(cell: str | Cell, page: Page, titles: dict[str, str]) -> str:
    if isinstance(cell, str):
        return md_text(cell, cell=True)
    out = md_text(cell.text, cell=True)
    if cell.png is not None and id(cell.png) in page.cell_files:
        out += f"![images](figures/{page.cell_files[id(cell.png)]})"
    if cell.href is not None:
        out += f" (see {md_text(titles.get(cell.href.lstrip('#'), 'below'))})"
    return out.strip()


def md_table(table: Table, page: Page, titles: dict[str, str], heading: bool = True) -> str:
    """A Markdown table, every cell escaped."""
    lines = [f"**{md_text(table.title)}**", ""] if heading else []
    lines += [
        "| " + " | ".join(md_text(c, cell=True) for c in table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(_md_cell(c, page, titles) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{md_text(table.note)}_"]
    return "\n".join(lines) + "\n"


def render_markdown(page: Page) -> str:
    """The Markdown summary: findings first; figures linked from ``figures/``."""
    titles = {s.anchor: s.title for s in page.sections}
    lines = [f"# {md_text(page.title)}", "", "## Findings", ""]
    for block in page.findings:
        lines += [f"### {md_text(block.heading)}", ""]
        lines += [md_text(line) + "\n" for line in block.lines]
        if block.table is not None:
            lines += [md_table(block.table, page, titles, heading=False), ""]
    if page.explorer is not None:
        lines += ["The interactive explorer (hover, select, SOM neurons) is in `report.html`.", ""]
    for section in page.sections:
        lines += [f"## {md_text(section.title)}", "", md_text(section.folder), ""]
        for table in section.tables:
            lines += [md_table(table, page, titles), ""]
        for group, figs in figure_groups(section.figures):
            lines += [f"**{md_text(group)}**", ""]
            lines += [f"![{md_text(f.caption)}]({figure_name(f.name)})\n" for f in figs]
    lines += ["## Artefacts", "", md_table(page.overview, page, titles, heading=False)]
    return "\n".join(lines)
