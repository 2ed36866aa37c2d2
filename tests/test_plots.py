"""Figures: the image grid's layout, the strips and atlases built on it, and the tune figures
(Optuna's plots) render quietly without restyling later figures."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pytest
from PIL import Image

from fmnist_cluster import plots
from fmnist_cluster.figure_workers import FigureRenderer


def _tiles(n: int, side: int = 3) -> np.ndarray:
    return np.arange(n * side * side, dtype=np.float32).reshape(n, side, side) + 1


def test_image_grid_lays_tiles_out_in_reading_order_with_padding() -> None:
    tiles = _tiles(5)
    grid = plots.image_grid(tiles, ncols=3, padding=1)
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 1)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, 3)
        assert np.array_equal(grid[1 + 4 * r : 4 + 4 * r, 1 + 4 * c : 4 + 4 * c], tile)
    assert np.isnan(grid[5:8, 9:12]).all()  # the empty slot
    assert np.isnan(grid[0]).all() and np.isnan(grid[:, 4]).all()  # border and gap
    inner = plots.image_grid(tiles, ncols=3, padding=1, border=False)
    assert np.array_equal(inner, grid[1:-1, 1:-1], equal_nan=True)


def test_image_grid_edge_cases() -> None:
    one = plots.image_grid(_tiles(1), ncols=4, padding=2)
    assert one.shape == (7, 7) and np.array_equal(one[2:5, 2:5], _tiles(1)[0])
    empty = plots.image_grid(np.zeros((0, 3, 3), np.float32), ncols=4, padding=2)
    assert empty.shape == (7, 7) and np.isnan(empty).all()
    atlas = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    expected = atlas.reshape(2, 3, 2, 2).transpose(0, 2, 1, 3).reshape(4, 6)
    assert np.array_equal(plots.image_grid(atlas, ncols=3, padding=0), expected)


@pytest.mark.parametrize(("n", "ncols", "padding"), [(1, 4, 2), (5, 3, 1), (6, 3, 0), (7, 10, 2), (12, 5, 3)])
def test_image_grid_matches_torchvision_make_grid(n: int, ncols: int, padding: int) -> None:
    import torch
    from torchvision.utils import make_grid

    tiles = _tiles(n, side=4)
    expected = make_grid(torch.from_numpy(tiles).unsqueeze(1), nrow=ncols, padding=padding, pad_value=-1.0)[0]
    if n == 1:  # make_grid hands a lone image back unpadded
        expected = np.pad(expected.numpy(), padding, constant_values=-1.0)
    assert np.array_equal(plots.image_grid(tiles, ncols, padding=padding, pad_value=-1.0), np.asarray(expected))


def test_stack_rows_gives_each_group_a_row() -> None:
    rows = [_tiles(2), _tiles(5), np.zeros((0, 3, 3))]
    stacked = plots.stack_rows(rows, ncols=4)
    assert stacked.shape == (12, 3, 3)
    assert np.array_equal(stacked[:2], _tiles(2)) and np.isnan(stacked[2:4]).all()
    assert np.array_equal(stacked[4:8], _tiles(4)) and np.isnan(stacked[8:]).all()


def test_image_strip_is_dark_on_white_with_grey_gaps() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    images[1] = 255
    strip = np.asarray(Image.open(io.BytesIO(plots.image_strip_png(images, scale=1, gap=2))))
    assert strip.shape == (28, 3 * 28 + 2 * 2)
    assert (strip[:, :28] == 255).all() and (strip[:, 30:58] == 0).all()
    assert (strip[:, 28:30] == 200).all() and (strip[:, 58:60] == 200).all()


def _decoded(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "L"
    return np.asarray(image)


def test_tile_picture_is_dark_on_white_pixel_for_pixel() -> None:
    tiles = np.stack([np.full((2, 2), v, np.float32) for v in (0.0, 1.0, 3.0)])
    tiles[2, 0, 0] = np.nan
    pixels = _decoded(plots.tile_picture_png(tiles, 2, gap=1))
    margin = 4  # 4 x gap of white around the grid
    grid = pixels[margin:-margin, margin:-margin]
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1) and (pixels[:margin] == 255).all()
    assert (grid[1:3, 1:3] == 255).all()  # the smallest value: white
    assert (grid[1:3, 4:6] == 170).all()  # a third of the way to black
    assert grid[4, 1] == 255 and (grid[4:6, 1:3].ravel()[1:] == 0).all()  # NaN white, the largest black
    assert (grid[0] == 255).all() and (grid[:, 3] == 255).all() and (grid[4:6, 4:6] == 255).all()  # gaps, no tile
    scaled = _decoded(plots.tile_picture_png(tiles, 2, gap=1, scale=3))
    assert np.array_equal(scaled[margin:-margin, margin:-margin], np.repeat(np.repeat(grid, 3, 0), 3, 1))
    with pytest.raises(ValueError, match="scale must be >= 1"):
        plots.tile_picture_png(tiles, 2, scale=0)


def test_tile_picture_title_sits_above_and_widens_a_narrow_picture() -> None:
    tiles = np.linspace(0, 1, 4 * 9, dtype=np.float32).reshape(4, 3, 3)
    plain = _decoded(plots.tile_picture_png(tiles, 2))
    titled = _decoded(plots.tile_picture_png(tiles, 2, title="A title much wider than the tiles $x$"))
    assert titled.shape[0] > plain.shape[0] and titled.shape[1] > plain.shape[1]
    band = titled[: titled.shape[0] - plain.shape[0]]
    assert band.min() < 100  # dark text
    assert (titled[-plain.shape[0] :].min(axis=0) < 255).sum() == (plain.min(axis=0) < 255).sum()  # tiles intact


def test_som_prototypes_are_one_pixel_per_weight_or_at_least_four_inches() -> None:
    weights = np.random.default_rng(0).random((50 * 50, 784)).astype(np.float32)
    big = _decoded(plots.som_prototypes(weights, 50, 50))
    assert big.shape[1] == 50 * 28 + 51 * 2 + 2 * 8  # tiles, gaps and the margin
    small = _decoded(plots.som_prototypes(weights[:4], 2, 2))
    assert small.shape[1] >= 4 * plots.DPI
    wide = _decoded(plots.som_prototypes(weights[:300], 1, 300))  # 9,002 px at one pixel per weight
    assert wide.shape[1] == 300 * 14 + 301 * 2 + 2 * 8  # every 2nd weight pixel each way
    widest = _decoded(plots.som_prototypes(np.zeros((1000, 784), np.float32), 1, 1000))
    assert widest.shape[1] <= plots.PROTOTYPES_MAX_WIDTH


@pytest.mark.parametrize("make", ["montage", "titled_tiles", "winners", "per_cluster"])
def test_montages_render(make: str) -> None:
    images = np.random.default_rng(0).random((12, 784)).astype(np.float32)
    captions = [f"$x_{i}$\nline" for i in range(12)]  # data text: never mathtext
    fig = {
        "montage": lambda: plots.montage(images, captions, ncols=5, suptitle="a $b"),
        "titled_tiles": lambda: plots.titled_tiles(images, captions, ncols=5, suptitle="a $b"),
        "winners": lambda: plots.som_winner_samples([(3, images[:4], 4), (7, images[:0], 0)], cols=5),
        "per_cluster": lambda: plots.images_per_cluster(images, np.arange(12) % 3 - 1, 3, 0, "kmeans"),
    }[make]()
    assert plots.figure_png(fig).startswith(b"\x89PNG")


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "minimize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    values = [(1, 5), (2, 2), (3, 3), (5, 1), (1, 6)]
    study.add_trials(
        [optuna.trial.create_trial(params={"x": i / 5}, distributions=dist, values=v) for i, v in enumerate(values)]
    )
    return study


def test_a_neuron_that_never_wins_is_white_on_both_panels_of_the_labels_map() -> None:
    coords = np.array([[c, r] for r in range(3) for c in range(3)], dtype=float)
    dominant = np.array([-1, 0, 1, 0, 1, 0, 1, 0, 1])
    purity = np.array([np.nan, 0.5, 1, 0.5, 1, 0.5, 1, 0.5, 1])
    fig = plots.som_labels_map(dominant, purity, coords, "rectangular", ["a", "b"], "test rows")
    collection = fig.axes[1].collections[0]
    faces = collection.to_rgba(collection.get_array())
    assert tuple(faces[0]) == (1.0, 1.0, 1.0, 1.0)  # never wins: white, not the colour of purity 0
    assert tuple(faces[1]) != (1.0, 1.0, 1.0, 1.0)


def test_tune_figures_are_quiet_and_leave_the_style_alone() -> None:
    study = _study()
    before = dict(matplotlib.rcParams)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = [
            plots.tune_history(study, lambda t: t.values[0], "QE", "history"),
            plots.tune_pareto(study, ["QE", "TE"], (2.0, 2.0)),
            plots.tune_importances({"qe": {"x": 1.0}, "te": {"x": 1.0}}),
        ]
        pngs = [plots.figure_png(fig) for fig in figures]
    assert all(png.startswith(b"\x89PNG") for png in pngs)
    assert dict(matplotlib.rcParams) == before  # Optuna's ggplot style stays inside its figures
    legend = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert legend == ["trial", "Pareto front", "chosen"]
    best = figures[0].axes[0].lines[-1]
    assert best.get_label() == "best so far" and list(best.get_ydata()) == [1, 1, 1, 1, 1]


def _fails(message: str) -> None:
    raise ValueError(message)


def _gc_state() -> bytes:
    """What a drawing process's garbage collector does, as bytes (as a picture function returns)."""
    import gc

    return f"enabled={gc.isenabled()} frozen={gc.get_freeze_count() > 0}".encode()


