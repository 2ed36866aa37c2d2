"""Report: a round trip from real artefact folders to one self-contained HTML page and a
Markdown summary; embeddings are read, not recomputed; bad inputs."""

from __future__ import annotations

import base64
import html.parser
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fmnist_cluster import embed as embed_module
from fmnist_cluster.cli import app
from fmnist_cluster.config import ReportConfig, load_config
from tests.conftest import write_twisted

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


class _Images(html.parser.HTMLParser):
    """Collects <img> sources, section ids and the text of table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.sections: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.sources.append(values.get("src") or "")
        if tag == "section":
            self.sections.append(values.get("id") or "")
        self._in_cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small mystery study: originals, a Twisted set, clustering with decoding, embedding."""
    from fmnist_cluster.data import write_idx
    from tests.conftest import make_images

    root = tmp_path_factory.mktemp("study")
    idx = root / "idx"
    for prefix, n, seed in (("train", 50, 0), ("t10k", 20, 1)):
        images, labels = make_images(n, seed)
        write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", labels)
    mapping = np.array([2, 0, 1, 0, 2, 1, 1, 2, 0, 2])
    twisted_csv = write_twisted(root / "tw-csv", 50, 20, mapping)
    paths = {name: root / name for name in ("orig", "tw", "cluster", "embed")}
    steps = [
        ["preprocess", "--source", "idx", "--path", str(idx), "--out", str(paths["orig"])],
        ["preprocess", "--source", "twisted-csv", "--path", str(twisted_csv), "--out", str(paths["tw"])],
        [
            "cluster",
            "--input",
            str(paths["tw"]),
            "--out",
            str(paths["cluster"]),
            "--split",
            "all",
            "--originals",
            str(paths["orig"]),
            "--set",
            "reduce.pca_components=10",
            "--set",
            "silhouette_sample=50",
        ],
        [
            "embed",
            "--input",
            str(paths["tw"]),
            "--out",
            str(paths["embed"]),
            "--split",
            "all",
            "--set",
            "tsne.max_iter=250",
            "--set",
            "tsne.perplexity=10",
            "--set",
            "threads=1",
        ],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    return paths


def test_report_round_trip(study: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("report must not recompute embeddings")

    monkeypatch.setattr(embed_module, "tsne_embedding", refuse)
    monkeypatch.setattr(embed_module, "pca_embedding", refuse)
    out = tmp_path / "report"
    args = ["report", "--out", str(out)]
    for name in ("embed", "cluster", "tw"):  # any order: sections follow the pipeline
        args += ["--input", str(study[name])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    assert parser.sections == ["overview", "preprocess-1", "cluster-1", "embed-1"]
    # every figure is embedded, decodes as PNG, and matches the copy in figures/
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(parser.sources) == len(pngs) > 20
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="http' not in page and "<script" not in page
    names = {p.stem for p in pngs}
    for expected in (
        "embed-pca-by-kmeans",
        "embed-tsne-by-kmeans",
        "embed-tsne-by-dbscan",
        "embed-tsne-by-label",
        "cluster-decode-composition",
        "cluster-dbscan-k-distance",
        "cluster-mean-image-per-label",
        "cluster-images-per-cluster-kmeans",
        "cluster-correct-incorrect",
    ):
        assert expected in names, expected
    # the decoding table shows what decoding.json says
    decoding = json.loads((study["cluster"] / "decoding.json").read_text())
    for entry in decoding["labels"]:
        assert entry["summary"].split("≈", 1)[1].strip() in parser.cells
    assert "ARI" in page and "silhouette" in page
    md = (out / "report.md").read_text(encoding="utf-8")
    links = [line.split("](", 1)[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) == len(pngs) and all((out / link).is_file() for link in links)
    assert "| label | images | composition | members | clusters |" in md
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "report" and any(k.endswith("embedding.npz") for k in manifest["inputs"])


def test_report_is_deterministic(study: dict[str, Path], tmp_path: Path) -> None:
    pages = []
    for name in ("a", "b"):
        result = runner.invoke(
            app,
            ["report", "--input", str(study["cluster"]), "--input", str(study["embed"]), "--out", str(tmp_path / name)],
        )
        assert result.exit_code == 0, result.output
        pages.append((tmp_path / name / "report.md").read_text())
    assert pages[0] == pages[1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(study: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert runner.invoke(app, ["report", "--input", str(study["cluster"]), "--out", str(out)]).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            (out / "report.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1200
    assert pixels[..., :3].std() > 0.1  # not a blank page


@pytest.mark.parametrize(
    ("make", "args", "words"),
    [
        ("none", [], "report has no input"),
        ("missing", ["--input", "MISSING"], "does not exist"),
        ("unfinished", ["--input", "UNFINISHED"], "manifest.json is missing"),
        ("ok", ["--set", "titel=x"], "unknown config key 'titel'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, make: str, args: list[str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no outputs/ here, so no default inputs
    (tmp_path / "unfinished").mkdir()
    args = [
        str(tmp_path / "missing") if a == "MISSING" else str(tmp_path / "unfinished") if a == "UNFINISHED" else a
        for a in args
    ]
    result = runner.invoke(app, ["report", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output and result.output.strip().startswith("error:")
    assert not (tmp_path / "r" / "manifest.json").exists()


def test_shipped_config_is_the_defaults() -> None:
    shipped = yaml.safe_load((ROOT / "configs" / "report.yaml").read_text())
    assert shipped == ReportConfig().model_dump(mode="json")
    assert load_config(ReportConfig, ROOT / "configs" / "report.yaml") == ReportConfig()
