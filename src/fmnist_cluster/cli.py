"""Command line: thin wrappers that parse options, load the typed config and call one
library function each. Our single exception type becomes one red line and exit code 2."""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from fmnist_cluster import __version__
from fmnist_cluster.artefacts import Progress, check_out_dir, keep_freed_memory
from fmnist_cluster.config import (
    COMMAND_CONFIGS,
    DEVICES,
    SOURCES,
    SPLITS,
    ClusterConfig,
    CnnConfig,
    EmbedConfig,
    EncodeConfig,
    PreprocessConfig,
    SomConfig,
    TuneConfig,
    load_config,
    one_of,
    overrides_help,
)
from fmnist_cluster.errors import FmnistError, Interrupted
from fmnist_cluster.terminal import console, err_console, escape, live_progress

app = typer.Typer(
    name="fmnist-cluster",
    help="Clustering and analysis experiments on Fashion-MNIST: SOMs on pixels, and CNN "
    "encodings of mystery labels. Each command reads a YAML config (--config), applies "
    "--set overrides, reads upstream artefact folders (--input) and writes one (--out).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


# -- shared option types ------------------------------------------------------------------
def _config(command: str) -> Any:
    """The ``--config``/``-c`` option of ``command``, naming the shipped file of its defaults."""
    shipped = COMMAND_CONFIGS[command][1]
    return typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help=f"YAML config of this stage. Default: the built-in defaults, which {shipped} also holds.",
        show_default=False,
    )


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override one config key: dotted.key=value (value read as YAML). Repeatable; applied after --config.",
        show_default=False,
    ),
]

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output artefact folder.")]


def _input(help: str) -> Any:
    """The ``--input``/``-i`` option: the upstream artefact folder a stage reads."""
    return typer.Option("--input", "-i", help=help)


def _option(help: str, *names: str) -> Any:
    """An option whose help text says itself what happens without it (mostly: the config default)."""
    return typer.Option(*names, help=help, show_default=False)


MapInputOpt = Annotated[Path, _input("Features to map: a preprocess (pixels) or encode output folder.")]


def _guard(out: Path, stage: str, **inputs: Path | None) -> None:
    """Refuse an --out that is one of the stage's input folders or another stage's artefact."""
    _run(lambda: check_out_dir(out, stage, [(f"--{name}", path) for name, path in inputs.items()]))


# -- loading, guarding and running a stage ------------------------------------------------
def _load(model: type[M], config: Path | None, sets: list[str] | None, extra: dict[str, Any]) -> M:
    """The typed config: --config, then --set, then the command's own options (those given)."""
    return _run(lambda: load_config(model, config, list(sets or []), extra))


def _stage(
    stage: str, out: Path, inputs: dict[str, Path | None], call: Callable[[Progress], R], checkpoint: str | None = None
) -> R:
    """Refuse a bad --out, then run ``call(progress)`` (the stage function with every argument
    but the progress reporter) with progress shown; returns the stage's summary. Ctrl-C ends
    in one line that says what is left: ``checkpoint`` names the file in --out that
    ``--resume`` continues from, for the stages that have one."""
    _guard(out, stage, **inputs)
    try:
        with live_progress() as progress:
            return _run(lambda: call(progress))
    except KeyboardInterrupt:
        if checkpoint is not None and (out / checkpoint).is_file():
            left = f"run the same command with --resume to continue from {_shown(out / checkpoint)}"
        else:
            left = f"nothing of it was published to {_shown(out)}"
        _error(f"interrupted: {stage} stopped; {left}")
        raise typer.Exit(Interrupted.exit_code) from None


def _error(markup: str) -> None:
    """The one ``error:`` line of a failed command (``markup``: rich markup, user text escaped)."""
    global _ERROR_SAID
    _ERROR_SAID = True
    err_console.print(f"[bold red]error:[/] {markup}", highlight=False, soft_wrap=True)


_ERROR_SAID = False
"""Whether the command has printed its error line (an interrupt caught by the option parser
before any stage ran has not)."""