@pytest.mark.parametrize("workers", [1, 2])
def test_figure_renderer_gives_the_bytes_figure_png_gives(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "fails", _fails, raising=False)  # figures are named in fmnist_cluster.plots
    hits = np.arange(12, dtype=np.int64)
    coords = np.indices((3, 4)).reshape(2, -1).T
    grid = plots.image_grid(np.linspace(0, 1, 4 * 9, dtype=np.float32).reshape(4, 3, 3), ncols=2)
    weights = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    expected_hits = plots.figure_png(plots.som_hit_map(hits, coords, "rectangular", "t"))
    with FigureRenderer(workers=workers) as figures:
        first = figures.submit("som_hit_map", hits, coords, "rectangular", "t")
        second = figures.submit("montage", grid[None].repeat(3, 0), ["a", "b", "c"], ncols=3)
        picture = figures.submit("som_prototypes", weights, 2, 2)  # PNG bytes drawn pixel for pixel
        failed = figures.submit("fails", "no figure")
        unknown = figures.submit("no_such_figure")
    assert first.result() == expected_hits
    assert second.result()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.result() == plots.som_prototypes(weights, 2, 2)
    with pytest.raises(ValueError, match="no figure"):
        failed.result()
    with pytest.raises(AttributeError, match="no_such_figure"):
        unknown.result()


