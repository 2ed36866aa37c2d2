"""Report: a round trip from real artefact folders to one self-contained HTML page and a
Markdown summary that open with the findings; the explainer's output (a hand-written fixture)
and its absence; escaping and file names of artefact strings; the explorer's data; bad inputs.
Browser tests of the explorer: tests/test_report_browser.py."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fmnist_cluster import embed as embed_module
from fmnist_cluster.cli import app
from fmnist_cluster.config import CnnConfig, ReportConfig, SomConfig, load_config
from fmnist_cluster.report.document import fmt, md_text, slug
from fmnist_cluster.report.findings import cnn_design, is_tutorial_som
from tests.browser import chrome_options
from tests.conftest import assert_same_outputs, write_twisted

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
JS = (ROOT / "src" / "fmnist_cluster" / "report" / "explorer.js").read_text(encoding="utf-8")


class Page(html.parser.HTMLParser):
    """Collects <img> sources, section ids, scripts and the text of table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.sections: list[str] = []
        self.cells: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self._in_cell = False
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "img":
            self.sources.append(values.get("src") or "")
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag == "section":
            self.sections.append(values.get("id") or "")
        if tag == "script":
            self._script = values
        self._in_cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts.append((self._script, data))
            self._script = None
        if self._in_cell:
            self.cells.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        if tag == "script":
            self._script = None


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small mystery study: originals, a Twisted set, a SOM, a CNN, clustering with decoding,
    embedding."""
    from tests.conftest import write_idx_folder

    root = tmp_path_factory.mktemp("study")
    idx = write_idx_folder(root / "idx")
    mapping = np.array([2, 0, 1, 0, 2, 1, 1, 2, 0, 2])
    twisted_csv = write_twisted(root / "tw-csv", 50, 20, mapping)
    paths = {name: root / name for name in ("orig", "tw", "som", "cnn", "cluster", "embed")}
    som = ["--set", "som.rows=4", "--set", "som.cols=5", "--set", "som.sigma=2", "--epochs", "3", "--device", "cpu"]
    cnn = ["-c", str(ROOT / "configs" / "cnn-reference.yaml"), "--set", "train.epochs=1", "--set", "threads=1"]
    cluster = ["--originals", str(paths["orig"]), "--set", "reduce.pca_components=10", "--set", "silhouette_sample=50"]
    embed = ["--set", "tsne.max_iter=250", "--set", "tsne.perplexity=10", "--set", "threads=1"]
    steps = [
        ["preprocess", "--source", "idx", "--path", str(idx), "--out", str(paths["orig"])],
        ["preprocess", "--source", "twisted-csv", "--path", str(twisted_csv), "--out", str(paths["tw"])],
        ["train-som", "--input", str(paths["orig"]), "--out", str(paths["som"]), *som],
        ["train-cnn", "-i", str(paths["tw"]), "-o", str(paths["cnn"]), "--device", "cpu", *cnn],
        ["cluster", "--input", str(paths["tw"]), "--out", str(paths["cluster"]), "--split", "all", *cluster],
        ["embed", "--input", str(paths["tw"]), "--out", str(paths["embed"]), "--split", "all", *embed],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    return paths


def _rehash(folder: Path, **changes: object) -> None:
    """Record every file of ``folder`` in its manifest again (after the test changed some),
    with ``changes`` applied to the manifest."""
    mpath = folder / "manifest.json"
    manifest = json.loads(mpath.read_text())
    outputs = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            outputs[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.update(outputs=outputs, **changes)
    mpath.write_text(json.dumps(manifest))


def explained_copy(study: dict[str, Path], dest: Path, class_names: list[str] | None = None) -> Path:
    """A copy of the cluster folder with an explainer's output, as the explainer writes it:
    labels 0 and 1 by intensity rules, label 2 by a class grouping."""
    shutil.copytree(study["cluster"], dest)
    labels = np.load(dest / "labels.npz")
    y = labels["y"]
    rule = y.copy()
    rule[::7] = -1
    names = class_names or [f"class {k}" for k in range(10)]
    explanation = {
        "verdict": "explained",
        "agreement": 0.9571,
        "chance": 0.3429,
        "class_names": names,
        "best": {
            "kind": "class-and-property",
            "properties": ["mean_intensity"],
            "classes": {"2": [names[0], names[4]]},
            "rules": {"0": "mean_intensity < 52.3", "1": "mean_intensity >= 52.3"},
            "agreement": 0.9571,
        },
        "candidates": [
            {
                "kind": "class-and-property",
                "properties": ["mean_intensity"],
                "classes": {"2": [names[0], names[4]]},
                "rules": {"0": "mean_intensity < 52.3", "1": "mean_intensity >= 52.3"},
                "agreement": 0.9571,
            },
            {"kind": "class-grouping", "properties": [], "classes": {"0": [names[1]]}, "rules": None, "agreement": 0.5},
        ],
        "labels": [
            {
                "label": 0,
                "rule": "mean_intensity < 52.3",
                "classes": None,
                "n_test": 23,
                "precision": 0.91,
                "recall": 0.8,
            },
            {
                "label": 1,
                "rule": "mean_intensity >= 52.3",
                "classes": None,
                "n_test": 24,
                "precision": 1.0,
                "recall": 1.0,
            },
            {"label": 2, "rule": None, "classes": [names[0], names[4]], "n_test": 23, "precision": 0.95, "recall": 0.9},
        ],
        "families": {"class-grouping": "fitted", "property-bins": "fitted", "texture": "skipped: no such feature"},
    }
    (dest / "explanation.json").write_text(json.dumps(explanation))
    class_id = np.arange(len(y)) % 10
    np.savez(dest / "explanation.npz", index=labels["index"], y=y, rule_label=rule, class_id=class_id)
    shutil.copy(dest / "figures" / "mean-image-per-label.png", dest / "figures" / "explain-label-0.png")
    _rehash(dest)
    return dest


def report(tmp_path: Path, *folders: Path, name: str = "report") -> tuple[Path, str, str]:
    out = tmp_path / name
    args = ["report", "--out", str(out)]
    for folder in folders:
        args += ["--input", str(folder)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, (out / "report.html").read_text(encoding="utf-8"), (out / "report.md").read_text(encoding="utf-8")


def test_report_round_trip(study: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("report must not recompute embeddings")

    monkeypatch.setattr(embed_module, "tsne_embedding", refuse)
    monkeypatch.setattr(embed_module, "pca_embedding", refuse)
    # any order: the evidence follows the pipeline
    out, page, md = report(tmp_path, study["embed"], study["cluster"], study["cnn"], study["som"], study["tw"])
    parser = parse(page)
    assert parser.sections == [
        "findings",
        "explorer-section",
        "preprocess-1",
        "train-som-1",
        "train-cnn-1",
        "cluster-1",
        "embed-1",
        "artefacts",
    ]
    # every figure is embedded (a PNG equal to its copy in figures/), or linked when the explorer
    # shows the same thing interactively (the embedding by label and by cluster, SOM prototypes)
    pngs = sorted((out / "figures").glob("*.png"))
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in parser.sources]
    files = [link for link in parser.links if link.startswith("figures/")]
    assert len(embedded) + len(files) == len(pngs) > 20
    assert sorted(embedded + [(out / f).read_bytes() for f in files]) == sorted(p.read_bytes() for p in pngs)
    assert {"figures/embed-pca-by-kmeans.png", "figures/train-som-prototypes.png"} <= set(files)
    # self-contained: two inline scripts (the explorer's data and code), nothing fetched
    assert 'src="http' not in page and "<link" not in page
    assert [attrs for attrs, _ in parser.scripts] == [{"type": "application/json", "id": "explorer-data"}, {}]
    assert parser.scripts[1][1].strip() == JS.strip()
    # every other link is to an anchor of the page
    anchors = [link for link in parser.links if not link.startswith("figures/")]
    assert anchors and all(link.startswith("#") and link[1:] in parser.ids for link in anchors)
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
        "train-som-u-matrix",
        "findings-images-1",
    ):
        assert expected in names, expected
    # embedding quality as a table of its own: one row per method with its measures
    quality = json.loads((study["embed"] / "metrics.json").read_text())["quality"]
    embed_md = md.split("Embedding quality", 1)[1]
    for method, q in quality.items():
        cells = [md_text(fmt(q[key]), cell=True) for key in ("trustworthiness", "knn_preservation")]
        assert f"| {method} | {cells[0]} | {cells[1]} |" in embed_md
    assert "quality: pca" not in md  # not as a flattened dict
    # the findings: the explainer's verdict and one row per label with its rule
    findings = page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    explanation = json.loads((study["cluster"] / "explanation.json").read_text())
    assert f"Verdict: {explanation['verdict']}" in findings
    for entry in explanation["labels"]:
        assert (entry["rule"] or "–") in parser.cells
    decoding = json.loads((study["cluster"] / "decoding.json").read_text())
    for entry in decoding["labels"]:
        assert entry["summary"].split("≈", 1)[1].strip() in parser.cells
    assert "Models against the published study" in findings and "the study&#x27;s reference design" in findings
    assert "Cluster agreement" in findings and "kmeans" in findings
    assert "Self-organising maps against the tutorial" in findings
    # readable metric names, not raw keys
    assert "quantisation error (test)" in page and "test_qe" not in page.split('id="explorer-data"')[0]
    # Markdown: the findings first, figures linked
    assert md.index("## Findings") < md.index("## Data") < md.index("## Clustering")
    links = [line.split("](", 1)[1].split(")", 1)[0] for line in md.splitlines() if line.startswith("![")]
    assert links and all((out / link).is_file() for link in links)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "report" and any(k.endswith("embedding.npz") for k in manifest["inputs"])


def test_findings_from_the_explainer(study: dict[str, Path], tmp_path: Path) -> None:
    cluster = explained_copy(study, tmp_path / "cluster-explained")
    out, page, md = report(tmp_path, cluster, study["embed"])
    parser = parse(page)
    assert parser.sections[0] == "findings"
    findings = page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert "Verdict: explained" in findings and "95.71 %" in findings and "34.29 %" in findings
    assert "mean_intensity &lt; 52.3" in findings and "class 0 + class 4" in findings
    # one row per label, each with a strip of that label's images and a link to its evidence
    rows = findings.split('id="findings-labels"', 1)[1].split("</table>", 1)[0].split("<tr>")[2:]
    assert len(rows) == 3 and all('<img class="strip"' in r and 'href="#cluster-1"' in r for r in rows)
    # the evidence lists the hypotheses and the families
    assert "Explainer: hypotheses, best on validation first" in page and "skipped: no such feature" in page
    assert "explain-label-0" in {p.stem.replace("cluster-", "") for p in (out / "figures").glob("*.png")}
    # Markdown opens the same way, rules escaped
    assert md.index("## Findings") < md.index("Verdict: explained") < md.index("## Clustering")
    assert "mean\\_intensity < 52.3" not in md and "mean\\_intensity &lt; 52.3" in md
    # the explorer can colour by the explainer's rule and the class
    data = json.loads(parser.scripts[0][1])
    names = [c["name"] for c in data["colourings"]]
    assert "explainer's rule" in names and "Fashion-MNIST class" in names


def _edit_explanation(folder: Path, **changes: object) -> None:
    path = folder / "explanation.json"
    explanation = json.loads(path.read_text())
    explanation.update(changes)
    path.write_text(json.dumps(explanation))
    _rehash(folder)


def test_findings_name_the_labels_a_rule_leaves_open(study: dict[str, Path], tmp_path: Path) -> None:
    cluster = explained_copy(study, tmp_path / "cluster-explained")
    labels = json.loads((cluster / "explanation.json").read_text())["labels"]
    for entry, verdict in zip(labels, ("partly explained", "explained", "explained"), strict=True):
        entry["verdict"] = verdict
    _edit_explanation(cluster, labels=labels, settings={"label_fit": 0.9})
    _, page, _ = report(tmp_path, cluster)
    findings = page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert (
        "Not every label is accounted for: label 0 only partly explained "
        "(precision or recall under 90 % on the test split)." in findings
    )
    assert "<td>partly explained</td>" in findings and "under 90 %, and unexplained when the rule never" in findings


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        (
            5.29,
            "above chance (11.80 %), but closes only 6.1 % of the gap from chance to a perfect rule "
            "(partly explained needs 10 %)",
        ),
        (1.2, "not significantly above chance (11.80 %)"),
        (-3.5, "far below chance (11.80 %): always giving the commonest label does better"),
    ],
)
def test_unexplained_findings_say_why(study: dict[str, Path], tmp_path: Path, z: float, expected: str) -> None:
    cluster = explained_copy(study, tmp_path / "cluster-explained")
    guess = {"kind": "class-grouping", "properties": [], "classes": {}, "rules": None, "agreement": 0.172}
    labels = [
        {"label": k, "rule": None, "classes": None, "n_test": 20, "precision": None, "recall": None} for k in range(3)
    ]
    _edit_explanation(
        cluster,
        verdict="unexplained",
        best=None,
        best_guess=guess,
        agreement=0.172,
        chance=0.118,
        z=z,
        lift=0.0612,
        labels=labels,
        settings={"min_z": 3.0, "partial_lift": 0.1, "label_fit": 0.9},
    )
    _, page, _ = report(tmp_path, cluster)
    findings = page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert (
        "Verdict: unexplained. The best guess (class-grouping) gives the mystery label of 17.20 % of the test rows, "
        + expected
        in findings
    )
    assert "No hypothesis beat chance" not in findings and "Not every label" not in findings
    assert "Training and test disagree" not in findings


def test_findings_say_when_a_perfect_fit_has_too_few_rare_rows(study: dict[str, Path], tmp_path: Path) -> None:
    cluster = explained_copy(study, tmp_path / "cluster-explained")
    explanation = json.loads((cluster / "explanation.json").read_text())
    guess = dict(explanation["best"], agreement=1.0)
    _edit_explanation(
        cluster,
        verdict="unexplained",
        best=None,
        best_guess=guess,
        agreement=1.0,
        chance=0.995,
        z=2.24,
        lift=1.0,
        n_test=1000,
        explained_lift=0.98,
        settings={"min_z": 3.0, "partial_lift": 0.1, "label_fit": 0.9},
    )
    _, page, _ = report(tmp_path, cluster)
    assert (
        "of the test rows; the best guess fits as well as an explained rule, but only 5 of the 1000 test rows carry "
        "a label other than the commonest: too few to tell the fit from chance (z 2.24, needs 3)." in page
    )


def test_findings_say_when_training_and_test_disagree(study: dict[str, Path], tmp_path: Path) -> None:
    cluster = explained_copy(study, tmp_path / "cluster-explained")
    explanation = json.loads((cluster / "explanation.json").read_text())
    guess = dict(explanation["best"], validation_agreement=1.0, agreement=0.8)
    _edit_explanation(cluster, holds_on_test=False, best=guess, best_guess=guess)
    _, page, md = report(tmp_path, cluster)
    expected = (
        "Training and test disagree: the rule fits the validation rows (100.0 %) far better than the test rows "
        "(80.0 %): the test labels may follow another rule than the training labels."
    )
    assert expected in page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert expected in md.split("## Data", 1)[0]
    one = [{"label": 0, "rule": None, "classes": None, "n_test": 20, "precision": None, "recall": None}]
    _edit_explanation(cluster, verdict="unexplained", best=None, agreement=1.0, chance=1.0, z=0.0, lift=0.0, labels=one)
    _, page, _ = report(tmp_path, cluster, name="one-label")
    assert "of the test rows: they all carry one label, so there is nothing to tell apart." in page


def test_findings_say_when_there_is_no_explanation(study: dict[str, Path], tmp_path: Path) -> None:
    decoded = tmp_path / "cluster-decoded"
    shutil.copytree(study["cluster"], decoded)
    for name in ("explanation.json", "explanation.npz", *(p.name for p in (decoded / "figures").glob("explain-*"))):
        (decoded / name if name.startswith("explanation") else decoded / "figures" / name).unlink()
    _rehash(decoded)
    _, page, _ = report(tmp_path, decoded, name="decoded")
    findings = page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert "No explainer output (explanation.json)" in findings and "decoded classes" in findings
    assert findings.count('<img class="strip"') == len(json.loads((decoded / "decoding.json").read_text())["labels"])
    bare = tmp_path / "cluster-bare"
    shutil.copytree(decoded, bare)
    (bare / "decoding.json").unlink()
    _rehash(bare)
    _, page, md = report(tmp_path, bare)
    findings = page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert "Not explained here: no cluster folder among the inputs has an explanation" in findings
    assert "Not explained here" in md.split("## Clustering", 1)[0]
    _, page, _ = report(tmp_path, study["cnn"], name="cnn-only")
    assert "Not explained here: no cluster folder among the inputs." in page
    _, page, md = report(tmp_path, study["som"], name="som-only")
    assert "mystery label" not in page.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert "mystery label" not in md.split("## Self-organising map", 1)[0]
    assert 'id="explorer"' in page  # a SOM alone still gets the explorer


def test_artefact_stage_never_becomes_a_path(study: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    evil = work / "evil"
    shutil.copytree(study["cluster"], evil)
    _rehash(evil, stage="../../x/pwn")
    before = {p for p in tmp_path.rglob("*")}
    out, page, _ = report(work, evil)
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(out in p.parents or p == out for p in created), sorted(created)
    assert not (tmp_path / "x").exists() and not (tmp_path / "a" / "x").exists()
    names = [p.name for p in (out / "figures").iterdir()]
    assert names and all(n == slug(n[:-4]) + ".png" for n in names)
    assert "Other artefact (stage ../../x/pwn)" in page and 'id="other-1"' in page


def test_artefact_strings_are_escaped(study: dict[str, Path], tmp_path: Path) -> None:
    attack = 'x"><script>alert(1)</script>'
    evil = tmp_path / "evil"
    shutil.copytree(study["cluster"], evil)
    _rehash(evil, stage=attack, command=f"fmnist-cluster {attack} | <b>*bold*</b>")
    explained = explained_copy(
        study, tmp_path / "explained", class_names=[f"<img src=x onerror=alert({k})>" for k in range(10)]
    )
    _rehash(explained, command=attack)
    _out, page, md = report(tmp_path, evil, explained, study["embed"])
    parser = parse(page)
    # only the explorer's own two scripts, whatever the artefacts say
    assert len(parser.scripts) == 2 and parser.scripts[1][1].strip() == JS.strip()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>*bold*" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the explorer's JSON cannot close its <script> element
    data_text = parser.scripts[0][1]
    assert "<" not in data_text and ">" not in data_text
    assert any(
        "<img src=x onerror=alert(0)>" in v for c in json.loads(data_text)["colourings"] for v in c["names"].values()
    )
    # Markdown: no raw HTML, table cells cannot break the table
    assert "<script>" not in md and "<img src=x" not in md and "<b>" not in md
    assert md_text(attack) in md
    assert md_text("a|b\nc") == "a\\|b c" and md_text("<b>") == "&lt;b&gt;"
    # a list or heading marker is escaped where it starts a line, not inside a table cell
    assert md_text("1. # x") == "1\\. # x" and md_text("1. # x", cell=True) == "1. # x"
    assert re.search(r"\| \d+\.\d", md) and not re.search(r"\| \d+\\\.\d", md)


def test_explorer_data_matches_the_artefacts(study: dict[str, Path], tmp_path: Path) -> None:
    _, page, _ = report(tmp_path, study["embed"], study["cluster"], study["cnn"], study["som"])
    data = json.loads(parse(page).scripts[0][1])
    emb = np.load(study["embed"] / "embedding.npz")
    n = len(emb["index"])
    assert data["n"] == n and [m["name"] for m in data["maps"]] == ["PCA", "t-SNE", "UMAP"][: len(data["maps"])]
    xy = np.frombuffer(base64.b64decode(data["maps"][0]["xy"]), dtype="<f4").reshape(-1, 2)
    np.testing.assert_array_equal(xy, emb["pca"])
    assert np.array_equal(np.frombuffer(base64.b64decode(data["rows"]), dtype="<i4"), emb["index"])
    # images: each row's tile is the row's picture (pixels /255, as 8 bits)
    tiles = np.frombuffer(zlib.decompress(base64.b64decode(data["images"]["zlib"])), dtype=np.uint8)
    tiles = tiles.reshape(-1, 28, 28)
    which = np.frombuffer(base64.b64decode(data["point_images"]), dtype="<i4")
    tw = np.load(study["tw"] / "data.npz")
    pictures = np.concatenate([tw["x_train"], tw["x_test"]])[:, 0]
    np.testing.assert_array_equal(tiles[which], np.round(pictures * 255).astype(np.uint8))
    names = [c["name"] for c in data["colourings"]]
    assert names[0] == "mystery label" and {"kmeans", "dbscan"} <= set(names)
    labels = np.load(study["cluster"] / "labels.npz")
    kmeans = data["colourings"][names.index("kmeans")]
    assert np.array_equal(np.frombuffer(base64.b64decode(kmeans["values"]), dtype="<i4"), labels["kmeans"])
    # the CNN was tested on the test split only; the explorer shows all rows, so no prediction colouring
    assert not any(name.startswith("CNN prediction") for name in names)
    # the SOM: prototypes, and each test image with its best neuron
    som = data["soms"][0]
    arrays = np.load(study["som"] / "som.npz")
    assert (som["rows"], som["cols"]) == (4, 5)
    assert np.array_equal(np.frombuffer(base64.b64decode(som["bmu"]), dtype="<i4"), arrays["bmu_test"])


def test_report_is_deterministic(study: dict[str, Path], tmp_path: Path) -> None:
    pages = [report(tmp_path, study["cluster"], study["embed"], name=name)[1:] for name in ("a", "b")]
    assert pages[0] == pages[1]
    assert_same_outputs(tmp_path / "a", tmp_path / "b")


def _forged(folder: Path, copy: Path, name: str, change: object) -> Path:
    """A copy of ``folder`` whose ``name`` was changed (``change(arrays or json)``) and whose
    manifest was made to match: damage the hash check cannot see."""
    shutil.copytree(folder, copy)
    path = copy / name
    if name.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        change(arrays)
        np.savez(path, **arrays)
    else:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["outputs"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    ("key", "name", "change", "words"),
    [
        ("embed", "embedding.npz", lambda a: a.update(pca=a["pca"][:3]), "holds arrays that do not fit together"),
        ("cluster", "labels.npz", lambda a: a.update(kmeans=a["kmeans"][:5]), "holds arrays that do not fit together"),
        ("cluster", "metrics.json", lambda m: [1, 2], "is not the metrics cluster writes"),
        ("cluster", "metrics.json", lambda m: {**m, "algorithms": [1]}, "is not the metrics cluster writes"),
        ("som", "som.npz", lambda a: a.update(coords=a["coords"][:3]), "holds a map whose arrays do not fit"),
        ("som", "som.npz", lambda a: a.update(bmu_test=a["bmu_test"] + 10**6), "holds a map whose arrays do not fit"),
    ],
    ids=["short-coordinates", "short-labels", "metrics-a-list", "algorithms-a-list", "short-som-coords", "bmu-off-map"],
)
def test_an_artefact_whose_arrays_do_not_fit_together_is_one_error(
    study: dict[str, Path], tmp_path: Path, key: str, name: str, change: object, words: str
) -> None:
    forged = _forged(study[key], tmp_path / "forged", name, change)
    others = [study[k] for k in ("embed", "cluster", "som") if k != key]
    args = ["report", "--out", str(tmp_path / "r"), "--input", str(forged)]
    result = runner.invoke(app, [*args, *[a for o in others for a in ("--input", str(o))]])
    assert result.exit_code == 2, result.output
    assert words in result.output and result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_accuracies_in_the_evidence_are_percentages_as_in_the_findings() -> None:
    from fmnist_cluster.report.evidence import metric_value

    assert metric_value("test_accuracy", 0.881) == "88.10 %"
    assert metric_value("history.best_val_accuracy", 1.0) == "100.00 %"
    assert metric_value("qe", 0.881) == "0.881"
    assert metric_value("accuracy_per_epoch", [0.5, 0.6]) == "0.5, 0.6"  # lists as they are
    assert metric_value("test_accuracy", 1.5) == "1.5"  # not a share: shown as it is


def test_published_designs_and_tutorial_settings_are_recognised() -> None:
    def cnn(name: str) -> tuple[str, float | None]:
        return cnn_design(load_config(CnnConfig, ROOT / "configs" / name).model_dump(mode="json"))

    assert cnn("cnn-reference.yaml") == ("the study's reference design", 0.9226)
    assert cnn("cnn-seed-own.yaml") == ("the study's own design", 0.9373)
    assert cnn("cnn.yaml")[1] is None and cnn("cnn.yaml")[0].startswith("ours")

    def som(name: str) -> bool:
        return is_tutorial_som(load_config(SomConfig, ROOT / "configs" / name).model_dump(mode="json"))

    assert som("som-seed.yaml") and not som("som.yaml") and not som("som-demo.yaml")


@pytest.mark.parametrize(
    ("n_classes", "n_test", "difference"),
    [(5, 10_000, "-2.26 points"), (5, 1_000, "–"), (4, 10_000, "–")],
)
def test_only_a_set_shaped_like_the_studys_is_compared(n_classes: int, n_test: int, difference: str) -> None:
    from fmnist_cluster.report.document import Section
    from fmnist_cluster.report.findings import model_block

    config = load_config(CnnConfig, ROOT / "configs" / "cnn-reference.yaml").model_dump(mode="json")
    section = Section("train-cnn", Path("runs/ref"), {"config": config})
    section.metrics = {"class_names": None, "n_classes": n_classes, "n_test": n_test, "test_accuracy": 0.9}
    block = model_block([section])
    assert block is not None and block.table is not None
    row = block.table.rows[0]
    assert row[3] == "90.00 %" and row[5] == difference
    assert row[4] == ("92.26 %" if difference != "–" else "–")


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


# -- the explorer in a real browser (Debian's chromium + chromium-driver, driven by selenium) ----------------------


@pytest.fixture(scope="module")
def browser() -> object:
    """Headless Chromium through chromedriver; skips with the reason when either is missing."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chrome is None or driver_path is None:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    options = chrome_options(chrome)
    options.add_argument("--force-device-scale-factor=1")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromedriver could not start chromium: {str(exc).splitlines()[0]}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def explorer_page(study: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("explorer")
    out, _, _ = report(tmp, study["embed"], explained_copy(study, tmp / "cluster"), study["som"], study["tw"])
    return out / "report.html"


def _open(browser: object, page: Path, request: pytest.FixtureRequest) -> None:
    import os
    import time

    browser.get_log("browser")  # drop earlier messages
    browser.get(page.resolve().as_uri())
    for _ in range(200):
        if browser.execute_script("return document.getElementById('explorer').getAttribute('data-ready')"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the explorer did not finish loading")
    shots = os.environ.get("FMNIST_REPORT_SHOTS")
    if shots:  # for looking at the page by eye
        Path(shots).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(shots) / f"{request.node.name}-top.png"))


