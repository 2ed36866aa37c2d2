"""Command line: thin wrappers that parse options, load the typed config and call one
library function each. Our single exception type becomes one red line and exit code 2."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgressBar

from fmnist_cluster import __version__
from fmnist_cluster.config import PreprocessConfig, load_config
from fmnist_cluster.errors import FmnistError

app = typer.Typer(
    name="fmnist-cluster",
    help="Clustering and analysis experiments on Fashion-MNIST: SOMs on pixels, and CNN "
    "encodings of mystery labels. Each command reads a YAML config (--config), applies "
    "--set overrides, reads upstream artefact folders (--input) and writes one (--out).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
console = Console(stderr=True)

M = TypeVar("M", bound=BaseModel)

# -- shared option types ------------------------------------------------------------------
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", metavar="FILE", help="YAML config of this stage. Default: the built-in defaults, "
                 "which configs/<stage>.yaml also holds.", show_default=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override one config key: dotted.key=value (value read as YAML). "
                 "Repeatable; applied after --config.", show_default=False),
]


# -- progress and errors ------------------------------------------------------------------
class _RichTask:
    def __init__(self, bar: RichProgressBar, task_id: Any) -> None:
        self._bar, self._id = bar, task_id

    def advance(self, amount: float = 1, **fields: Any) -> None:
        info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        self._bar.update(self._id, advance=amount, info=info)

    def close(self) -> None:
        self._bar.stop_task(self._id)


class RichProgress:
    """The :class:`fmnist_cluster.artefacts.Progress` shown on the terminal."""

    def __init__(self, bar: RichProgressBar) -> None:
        self._bar = bar

    def task(self, description: str, total: float | None = None) -> _RichTask:
        return _RichTask(self._bar, self._bar.add_task(description, total=total, info=""))


@contextmanager
def _progress() -> Iterator[RichProgress]:
    bar = RichProgressBar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with bar:
        yield RichProgress(bar)


def _load(model: type[M], config: Path | None, sets: list[str] | None, extra: dict[str, Any]) -> M:
    overrides = list(sets or [])
    overrides += [f"{key}={value}" for key, value in extra.items() if value is not None]
    return load_config(model, config, overrides)


def _run(call: Callable[[], Any]) -> Any:
    """Run a stage; FmnistError and warnings are shown as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except FmnistError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen and w.category.__module__.startswith("fmnist_cluster"):
                    seen.add(text)
                    err_console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)
    return result


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fmnist-cluster {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Clustering and analysis experiments on Fashion-MNIST."""


# -- preprocess ---------------------------------------------------------------------------
@app.command()
def preprocess(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artefact folder.")] = Path("outputs/data"),
    source: Annotated[
        str | None,
        typer.Option(help="Image source: sample (shipped, offline), idx, kaggle-csv, twisted-csv, torchvision. "
                     "Overrides the config's 'source' (default: sample).", show_default=False),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(help="Data folder for idx, kaggle-csv and twisted-csv. Overrides 'path'.", show_default=False),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Keep at most N images per split, stratified by label. Overrides 'limit'.", show_default=False),
    ] = None,
) -> None:
    """Read, check and prepare images: writes data.npz for every later stage.

    Sources: IDX files, Kaggle CSV, Twisted CSV (mystery labels), torchvision download, or the
    real sample shipped in the package. Optionally deskew, centre and standardise. data.npz holds
    float32 images (N, 1, 28, 28) in [0, 1], int64 labels and class names where known.
    """
    from fmnist_cluster.data import run_preprocess

    cfg = _run(lambda: _load(PreprocessConfig, config, sets, {"source": source, "path": path, "limit": limit}))
    with _progress() as progress:
        metrics = _run(lambda: run_preprocess(cfg, out, progress))
    console.print(
        f"[green]preprocess[/]: {metrics['n_train']} train + {metrics['n_test']} test images, "
        f"{metrics['n_classes']} classes -> {out}/data.npz"
    )


# -- cluster ------------------------------------------------------------------------------
@app.command()
def cluster(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    input_dir: Annotated[
        Path,
        typer.Option("--input", "-i", help="Features to cluster: an encode, preprocess (pixels) or train-som output folder."),
    ] = Path("outputs/encoding"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artefact folder.")] = Path("outputs/cluster"),
    images: Annotated[
        Path | None,
        typer.Option(help="preprocess output folder holding the images of the input rows (for montages and decoding). "
                     "Default: the folder recorded in the input's manifest, if still there.", show_default=False),
    ] = None,
    originals: Annotated[
        Path | None,
        typer.Option(help="preprocess output folder of the original 10-class Fashion-MNIST: decode the mystery labels "
                     "by matching image content (exact).", show_default=False),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="train-cnn output folder of a 10-class model trained on the original data: decode the "
                     "mystery labels by its predictions.", show_default=False),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Rows to cluster: test, train or all. Overrides 'split' (default: test).", show_default=False),
    ] = None,
) -> None:
    """Cluster features with KMeans (k given or chosen by silhouette), DBSCAN (automatic eps from
    the k-distance knee), HDBSCAN and agglomerative clustering; score them against the labels
    (ARI, NMI, homogeneity, completeness, purity, contingency, silhouette); with --originals
    and/or --reference, decode what each mystery label is made of (decoding.json)."""
    from fmnist_cluster.cluster import run_cluster
    from fmnist_cluster.config import ClusterConfig

    cfg = _run(lambda: _load(ClusterConfig, config, sets, {"split": split}))
    with _progress() as progress:
        summary = _run(lambda: run_cluster(cfg, input_dir, out, images, originals, reference, progress))
    parts = []
    for name, s in summary["algorithms"].items():
        ari = f" ARI {s['ari']:.3f}" if s.get("ari") is not None else ""
        noise = f" noise {s['noise_share']:.1%}" if name in ("dbscan", "hdbscan") else ""
        parts.append(f"{name} k={s['n_clusters']}{ari}{noise}")
    console.print(f"[green]cluster[/]: {summary['n']} rows, {summary['dims']} dims: {'; '.join(parts)} -> {out}")
    for line in summary["decoding"]:
        console.print(f"  {line}", highlight=False)


# -- embed --------------------------------------------------------------------------------
@app.command()
def embed(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    input_dir: Annotated[
        Path,
        typer.Option("--input", "-i", help="Features to embed: an encode, preprocess (pixels) or train-som output folder."),
    ] = Path("outputs/encoding"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artefact folder.")] = Path("outputs/embed"),
    split: Annotated[
        str | None,
        typer.Option(help="Rows to embed: test, train or all. Overrides 'split' (default: test).", show_default=False),
    ] = None,
) -> None:
    """Embed features in 2-D with PCA (plus explained variance), t-SNE and, when umap-learn is
    installed, UMAP; write embedding.npz (reused by report) and scatter plots by label."""
    from fmnist_cluster.config import EmbedConfig
    from fmnist_cluster.embed import run_embed

    cfg = _run(lambda: _load(EmbedConfig, config, sets, {"split": split}))
    with _progress() as progress:
        summary = _run(lambda: run_embed(cfg, input_dir, out, progress))
    console.print(
        f"[green]embed[/]: {summary['n']} rows, methods {', '.join(summary['methods'])}; "
        f"PC1+PC2 explain {summary['pca_2_variance']:.1%} -> {out}/embedding.npz"
    )


# -- report -------------------------------------------------------------------------------
@app.command()
def report(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--input", "-i", help="An artefact folder to include (repeatable; its stage is read from its "
                     "manifest). Default: every finished folder among outputs/{data,som,tune,cnn,encoding,cluster,embed}.",
                     show_default=False),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artefact folder.")] = Path("outputs/report"),
) -> None:
    """Gather the figures and tables of the given artefact folders into one self-contained HTML
    page (report.html, figures embedded) and a Markdown summary (report.md with figures/)."""
    from fmnist_cluster.config import ReportConfig
    from fmnist_cluster.report import DEFAULT_INPUTS, run_report

    cfg = _run(lambda: _load(ReportConfig, config, sets, {}))
    folders = list(inputs) if inputs else [p for p in DEFAULT_INPUTS if (p / "manifest.json").is_file()]
    summary = _run(lambda: run_report(cfg, folders, out))
    console.print(
        f"[green]report[/]: {summary['n_inputs']} artefact(s), {summary['n_figures']} figures, "
        f"{summary['n_tables']} tables -> {out}/report.html, {out}/report.md"
    )


def main() -> None:
    """Console-script entry point."""
    app()