def test_figure_renderer_rejects_no_workers() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        FigureRenderer(workers=0)


def test_figure_workers_collect_garbage_without_the_plotting_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forked from a command line that starts with the collector off, a worker turns it on, with
    the objects of its imports frozen out of it."""
    import gc

    if not FigureRenderer.can_fork():
        pytest.skip("no fork on this system: figures are drawn in the calling process")
    monkeypatch.setattr(plots, "gc_state", _gc_state, raising=False)
    gc.disable()
    try:
        with FigureRenderer(workers=2) as figures:
            state = figures.submit("gc_state").result()
    finally:
        gc.enable()
    assert state == b"enabled=True frozen=True"


def _sigint_plot() -> matplotlib.figure.Figure:
    """A figure whose title says how the drawing process treats Ctrl-C."""
    import signal

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_title("ignored" if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else "handled")
    return fig


def test_figure_workers_leave_ctrl_c_to_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "sigint_plot", _sigint_plot, raising=False)
    if not FigureRenderer.can_fork():
        pytest.skip("no fork on this system: figures are drawn in the calling process")
    expected = {}
    for title in ("ignored", "handled"):
        fig = _sigint_plot()
        fig.axes[0].set_title(title)
        expected[title] = plots.figure_png(fig)
    with FigureRenderer(workers=2) as figures:
        png = figures.submit("sigint_plot").result()
    assert png == expected["ignored"] != expected["handled"]


@pytest.mark.serial
def test_figure_workers_end_with_their_parent(tmp_path: Path) -> None:
    """A command killed outright (SIGKILL, out of memory) leaves no figure worker behind to hold
    its pipes open."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not FigureRenderer.can_fork():
        pytest.skip("no fork on this system: figures are drawn in the calling process")
    script = (
        "import os, sys, time\n"
        "from fmnist_cluster.figure_workers import FigureRenderer\n"
        "with FigureRenderer(workers=2) as figures:\n"
        "    pids = {p.pid for p in figures._pool._processes.values()}\n"
        "    print(*sorted(pids), flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert parent.stdout is not None
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2

    def alive(pid: int) -> bool:
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return status != "Z"

    assert all(alive(pid) for pid in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:  # do not leave them behind if the check fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "figure workers outlived their parent"