def _run(call: Callable[[], Any]) -> Any:
    """Run a stage; FmnistError and warnings are shown as one line each."""
    collect_from_here()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except FmnistError as exc:
            _error(escape(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            _error(escape(f"{exc.strerror}{where}; {_DISK_ERRORS[exc.errno]}"))
            raise typer.Exit(FmnistError.exit_code) from None
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen and w.category.__module__.startswith("fmnist_cluster"):
                    seen.add(text)
                    err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)
    return result


_DISK_ERRORS = {
    errno.ENOSPC: "free some space or pass an --out on another disk",
    errno.EDQUOT: "free some space or pass an --out on another disk",
    errno.EROFS: "pass a writable --out",
    errno.EIO: "check the disk",
}
"""What the machine's disks can refuse while a stage writes (the folder itself is checked
before the stage starts), and what to do."""


def _shown(path: Path) -> str:
    """A user's path inside a line of rich markup: ``[`` in a folder name is text, not a style."""
    return escape(str(path))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fmnist-cluster {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Clustering and analysis experiments on Fashion-MNIST."""
    keep_freed_memory()  # a process-wide allocator setting, made here rather than inside any fit


# -- preprocess ---------------------------------------------------------------------------
@app.command()
def preprocess(
    config: Annotated[Path | None, _config("preprocess")] = None,
    sets: SetOpt = None,
    out: OutOpt = Path("outputs/data"),
    source: Annotated[
        str | None,
        _option(
            f"Image source: {one_of(SOURCES)} (sample is shipped with the package and works offline). "
            + overrides_help(PreprocessConfig, "source")
        ),
    ] = None,
    path: Annotated[
        Path | None,
        _option(
            "Data folder for idx, kaggle-csv and twisted-csv. "
            + overrides_help(PreprocessConfig, "path", none="none; the sample and torchvision need none")
        ),
    ] = None,
    limit: Annotated[
        int | None,
        _option(
            "Keep at most N images per split, stratified by label. "
            + overrides_help(PreprocessConfig, "limit", none="none, every image")
        ),
    ] = None,
) -> None:
    """Read, check and prepare images: writes data.npz for every later stage.

    Sources: IDX files, Kaggle CSV, Twisted CSV (mystery labels), torchvision download, or the
    real sample shipped in the package. Optionally deskew, centre and standardise. data.npz holds
    float32 images (N, 1, 28, 28) in [0, 1] (unless standardised), int64 labels and class names
    where known.
    """
    from fmnist_cluster.data import run_preprocess

    cfg = _load(PreprocessConfig, config, sets, {"source": source, "path": path, "limit": limit})
    data = Path(cfg.path).expanduser() if cfg.path else None
    metrics = _stage("preprocess", out, {"path": data}, partial(run_preprocess, cfg, out))
    kind = "mystery labels" if cfg.source == "twisted-csv" or cfg.relabel is not None else "classes"
    console.print(
        f"[green]preprocess[/]: {metrics['n_train']} train + {metrics['n_test']} test images, "
        f"{metrics['n_classes']} {kind} -> {_shown(out)}/data.npz"
    )


# -- cluster ------------------------------------------------------------------------------
@app.command(
    short_help="KMeans, DBSCAN (auto eps), HDBSCAN, agglomerative on features; metrics; mystery-label decoding."
)
def cluster(
    config: Annotated[Path | None, _config("cluster")] = None,
    sets: SetOpt = None,
    input_dir: Annotated[
        Path,
        _input("Features to cluster: an encode, preprocess (pixels) or train-som output folder."),
    ] = Path("outputs/encoding"),
    out: OutOpt = Path("outputs/cluster"),
    images: Annotated[
        Path | None,
        _option(
            "preprocess output folder holding the images of the input rows (for montages and decoding). "
            "Default: the folder recorded in the input's manifest, if still there."
        ),
    ] = None,
    originals: Annotated[
        Path | None,
        _option(
            "preprocess output folder of the original 10-class Fashion-MNIST: decode the mystery labels "
            "by matching image content (exact)."
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        _option(
            "train-cnn output folder of a 10-class model trained on the original data: decode the "
            "mystery labels by its predictions."
        ),
    ] = None,
    split: Annotated[
        str | None,
        _option(f"Rows to cluster: {one_of(SPLITS)}. " + overrides_help(ClusterConfig, "split")),
    ] = None,
) -> None:
    """Cluster features with KMeans (k given or chosen by silhouette), DBSCAN (automatic eps on
    the k-distance curve), HDBSCAN and agglomerative clustering; score them against the labels
    (ARI, NMI, homogeneity, completeness, purity, contingency, silhouette); with --originals
    and/or --reference, decode what each mystery label is made of (decoding.json)."""
    from fmnist_cluster.cluster import run_cluster

    cfg = _load(ClusterConfig, config, sets, {"split": split})
    inputs = {"input": input_dir, "images": images, "originals": originals, "reference": reference}
    summary = _stage("cluster", out, inputs, partial(run_cluster, cfg, input_dir, out, images, originals, reference))
    parts = []
    for name, s in summary["algorithms"].items():
        ari = f" ARI {s['ari']:.3f}" if s.get("ari") is not None else ""
        noise = f" noise {s['noise_share']:.1%}" if name in ("dbscan", "hdbscan") else ""
        parts.append(f"{name} k={s['n_clusters']}{ari}{noise}")
    console.print(
        f"[green]cluster[/]: {summary['n']} rows, {summary['dims']} dims: {'; '.join(parts)} -> {_shown(out)}"
    )
    for line in summary["explanation"] or summary["decoding"]:
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


# -- embed --------------------------------------------------------------------------------
@app.command(short_help="PCA, t-SNE (and UMAP if installed) of features, saved for report.")
def embed(
    config: Annotated[Path | None, _config("embed")] = None,
    sets: SetOpt = None,
    input_dir: Annotated[
        Path,
        _input("Features to embed: an encode, preprocess (pixels) or train-som output folder."),
    ] = Path("outputs/encoding"),
    out: OutOpt = Path("outputs/embed"),
    split: Annotated[
        str | None,
        _option(f"Rows to embed: {one_of(SPLITS)}. " + overrides_help(EmbedConfig, "split")),
    ] = None,
) -> None:
    """Embed features in 2-D with PCA (plus explained variance), t-SNE and, when umap-learn is
    installed, UMAP; write embedding.npz (reused by report) and scatter plots by label."""
    from fmnist_cluster.embed import run_embed

    cfg = _load(EmbedConfig, config, sets, {"split": split})
    summary = _stage("embed", out, {"input": input_dir}, partial(run_embed, cfg, input_dir, out))
    console.print(
        f"[green]embed[/]: {summary['n']} rows, methods {', '.join(summary['methods'])}; "
        f"PC1+PC2 explain {summary['pca_2_variance']:.1%} -> {_shown(out)}/embedding.npz"
    )
    for method, why in summary["skipped"].items():
        console.print(f"  {method} skipped: {escape(why)}", highlight=False, soft_wrap=True)


# -- report -------------------------------------------------------------------------------
@app.command(short_help="One self-contained HTML page and a Markdown summary of any artefact folders.")
def report(
    config: Annotated[Path | None, _config("report")] = None,
    sets: SetOpt = None,
    inputs: Annotated[
        list[Path] | None,
        _option(
            "An artefact folder to include (repeatable; its stage is read from its "
            "manifest). Default: every finished folder among "
            "outputs/{data,som,tune,cnn,encoding,cluster,embed}.",
            "--input",
            "-i",
        ),
    ] = None,
    out: OutOpt = Path("outputs/report"),
) -> None:
    """One self-contained HTML page of the given artefact folders (report.html: the findings
    first, an interactive explorer of the embeddings and SOMs, then every table and figure; the
    still pictures of what the explorer draws are linked from figures/, not inlined) and a
    Markdown summary (report.md with figures/)."""
    from fmnist_cluster.config import ReportConfig
    from fmnist_cluster.report import DEFAULT_INPUTS, run_report

    cfg = _load(ReportConfig, config, sets, {})
    folders = list(inputs) if inputs else [p for p in DEFAULT_INPUTS if (p / "manifest.json").is_file()]
    _run(lambda: check_out_dir(out, "report", [("--input", folder) for folder in folders]))
    summary = _run(lambda: run_report(cfg, folders, out))
    explored = [f"{summary['explorer_points']} points"] if summary["explorer_points"] else []
    if summary["explorer_maps"]:
        explored.append(f"{summary['explorer_maps']} SOM(s)")
    console.print(
        f"[green]report[/]: {summary['n_inputs']} artefact(s), {summary['n_figures']} figures, "
        f"{summary['n_tables']} tables, explorer: {' and '.join(explored) or 'none'} "
        f"-> {_shown(out)}/report.html ({summary['html_bytes'] / 1e6:.1f} MB), {_shown(out)}/report.md"
    )
    if summary["answer"]:
        console.print(f"  mystery labels: {escape(summary['answer'])}")


# -- train-som ----------------------------------------------------------------------------
@app.command("train-som", short_help="Train a self-organising map (batch torch engine or MiniSom) and analyse it.")
def train_som(
    config: Annotated[Path | None, _config("train-som")] = None,
    sets: SetOpt = None,
    input_dir: MapInputOpt = Path("outputs/data"),
    out: OutOpt = Path("outputs/som"),
    engine: Annotated[
        str | None,
        _option("batch (torch Kohonen batch map) or minisom. " + overrides_help(SomConfig, "som.engine")),
    ] = None,
    epochs: Annotated[
        float | None,
        _option("Epochs (batch) or passes (minisom). " + overrides_help(SomConfig, "som.epochs")),
    ] = None,
    device: Annotated[
        str | None,
        _option(f"{one_of(DEVICES)}. " + overrides_help(SomConfig, "train.device")),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted batch run from OUT/checkpoint.npz.")
    ] = False,
) -> None:
    """Train a self-organising map (batch engine in torch, or MiniSom) on pixels or encodings,
    with per-epoch QE/TE, checkpoints and resume; write som.npz, metrics.json (QE, TE, neuron
    usage, purity, neuron-majority test accuracy) and figures: U-matrix with class markers, hit
    map, IQR outlier neurons, labels map, prototypes, winner samples, largest-QE samples."""
    from fmnist_cluster.figure_workers import FigureRenderer

    with FigureRenderer(workers=2) as figures:  # forked before torch loads: they import matplotlib meanwhile
        from fmnist_cluster.som import CHECKPOINT, run_train_som

        cfg = _load(SomConfig, config, sets, {"som.engine": engine, "som.epochs": epochs, "train.device": device})
        stage = partial(run_train_som, cfg, input_dir, out, resume=resume, figures=figures)
        m = _stage("train-som", out, {"input": input_dir}, stage, checkpoint=CHECKPOINT)
    test = ""
    for end, rows, accuracy in (
        ("", "test rows", "test accuracy"),
        ("_in_sample", "test rows (in-sample: pooled, trained on them)", "accuracy"),
    ):
        if f"test_qe{end}" in m:  # held out, or pooled into the training rows
            acc = f", {accuracy} {m[f'test_accuracy{end}']:.3f}" if f"test_accuracy{end}" in m else ""
            test = f"; {rows} QE {m[f'test_qe{end}']:.3f}, TE {m[f'test_te{end}']:.4f}{acc}"
            break
    console.print(
        f"[green]train-som[/]: {m['engine']} {cfg.som.rows}x{cfg.som.cols} trained on {m['n_fit']} rows in "
        f"{m['train_seconds']:.1f} s: QE {m['qe']:.3f}, TE {m['te']:.4f} on them{test} -> {_shown(out)}"
    )


# -- tune ---------------------------------------------------------------------------------
@app.command(short_help="Bayesian optimisation (Optuna TPE) of train-som settings on trained maps.")
def tune(
    config: Annotated[Path | None, _config("tune")] = None,
    sets: SetOpt = None,
    input_dir: MapInputOpt = Path("outputs/data"),
    out: OutOpt = Path("outputs/tune"),
    storage: Annotated[
        str | None,
        _option(
            "Optuna database URL shared by workers on many machines (postgresql+psycopg://user@host/db). "
            + overrides_help(TuneConfig, "storage", none="the journal file OUT/study.journal")
        ),
    ] = None,
    workers: Annotated[
        int | None,
        _option("Worker processes to run on this host, all on one study. " + overrides_help(TuneConfig, "workers")),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option(
            "--n-trials",
            help="Finished trials the study should reach. " + overrides_help(TuneConfig, "n_trials"),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Bayesian optimisation (Optuna TPE) of train-som settings: every trial trains a map and is
    scored on held-out rows by QE and TE (Pareto front, or a scalar score with pruning). --workers N
    runs N processes on one study; machines sharing one --storage database add more. A restarted
    run keeps finished trials; Ctrl-C stops every worker. Writes best.yaml (a train-som
    --config), trials.csv and figures."""
    from fmnist_cluster.tune import run_tune

    cfg = _load(TuneConfig, config, sets, {"storage": storage, "n_trials": n_trials, "workers": workers})
    s = _stage("tune", out, {"input": input_dir}, partial(run_tune, cfg, input_dir, out))
    console.print(
        f"[green]tune[/]: {s['n_complete']} finished trials ({s['n_pruned']} pruned); best #{s['best_trial']}: "
        f"held-out QE {s['best_qe']:.3f}, TE {s['best_te']:.4f} -> {_shown(out)}/best.yaml"
    )


# -- train-cnn ----------------------------------------------------------------------------
@app.command("train-cnn", short_help="Train a CNN defined in YAML on labelled images (K from the labels).")
def train_cnn(
    config: Annotated[Path | None, _config("train-cnn")] = None,
    sets: SetOpt = None,
    input_dir: Annotated[Path, _input("Labelled images: a preprocess output folder.")] = Path("outputs/data"),
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output artefact folder (model.pt, metrics, figures).")
    ] = Path("outputs/cnn"),
    epochs: Annotated[
        int | None,
        _option("Training epochs. " + overrides_help(CnnConfig, "train.epochs")),
    ] = None,
    device: Annotated[str | None, _option(f"{one_of(DEVICES)}. " + overrides_help(CnnConfig, "device"))] = None,
    threads: Annotated[
        int | None,
        _option("torch CPU threads. " + overrides_help(CnnConfig, "threads", none="one per core")),
    ] = None,
    seed: Annotated[int | None, _option(overrides_help(CnnConfig, "seed"))] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run from OUT/train-state.pt (same config and data)."),
    ] = False,
) -> None:
    """Train a convolutional network defined in YAML (configs/cnn.yaml; the study's designs are
    configs/cnn-reference.yaml and configs/cnn-seed-own.yaml) on labelled images; K comes from the
    labels. Holds out a seeded validation split, shows per-epoch loss/accuracy, keeps the best
    epoch, can stop early and resume. Writes model.pt (weights + architecture + K + class names),
    metrics.json (test accuracy, loss, per-class accuracy, right/wrong counts; times and
    images/s are in the manifest's timings),
    predictions.npz, learning_curves.png, confusion_matrix.png and misclassified.png."""
    from fmnist_cluster.cnn import STATE_FILE, run_train_cnn

    cfg = _load(CnnConfig, config, sets, {"train.epochs": epochs, "device": device, "threads": threads, "seed": seed})
    stage = partial(run_train_cnn, cfg, input_dir, out, resume=resume)
    m = _stage("train-cnn", out, {"input": input_dir}, stage, checkpoint=STATE_FILE)
    console.print(
        f"[green]train-cnn[/]: test accuracy {100 * m['test_accuracy']:.2f} % ({m['n_right']}/{m['n_test']} right), "
        f"K={m['n_classes']}, {m['epochs_run']} epochs in {m['train_seconds']:.0f} s "
        f"({m['train_images_per_s']:.0f} images/s), best epoch {m['best_epoch']} -> {_shown(out)}/model.pt"
    )


