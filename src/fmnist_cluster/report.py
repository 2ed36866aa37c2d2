"""The ``report`` stage: every figure and table of a run in one page.

Each ``--input`` folder is a finished artefact; its stage is read from its ``manifest.json``.
The report gathers, in pipeline order, every PNG figure the stages wrote and a table of each
stage's metrics, and draws the figures that need two stages at once: the ``embed``
coordinates coloured by the ``cluster`` labels of the same rows (PCA and t-SNE by KMeans,
DBSCAN, ...). Embeddings are read, never recomputed.

Outputs: ``report.html`` (self-contained: figures embedded as base64 PNG, no scripts, no
external files), ``report.md`` (Markdown summary pointing at ``figures/``) and the figures.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import StageRun, load_npz, read_manifest, require_file
from fmnist_cluster.config import ReportConfig
from fmnist_cluster.errors import FmnistError

STAGE_ORDER = ("preprocess", "train-som", "tune", "train-cnn", "encode", "cluster", "embed")
STAGE_TITLES = {
    "preprocess": "Data",
    "train-som": "Self-organising map",
    "tune": "SOM tuning",
    "train-cnn": "CNN training",
    "encode": "Encoding",
    "cluster": "Clustering",
    "embed": "Embeddings",
}
DEFAULT_INPUTS = tuple(
    Path("outputs") / name for name in ("data", "som", "tune", "cnn", "encoding", "cluster", "embed")
)
_PRODUCERS = {stage: f"fmnist-cluster {stage}" for stage in STAGE_ORDER}
_CLUSTER_METRIC_COLUMNS = (
    ("n_clusters", "clusters"),
    ("k", "k"),
    ("eps", "eps"),
    ("min_samples", "min_samples"),
    ("noise_share", "noise"),
    ("ari", "ARI"),
    ("ari_clustered", "ARI (clustered)"),
    ("nmi", "NMI"),
    ("homogeneity", "homogeneity"),
    ("completeness", "completeness"),
    ("purity", "purity"),
    ("silhouette", "silhouette"),
)


@dataclass
class Table:
    """A small table: a title, column names and rows of cells (already strings)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    """A PNG figure with a caption."""

    name: str
    caption: str
    png: bytes


@dataclass
class Section:
    """One artefact folder's part of the report."""

    stage: str
    folder: Path
    manifest: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, (list, tuple)):
        text = ", ".join(_fmt(v) for v in value[:12])
        return text + (", …" if len(value) > 12 else "")
    return str(value)


def _flatten(
    obj: Any, prefix: str = "", depth: int = 0, out: list[tuple[str, Any]] | None = None
) -> list[tuple[str, Any]]:
    """Scalar (and short-list) leaves of nested metrics as ``dotted.key`` rows."""
    out = [] if out is None else out
    if (
        isinstance(obj, dict)
        and prefix
        and 0 < len(obj) <= 12
        and all(not isinstance(v, (dict, list)) for v in obj.values())
    ):
        out.append((prefix, ", ".join(f"{k}: {_fmt(v)}" for k, v in obj.items())))
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            if depth < 3:
                _flatten(obj[key], f"{prefix}.{key}" if prefix else str(key), depth + 1, out)
    elif isinstance(obj, (list, tuple)):
        if len(obj) <= 12 and all(not isinstance(v, (dict, list)) for v in obj):
            out.append((prefix, list(obj)))
    else:
        out.append((prefix, obj))
    return out


def _read_json(folder: Path, name: str, stage: str, inputs: dict[str, str]) -> Any:
    path, digest = require_file(folder, name, _PRODUCERS.get(stage, f"fmnist-cluster {stage}"))
    inputs[str(path)] = digest
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FmnistError(f"{path} is not valid JSON; run `fmnist-cluster {stage}` again") from None


def _png_caption(stage: str, name: str) -> str:
    stem = Path(name).stem.replace("-", " ").replace("_", " ")
    return f"{STAGE_TITLES.get(stage, stage)}: {stem}"


