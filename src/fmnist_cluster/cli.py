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
    typer.Option("--config", "-c", help="YAML config of this stage. Default: the built-in defaults, "
                 "which configs/<stage>.yaml also holds.", show_default=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one config key: dotted.key=value (value read as YAML). "
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
    """Read images (IDX, Kaggle CSV, Twisted CSV, torchvision or the shipped sample), check them,
    optionally deskew / centre / standardise, and write data.npz (float32 (N, 1, 28, 28) in
    [0, 1], int64 labels, class names where known)."""
    from fmnist_cluster.data import run_preprocess

    cfg = _run(lambda: _load(PreprocessConfig, config, sets, {"source": source, "path": path, "limit": limit}))
    with _progress() as progress:
        metrics = _run(lambda: run_preprocess(cfg, out, progress))
    console.print(
        f"[green]preprocess[/]: {metrics['n_train']} train + {metrics['n_test']} test images, "
        f"{metrics['n_classes']} classes -> {out}/data.npz"
    )


def main() -> None:
    """Console-script entry point."""
    app()