# -- encode -------------------------------------------------------------------------------
@app.command(short_help="Take one named layer of a trained CNN as features (data.npz) for later stages.")
def encode(
    config: Annotated[Path | None, _config("encode")] = None,
    sets: SetOpt = None,
    model: Annotated[
        Path, typer.Option("--model", "-m", help="The trained network: a train-cnn output folder.")
    ] = Path("outputs/cnn"),
    input_dir: Annotated[
        Path,
        _input("Images to encode: a preprocess output folder (prepared like the training images)."),
    ] = Path("outputs/data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artefact folder (data.npz).")] = Path(
        "outputs/encoding"
    ),
    layer: Annotated[
        str | None,
        _option(
            "Named layer to take the output of (see --list-layers). "
            + overrides_help(EncodeConfig, "layer", none="the last dense layer before the output layer")
        ),
    ] = None,
    device: Annotated[str | None, _option(f"{one_of(DEVICES)}. " + overrides_help(EncodeConfig, "device"))] = None,
    list_layers: Annotated[
        bool, typer.Option("--list-layers", help="Print the model's named layers with their output shapes and exit.")
    ] = False,
) -> None:
    """Encode images with a trained network: the output of one named layer (forward hook, in
    batches) for the train and test images, written as data.npz (float32 (N, D) features, the
    labels, class names and layer name) that cluster, embed and train-som read like pixels.
    Example: encode --model outputs/cnn --input outputs/data --layer dense64."""
    from fmnist_cluster.encode import list_layers as layers_of
    from fmnist_cluster.encode import run_encode

    if list_layers:
        rows, default = _run(lambda: layers_of(model))
        width = max(len(r["name"]) for r in rows)
        typer.echo(f"layers of {model}/model.pt (output shape per image):")
        for r in rows:
            mark = "  <- default" if r["name"] == default else ""
            shape = "x".join(str(s) for s in r["shape"])
            typer.echo(f"  {r['name']:<{width}}  {r['type']:<11} {shape:>10}  ({r['size']} values){mark}")
        return
    cfg = _load(EncodeConfig, config, sets, {"layer": layer, "device": device})
    inputs = {"input": input_dir, "model": model}
    m = _stage("encode", out, inputs, partial(run_encode, cfg, model, input_dir, out))
    console.print(
        f"[green]encode[/]: layer '{m['layer']}', {m['n_train']} train + {m['n_test']} test images -> "
        f"{m['dim']} features each in {m['seconds']:.1f} s ({m['images_per_s']:.0f} images/s) -> {_shown(out)}/data.npz"
    )