def _collect(folder: Path, inputs: dict[str, str]) -> Section:
    manifest = read_manifest(folder, "the fmnist-cluster stage that writes it")
    stage = str(manifest["stage"])
    section = Section(stage, folder, manifest)
    for name in sorted(manifest["outputs"]):
        if name.endswith(".png"):
            path, digest = require_file(folder, name, _PRODUCERS.get(stage, f"fmnist-cluster {stage}"))
            inputs[str(path)] = digest
            section.figures.append(Figure(f"{stage}-{Path(name).stem}", _png_caption(stage, name), path.read_bytes()))
    json_names = [n for n in sorted(manifest["outputs"]) if n.endswith(".json") and "/" not in n]
    for name in json_names:
        data = _read_json(folder, name, stage, inputs)
        if stage == "cluster" and name == "metrics.json":
            section.tables.extend(_cluster_tables(data))
        elif stage == "cluster" and name == "decoding.json":
            section.tables.extend(_decoding_tables(data))
        else:
            rows = [[k, _fmt(v)] for k, v in _flatten(data)][:80]
            if rows:
                section.tables.append(Table(f"{name}", ["key", "value"], rows))
    return section


def _cluster_tables(metrics: dict[str, Any]) -> list[Table]:
    algos = metrics.get("algorithms", {})
    columns = [c for c, _ in _CLUSTER_METRIC_COLUMNS if any(c in a for a in algos.values())]
    rows = [[name] + [_fmt(algos[name].get(c)) for c in columns] for name in algos]
    reduce = metrics.get("reduce", {})
    note = (
        f"{metrics.get('n')} {metrics.get('split')} rows of {metrics.get('kind')} from {metrics.get('input')}; "
        f"{reduce.get('dims_in')} → {reduce.get('dims')} dims. Noise (DBSCAN/HDBSCAN label -1) counts as one cluster "
        "in ARI/NMI/purity; 'ARI (clustered)' leaves it out."
    )
    tables = [
        Table("Clustering metrics", ["algorithm"] + [dict(_CLUSTER_METRIC_COLUMNS)[c] for c in columns], rows, note)
    ]
    with_majority = [name for name, a in algos.items() if "majority" in a]
    if with_majority:
        labels = sorted({k for name in with_majority for k in algos[name]["majority"]}, key=int)
        rows = []
        for label in labels:
            cells = []
            for name in with_majority:
                v = algos[name]["majority"].get(label, {"correct": 0, "incorrect": 0})
                cells.append(f"{v['correct']} / {v['incorrect']}")
            rows.append([label, *cells])
        tables.append(
            Table(
                "Correct / incorrect per label (a point is correct when its cluster's majority label is its own)",
                ["label", *with_majority],
                rows,
            )
        )
    return tables


def _decoding_tables(decoding: dict[str, Any]) -> list[Table]:
    rows = []
    for entry in decoding.get("labels", []):
        view = entry.get("clusters", {})
        where = ""
        for algo in ("kmeans", "agglomerative", "dbscan", "hdbscan"):
            if view.get(algo):
                where = f"{algo}: " + ", ".join(
                    f"{'noise' if c['cluster'] == -1 else c['cluster']} {c['share']:.0%}" for c in view[algo][:4]
                )
                break
        rows.append(
            [
                str(entry["label"]),
                str(entry.get("n", "")),
                entry["summary"].split("≈", 1)[-1].strip(),
                ", ".join(entry["members"]),
                where,
            ]
        )
    notes = [f"method: {decoding.get('method')}"]
    if "content" in decoding:
        c = decoding["content"]
        notes.append(f"content matching found {c['n_matched']} images ({c['match_rate']:.1%})")
    if "reference" in decoding and "agreement_with_content" in decoding["reference"]:
        r = decoding["reference"]
        notes.append(
            f"reference model agrees with content on {r['agreement_with_content']:.1%} of images; "
            f"same members: {_fmt(r.get('same_members_as_content'))}"
        )
    notes.append(f"members hold ≥ {decoding.get('min_share', 0.1):.0%} of the label")
    tables = [
        Table(
            "Mystery-label decoding", ["label", "images", "composition", "members", "clusters"], rows, "; ".join(notes)
        )
    ]
    if "content" in decoding and "reference" in decoding:
        comp = [
            [str(a["label"]), a["summary"].split("≈", 1)[-1].strip(), b["summary"].split("≈", 1)[-1].strip()]
            for a, b in zip(decoding["content"]["labels"], decoding["reference"]["labels"], strict=True)
        ]
        tables.append(
            Table("Decoding: content matching vs reference model", ["label", "content", "reference model"], comp)
        )
    return tables


