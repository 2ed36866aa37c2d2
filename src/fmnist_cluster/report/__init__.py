"""The ``report`` stage: the answer first, then the evidence, in one self-contained page.

``report.html`` opens with the findings (what each mystery label means, the models against the
published study, cluster agreement, the SOM against the tutorial's settings), then an
interactive explorer of the embeddings and SOMs (plain JavaScript on ``<canvas>``, inline, no
network), then one section per artefact folder with its tables and figures. ``report.md``
holds the same findings and tables with figures linked from ``figures/``.

Modules: :mod:`.document` (tables, cells, escaping), :mod:`.evidence` (reading artefact
folders), :mod:`.findings`, :mod:`.explorer` (+ ``explorer.js``), :mod:`.rows` (images of the
rows), :mod:`.render` (HTML and Markdown).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fmnist_cluster.artefacts import StageRun, figure_name
from fmnist_cluster.config import ReportConfig
from fmnist_cluster.errors import FmnistError, unexpected_structure
from fmnist_cluster.report.document import Section, Table, fmt, slug
from fmnist_cluster.report.evidence import DEFAULT_INPUTS, STAGE_ORDER, STAGE_TITLES, collect, cross_figures
from fmnist_cluster.report.explorer import build_explorer, script_json
from fmnist_cluster.report.findings import build_findings
from fmnist_cluster.report.render import Page, render_html, render_markdown
from fmnist_cluster.report.rows import RowImages

__all__ = ["DEFAULT_INPUTS", "STAGE_ORDER", "STAGE_TITLES", "run_report"]


def _name_sections(sections: list[Section]) -> None:
    """Anchors (``cluster-1``, ``other-1``: slugs only) and titles of the evidence sections."""
    seen: dict[str, int] = {}
    for s in sections:
        known = s.stage if s.stage in STAGE_ORDER else "other"
        seen[known] = seen.get(known, 0) + 1
        s.anchor = f"{slug(known)}-{seen[known]}"
        s.title = STAGE_TITLES.get(s.stage, f"Other artefact (stage {s.stage})")
        if sum(t.stage == s.stage for t in sections) > 1:
            s.title += f" — {s.folder.name}"


def _unique_figure_names(sections: list[Section]) -> None:
    names: set[str] = set()
    for s in sections:
        for fig in s.figures:
            base, i = slug(fig.name, "figure"), 2
            fig.name = base
            while fig.name in names:
                fig.name = f"{base}-{i}"
                i += 1
            names.add(fig.name)


_EXPLORED_SCATTER = re.compile(r"^embed-(pca|tsne|umap)-by-(label|kmeans|dbscan|hdbscan|agglomerative)(-\d+)?$")


def _leave_to_explorer(sections: list[Section], explorer: dict[str, Any] | None) -> None:
    """Figures the explorer shows interactively (the embedding coloured by label and by each
    clustering, the SOM prototypes) are linked, not inlined, so a 10,000-point page stays small."""
    if explorer is None:
        return
    embeds = [s for s in sections if s.stage == "embed"]
    if embeds and explorer["maps"]:
        for fig in embeds[0].figures:
            fig.inline = not _EXPLORED_SCATTER.match(fig.name)
    for sec, som in zip((s for s in sections if s.stage == "train-som"), explorer["soms"], strict=True):
        if som.get("prototypes"):
            for fig in sec.figures:
                fig.inline = not fig.name.startswith("train-som-prototypes")


def run_report(config: ReportConfig, folders: list[Path | str], out_dir: Path | str) -> dict[str, Any]:
    """The ``report`` stage.

    Parameters
    ----------
    config : ReportConfig
    folders : list of path
        Artefact folders of any stages (each needs its manifest.json).
    out_dir : path
        Output folder: ``report.html``, ``report.md``, ``figures/*.png``.

    Returns
    -------
    dict
        Counts of inputs, figures and tables, the explorer's points and the page's size.

    Raises
    ------
    FmnistError
        No input, or an input that is not a finished artefact.
    """
    if not folders:
        raise FmnistError(
            "report has no input: pass artefact folders with --input "
            "(e.g. --input outputs/cluster --input outputs/embed)"
        )
    inputs: dict[str, str] = {}
    seen: set[Path] = set()
    sections = []
    for folder in map(Path, folders):
        if (where := folder.resolve()) not in seen:  # a folder given twice (som, som/) is read once
            seen.add(where)
            sections.append(collect(folder, inputs))
    order = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    sections.sort(key=lambda s: order.get(s.stage, len(order)))
    _name_sections(sections)
    for s in sections:
        if s.stage == "embed":
            s.figures += cross_figures([s, *[t for t in sections if t.stage == "cluster"]], config, inputs).get(
                s.folder, []
            )
    _unique_figure_names(sections)
    images = RowImages(inputs)
    cluster_files = "the explanation.json, decoding.json or metrics.json of an --input folder"
    with unexpected_structure(cluster_files, "run the command that wrote it again"):
        findings = build_findings(sections, inputs, images, config.seed)
    with unexpected_structure("an --input folder's arrays", "run the command that wrote it again"):
        explorer, explorer_note = build_explorer(sections, config, inputs, images)
    _leave_to_explorer(sections, explorer)
    overview = Table(
        "Artefacts",
        ["stage", "folder", "created", "seconds", "command"],
        [
            [
                s.stage,
                str(s.folder),
                str(s.manifest.get("created_at", "")),
                fmt((s.manifest.get("timings") or {}).get("wall_s")),
                str(s.manifest.get("command", "")),
            ]
            for s in sections
        ],
    )
    strips = [c.png for b in findings if b.table for row in b.table.rows for c in row if getattr(c, "png", None)]
    page = Page(
        config.title,
        findings,
        explorer,
        explorer_note,
        script_json(explorer) if explorer is not None else "",
        sections,
        overview,
        {id(png): f"findings-images-{i + 1}.png" for i, png in enumerate(strips)},
    )
    with StageRun("report", Path(out_dir), config.model_dump(mode="json"), seed=config.seed) as run:
        for path, digest in inputs.items():
            run.add_input(path, digest)
        for s in sections:
            for fig in s.figures:
                run.save_bytes(figure_name(fig.name), fig.png)
        for png in strips:
            run.save_bytes(f"figures/{page.cell_files[id(png)]}", png)
        html_page = render_html(page)
        run.save_text("report.html", html_page)
        run.save_text("report.md", render_markdown(page))
        run.commit()
    return {
        "n_inputs": len(sections),
        "n_figures": sum(len(s.figures) for s in sections),
        "n_tables": sum(len(s.tables) for s in sections) + sum(b.table is not None for b in findings) + 1,
        "explorer_points": (explorer or {}).get("n", 0) if (explorer or {}).get("maps") else 0,
        "explorer_maps": len((explorer or {}).get("soms", [])),
        "answer": next((b.lines[0] for b in findings if b.anchor == "findings-labels" and b.lines), None),
        "html_bytes": len(html_page.encode("utf-8")),
    }