def main() -> None:
    """Console-script entry point.

    The option parser's own errors (a value of the wrong type, an unknown option) end like every
    other error of the toolkit: one ``error:`` line and exit code 2, not a usage box.
    """
    global _ERROR_SAID
    _ERROR_SAID = False
    signal.signal(signal.SIGTERM, _terminated)
    # an unwritable HOME makes matplotlib log two long warnings per process (and use a temporary
    # cache); the figures are the same, so only its errors are shown
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    gc.disable()  # until the stage runs: see collect_from_here
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        message = getattr(exc, "format_message", None)
        if not (callable(message) and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        _error(escape(message()))
        code = exc.exit_code
    finally:
        gc.enable()
    if code == Interrupted.exit_code and not _ERROR_SAID:  # Ctrl-C while the command was starting
        _error("interrupted; --out holds its previous artefact or the complete new one, never a part")
    _exit(code if isinstance(code, int) else 0)


_MAIN_PID = os.getpid()


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, ``timeout``, a cancelled CI job) ends a command as Ctrl-C does: one
    line, the staging folder removed, the previous artefact kept. A process forked from the
    command (a figure worker not yet set up) just ends: the command reports for it."""
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def collect_from_here() -> None:
    """Turn the cyclic garbage collector back on, leaving out every object that exists now.

    :func:`main` starts with the collector off: the imports of a command (torch, scikit-learn,
    matplotlib) create some 280,000 long-lived objects, and collecting while they pile up scans
    them again and again, 0.33 s of the 2.2 s ``train-som`` spends importing (docs/benchmarks.md).
    Once they are in, they are frozen (never scanned again) and collection resumes. Idempotent.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _exit(code: int) -> None:
    """End the process with ``code`` once the command is over, without the interpreter's teardown.

    Every artefact is committed (atomic renames) and every file closed by then; what is left is
    the teardown of torch, torchvision and scikit-learn, 0.5-0.9 s of every command on a 2-core
    machine (docs/benchmarks.md). Output is flushed first. An unexpected exception never gets
    here: it ends the usual way, with its traceback.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