def _cross_figures(sections: list[Section], config: ReportConfig, inputs: dict[str, str]) -> dict[Path, list[Figure]]:
    """Embedding coordinates coloured by the cluster labels of the same rows, per embed folder."""
    from fmnist_cluster import plots
    from fmnist_cluster.embed import EMBEDDING_FILE, METHOD_TITLES

    out: dict[Path, list[Figure]] = {}
    embeds = [s for s in sections if s.stage == "embed"]
    clusters = [s for s in sections if s.stage == "cluster"]
    for emb in embeds:
        figures = out.setdefault(emb.folder, [])
        emb_path, digest = require_file(emb.folder, EMBEDDING_FILE, "fmnist-cluster embed")
        inputs[str(emb_path)] = digest
        coords = load_npz(emb_path, ("index",), "fmnist-cluster embed")
        emb_metrics = _read_json(emb.folder, "metrics.json", "embed", inputs)
        for clu in clusters:
            clu_metrics = _read_json(clu.folder, "metrics.json", "cluster", inputs)
            same = (
                clu_metrics.get("input_sha256") == emb_metrics.get("input_sha256")
                and clu_metrics.get("split") == emb_metrics.get("split")
                and clu_metrics.get("n") == emb_metrics.get("n")
            )
            if not same:
                continue
            lab_path, digest = require_file(clu.folder, "labels.npz", "fmnist-cluster cluster")
            inputs[str(lab_path)] = digest
            labels = load_npz(lab_path, ("index",), "fmnist-cluster cluster")
            rng = np.random.default_rng(config.seed)
            for method in ("pca", "tsne", "umap"):
                if method not in coords:
                    continue
                pts = coords[method]
                ok = np.flatnonzero(~np.isnan(pts[:, 0]))
                if len(ok) > config.max_points:
                    ok = np.sort(rng.choice(ok, config.max_points, replace=False))
                for algo in ("kmeans", "dbscan", "hdbscan", "agglomerative"):
                    if algo not in labels:
                        continue
                    lab = labels[algo]
                    params = clu_metrics["algorithms"].get(algo, {})
                    detail = f"k = {params.get('n_clusters')}"
                    if algo == "dbscan":
                        detail = (
                            f"eps = {params.get('eps', 0):.3g}, {params.get('n_clusters')} clusters, "
                            f"noise {params.get('noise_share', 0):.1%}"
                        )
                    title = f"{METHOD_TITLES[method]} coloured by {algo} ({detail})"
                    fig = plots.scatter_2d(
                        pts[ok],
                        lab[ok],
                        title,
                        None,
                        (f"{METHOD_TITLES[method]} 1", f"{METHOD_TITLES[method]} 2"),
                        "cluster",
                    )
                    figures.append(Figure(f"embed-{method}-by-{algo}", title, plots.figure_png(fig)))
    return out


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
header { background: #23395d; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: 0.85; font-size: 13px; }
main { padding: 12px 32px 40px 32px; max-width: 1300px; }
nav { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px 16px; margin: 16px 0;
      font-size: 14px; }
nav a { margin-right: 16px; color: #23395d; }
section { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 4px 20px 16px 20px; margin: 18px 0; }
h2 { border-bottom: 2px solid #23395d; padding-bottom: 4px; color: #23395d; }
h3 { font-size: 15px; margin: 18px 0 6px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
tr:nth-child(even) td { background: #f7f8fa; }
.note { font-size: 12px; color: #555; margin: 2px 0 10px 0; }
.figs { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 8px 0; border: 1px solid #e2e2e2; padding: 6px; background: white; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #444; margin-top: 4px; }
.meta { font-size: 12px; color: #666; }
"""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f"<h3>{html.escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    )


def _html_figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = html.escape(fig.caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def _md_table(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(cell(c) for c in table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines) + "\n"


def render_html(
    title: str, sections: list[tuple[str, str, Section | None, list[Table], list[Figure]]], overview: Table
) -> str:
    """The whole report as one HTML document (figures inline)."""
    nav = " ".join(f'<a href="#{anchor}">{html.escape(head)}</a>' for anchor, head, *_ in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>{len(sections)} sections from {len(overview.rows)} artefact folders</p></header>",
        f"<main><nav>{nav}</nav><section id='overview'><h2>Artefacts</h2>{_html_table(overview)}</section>",
    ]
    for anchor, head, section, tables, figures in sections:
        meta = ""
        if section is not None:
            created = html.escape(str(section.manifest.get("created_at", "")))
            meta = f'<p class="meta">{html.escape(str(section.folder))} — created {created}</p>'
        body = "".join(_html_table(t) for t in tables)
        figs = "".join(_html_figure(f) for f in figures)
        parts.append(
            f'<section id="{anchor}"><h2>{html.escape(head)}</h2>{meta}{body}<div class="figs">{figs}</div></section>'
        )
    parts.append("</main></body></html>")
    return "\n".join(parts)


def render_markdown(
    title: str, sections: list[tuple[str, str, Section | None, list[Table], list[Figure]]], overview: Table
) -> str:
    """The Markdown summary; figures are linked from ``figures/``."""
    lines = [f"# {title}", "", _md_table(overview)]
    for _, head, section, tables, figures in sections:
        lines += [f"## {head}", ""]
        if section is not None:
            lines += [f"`{section.folder}`", ""]
        for table in tables:
            lines += [_md_table(table), ""]
        for fig in figures:
            lines += [f"![{fig.caption}](figures/{fig.name}.png)", ""]
    return "\n".join(lines)


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
        Counts of inputs, figures and tables.

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
    sections = [_collect(Path(f), inputs) for f in folders]
    order = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    sections.sort(key=lambda s: order.get(s.stage, len(order)))
    cross = _cross_figures(sections, config, inputs)
    overview = Table(
        "Artefacts",
        ["stage", "folder", "created", "seconds", "command"],
        [
            [
                s.stage,
                str(s.folder),
                str(s.manifest.get("created_at", "")),
                _fmt(s.manifest.get("timings", {}).get("wall_s")),
                str(s.manifest.get("command", "")),
            ]
            for s in sections
        ],
    )
    blocks: list[tuple[str, str, Section | None, list[Table], list[Figure]]] = []
    seen: dict[str, int] = {}
    for s in sections:
        seen[s.stage] = seen.get(s.stage, 0) + 1
        anchor = f"{s.stage}-{seen[s.stage]}"
        head = STAGE_TITLES.get(s.stage, s.stage)
        if sum(t.stage == s.stage for t in sections) > 1:
            head += f" — {s.folder.name}"
        figures = list(s.figures)
        if s.stage == "embed":
            figures += cross.get(s.folder, [])
        blocks.append((anchor, head, s, s.tables, figures))
    # unique figure names for the Markdown links
    names: set[str] = set()
    for _, _, _, _, figures in blocks:
        for fig in figures:
            base, i = fig.name, 2
            while fig.name in names:
                fig.name = f"{base}-{i}"
                i += 1
            names.add(fig.name)
    with StageRun("report", Path(out_dir), config.model_dump(mode="json"), seed=config.seed) as run:
        for path, digest in inputs.items():
            run.add_input(path, digest)
        for _, _, _, _, figures in blocks:
            for fig in figures:
                run.save_bytes(f"figures/{fig.name}.png", fig.png)
        run.save_text("report.html", render_html(config.title, blocks, overview))
        run.save_text("report.md", render_markdown(config.title, blocks, overview))
        run.commit()
    return {
        "n_inputs": len(sections),
        "n_figures": sum(len(b[4]) for b in blocks),
        "n_tables": sum(len(b[3]) for b in blocks) + 1,
    }