def _shot(browser: object, request: pytest.FixtureRequest, what: str) -> None:
    import os

    shots = os.environ.get("FMNIST_REPORT_SHOTS")
    if shots:
        browser.save_screenshot(str(Path(shots) / f"{request.node.name}-{what}.png"))


def _pointer(browser: object, element: object, x: float, y: float) -> object:
    """An action chain with the pointer at (x, y) CSS pixels from the element's top-left corner."""
    from selenium.webdriver.common.action_chains import ActionChains

    rect = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", element
    )
    return ActionChains(browser, duration=10).move_to_element_with_offset(
        element, round(x - rect[0] / 2), round(y - rect[1] / 2)
    )


def test_explorer_loads_without_errors_and_draws_every_point(
    browser: object, explorer_page: Path, study: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    _open(browser, explorer_page, request)
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    n = len(np.load(study["embed"] / "embedding.npz")["index"])
    root = browser.find_element("id", "explorer")
    assert root.get_attribute("data-rendered-points") == str(n)
    # the first screen is the findings
    top = browser.execute_script("return document.getElementById('findings').getBoundingClientRect().top")
    assert 0 <= top < 200
    # every map draws every point
    for option in browser.find_elements("css selector", "#ex-map option"):
        option.click()
        assert root.get_attribute("data-rendered-points") == str(n)


def test_hovering_a_point_shows_its_image(
    browser: object, explorer_page: Path, study: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    _open(browser, explorer_page, request)
    canvas = browser.find_element("id", "ex-canvas")
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    n = len(np.load(study["embed"] / "embedding.npz")["index"])
    screen = np.array(
        browser.execute_script("return [...Array(arguments[0]).keys()].map(fmnistExplorer.scatter.screenOf)", n)
    )
    gaps = np.linalg.norm(screen[:, None] - screen[None], axis=2) + np.eye(len(screen)) * 1e9
    i = int(gaps.min(1).argmax())  # the most isolated point: nothing else under the pointer
    _pointer(browser, canvas, *screen[i]).perform()
    tip = browser.find_element("id", "ex-tip")
    assert tip.is_displayed() and tip.get_attribute("data-row") == str(i)
    _shot(browser, request, "hover")
    tw = np.load(study["tw"] / "data.npz")
    picture = np.round(np.concatenate([tw["x_train"], tw["x_test"]])[i, 0] * 255).astype(np.uint8)
    shown = browser.execute_script(
        "const c = document.querySelector('#ex-tip canvas');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);"
    )
    shown = np.array(shown, dtype=np.uint8).reshape(28 * 4, 28 * 4, 4)[::4, ::4, 0]
    np.testing.assert_array_equal(shown, 255 - picture)  # drawn dark on white
    y = np.load(study["tw"] / "data.npz")
    label = int(np.concatenate([y["y_train"], y["y_test"]])[i])
    assert f"mystery label: label {label}" in tip.text


def test_a_box_selection_exports_the_right_ids(
    browser: object, explorer_page: Path, study: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    import urllib.parse

    _open(browser, explorer_page, request)
    canvas = browser.find_element("id", "ex-canvas")
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    pca = np.load(study["embed"] / "embedding.npz")["pca"]
    low, high = np.quantile(pca, 0.2, axis=0), np.quantile(pca, 0.75, axis=0)
    start = browser.execute_script(
        "return fmnistExplorer.scatter.toScreen(arguments[0], arguments[1])", *map(float, (low[0], high[1]))
    )
    end = browser.execute_script(
        "return fmnistExplorer.scatter.toScreen(arguments[0], arguments[1])", *map(float, (high[0], low[1]))
    )
    _pointer(browser, canvas, *start).click_and_hold().move_by_offset(
        round(end[0] - start[0]), round(end[1] - start[1])
    ).release().perform()
    _shot(browser, request, "selection")
    root = browser.find_element("id", "explorer")
    box = json.loads(root.get_attribute("data-selection-box"))
    assert np.allclose(box, [low[0], low[1], high[0], high[1]], atol=0.02 * np.ptp(pca))
    inside = (pca[:, 0] >= box[0]) & (pca[:, 0] <= box[2]) & (pca[:, 1] >= box[1]) & (pca[:, 1] <= box[3])
    expected = np.flatnonzero(inside)
    assert 0 < len(expected) < len(pca)
    href = browser.find_element("id", "ex-csv").get_attribute("href")
    assert href.startswith("data:text/csv")
    lines = urllib.parse.unquote(href.split(",", 1)[1]).strip().splitlines()
    assert lines[0].split(",")[0] == "row"
    assert [int(line.split(",")[0]) for line in lines[1:]] == expected.tolist()
    assert root.get_attribute("data-selected") == str(len(expected))
    assert browser.find_element("id", "ex-montage").is_displayed()


def test_a_lasso_selection_exports_the_points_inside_it(
    browser: object, explorer_page: Path, study: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    import urllib.parse

    from matplotlib.path import Path as Polygon
    from selenium.webdriver.support.ui import Select

    _open(browser, explorer_page, request)
    Select(browser.find_element("id", "ex-mode")).select_by_value("lasso")
    canvas = browser.find_element("id", "ex-canvas")
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    n = len(np.load(study["embed"] / "embedding.npz")["index"])
    screen = np.array(
        browser.execute_script("return [...Array(arguments[0]).keys()].map(fmnistExplorer.scatter.screenOf)", n)
    )
    # a triangle over the middle of the map
    (x0, y0), (x1, y1) = screen.min(0), screen.max(0)
    corners = [(x0 + 0.1 * (x1 - x0), y0 + 0.9 * (y1 - y0)), (x0 + 0.5 * (x1 - x0), y0 + 0.05 * (y1 - y0))]
    corners.append((x0 + 0.95 * (x1 - x0), y0 + 0.9 * (y1 - y0)))
    chain = _pointer(browser, canvas, *corners[0]).click_and_hold()
    for (ax, ay), (bx, by) in zip(corners, [*corners[1:], corners[0]], strict=True):
        chain = chain.move_by_offset(round(bx - ax), round(by - ay))
    chain.release().perform()
    _shot(browser, request, "lasso")
    root = browser.find_element("id", "explorer")
    path = np.array(json.loads(root.get_attribute("data-selection-path")))
    expected = np.flatnonzero(Polygon(path).contains_points(screen))
    assert 0 < len(expected) < n
    href = browser.find_element("id", "ex-csv").get_attribute("href")
    lines = urllib.parse.unquote(href.split(",", 1)[1]).strip().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == expected.tolist()


def test_clicking_a_neuron_shows_its_samples(
    browser: object, explorer_page: Path, study: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    _open(browser, explorer_page, request)
    canvas = browser.find_element("id", "ex-som-canvas")
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    bmu = np.load(study["som"] / "som.npz")["bmu_test"]
    k = int(np.bincount(bmu).argmax())
    centre = browser.execute_script("return fmnistExplorer.som.centreOf(arguments[0])", k)
    _pointer(browser, canvas, *centre).click().perform()
    _shot(browser, request, "neuron")
    panel = browser.find_element("id", "ex-neuron")
    assert panel.get_attribute("data-neuron") == str(k)
    assert panel.get_attribute("data-samples") == str(int((bmu == k).sum()))
    assert browser.find_element("id", "ex-neuron-samples").is_displayed()
    assert f"{int((bmu == k).sum())} test images" in panel.text
