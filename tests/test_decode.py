"""Mystery-label decoding: a grouping the test draws at random must come back exactly, by
image content; the share/member rules on hand-made counts; the reference-model path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from typer.testing import CliRunner

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.cli import app
from fmnist_cluster.config import DecodeConfig
from fmnist_cluster.decode import ContentMatcher, compose, count_matrix, decode_labels, image_keys
from fmnist_cluster.errors import FmnistError
from tests.conftest import make_images, write_twisted

runner = CliRunner()
N_TRAIN, N_TEST = 50, 20  # as the idx_dir fixture, so the Twisted images are the same images


def random_grouping(rng: np.random.Generator) -> np.ndarray:
    """A grouping of the 10 classes into K labels 0..K-1 (each used), K drawn in 2..7."""
    k = int(rng.integers(2, 8))
    labels = np.concatenate([np.arange(k), rng.integers(0, k, size=10 - k)])
    return rng.permutation(labels)


def _preprocess(source: str, path: Path, out: Path) -> Path:
    result = runner.invoke(app, ["preprocess", "--source", source, "--path", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("seed", [11, 29])
def test_content_decoding_recovers_a_random_grouping(tmp_path: Path, idx_dir: Path, seed: int) -> None:
    mapping = random_grouping(np.random.default_rng(seed))
    originals = _preprocess("idx", idx_dir, tmp_path / "orig")
    twisted = _preprocess("twisted-csv", write_twisted(tmp_path / "tw-csv", N_TRAIN, N_TEST, mapping), tmp_path / "tw")
    out = tmp_path / "c"
    result = runner.invoke(
        app,
        [
            "cluster",
            "--input",
            str(twisted),
            "--out",
            str(out),
            "--split",
            "all",
            "--originals",
            str(originals),
            "--set",
            "reduce.pca_components=10",
            "--set",
            "silhouette_sample=50",
            "--set",
            "kmeans.n_init=2",
        ],
    )
    assert result.exit_code == 0, result.output
    decoding = json.loads((out / "decoding.json").read_text())
    assert decoding["method"] == "content" and decoding["content"]["match_rate"] == 1.0
    assert [e["label"] for e in decoding["labels"]] == list(range(mapping.max() + 1))
    for entry in decoding["labels"]:
        expected = {FASHION_CLASSES[c] for c in range(10) if mapping[c] == entry["label"]}
        assert set(entry["members"]) == expected
        assert {c["name"] for c in entry["classes"]} == expected
        assert sum(c["share"] for c in entry["classes"]) == pytest.approx(1.0, abs=1e-3)
        assert entry["summary"].startswith(f"label {entry['label']} ≈ ")
        assert entry["n"] == 7 * len(expected)  # 5 train + 2 test images per class
        assert "kmeans" in entry["clusters"]
    # the console answers with the explainer's verdict, the composition stays in decoding.json
    assert "explanation: explained (class-grouping" in result.output
    figures = out / "figures"
    assert (figures / "decode-composition.png").is_file()
    # one montage per label, the explainer's (titled with its rule), not a copy from the decoding too
    assert all((figures / f"explain-label-{e['label']}.png").is_file() for e in decoding["labels"])
    assert not list(figures.glob("decode-label-*.png"))
    assert (figures / "decode-class-by-cluster-kmeans.png").is_file()


def test_compose_shares_members_and_summary() -> None:
    names = tuple(f"c{i}" for i in range(10))
    counts = np.zeros((3, 10), dtype=np.int64)
    counts[0, 8], counts[0, 7] = 51, 49  # label 0: two classes
    counts[1, 6], counts[1, 0] = 88, 12  # 12 of class 0 leak here, but class 0 lives in label 2
    counts[2, 0], counts[2, 2] = 900, 100
    entries = compose(counts, np.array([0, 1, 2]), names, min_share=0.10, leak_ratio=0.25)
    assert entries[0]["members"] == ["c8", "c7"] and entries[0]["summary"] == "label 0 ≈ c8 51 % + c7 49 %"
    assert entries[1]["members"] == ["c6"]  # 12 < 0.25 * 900: a confusion, not a member
    assert entries[1]["summary"] == "label 1 ≈ c6 88 % (other 12 %)"
    assert entries[2]["members"] == ["c0", "c2"]
    assert [c["share"] for c in entries[2]["classes"]] == [0.9, 0.1]
    no_filter = compose(counts, np.array([0, 1, 2]), names, min_share=0.10, leak_ratio=0.0)
    assert no_filter[1]["members"] == ["c6", "c0"]
    empty = compose(np.zeros((1, 10), dtype=np.int64), np.array([4]), names)
    assert empty[0]["members"] == [] and empty[0]["summary"] == "label 4 ≈ nothing decoded"


def test_count_matrix_skips_unknown() -> None:
    y = np.array([0, 0, 1, 1, 1])
    classes = np.array([3, -1, 3, 4, 4])
    assert count_matrix(y, classes, np.array([0, 1]), 5).tolist() == [[0, 0, 0, 1, 0], [0, 0, 0, 1, 2]]


def test_content_matcher_exact_ambiguous_and_missing() -> None:
    images, classes = make_images(30, 3)
    x = images.astype(np.float32)[:, None] / 255
    dup = np.concatenate([x, x[:1]])  # image 0 occurs twice, the copy with another class
    matcher = ContentMatcher().fit(dup, np.concatenate([classes, [(classes[0] + 1) % 10]]))
    found, ambiguous = matcher.match(np.concatenate([x[:5], 1 - x[:1]]))
    assert found[:5].tolist() == classes[:5].tolist() and found[5] == -1
    assert ambiguous.tolist() == [True, False, False, False, False, False]
    assert matcher.predict(x[:5]).tolist() == classes[:5].tolist()


def test_content_matcher_follows_the_estimator_contract() -> None:
    images, classes = make_images(12, 4)
    x = images.astype(np.float32)[:, None] / 255
    matcher = ContentMatcher(n_classes=10)
    assert matcher.get_params() == {"n_classes": 10}
    assert not hasattr(matcher, "table_")  # learned state only after fit
    with pytest.raises(TypeError):
        ContentMatcher(10)  # hyperparameters are keyword-only
    twin = clone(matcher.set_params(n_classes=11))
    assert twin is not matcher and twin.get_params() == {"n_classes": 11} and not hasattr(twin, "table_")
    assert twin.fit(x, classes) is twin and twin.classes_.tolist() == list(range(11))
    assert clone(twin).get_params() == {"n_classes": 11} and not hasattr(clone(twin), "table_")
    with pytest.raises(NotFittedError):
        ContentMatcher().predict(x)


@pytest.mark.parametrize(
    ("n_classes", "labels", "message"),
    [
        (0, None, "n_classes must be a positive int"),
        (2.5, None, "n_classes must be a positive int"),
        (10, [1, 2], "one class per image"),
        (3, "many", r"classes must be integers in 0\.\.2"),
        (10, "fractional", r"classes must be integers in 0\.\.9"),
        (10, "nan-image", r"needs images in \[0, 1\]"),
    ],
)
def test_content_matcher_bad_arguments_are_value_errors(n_classes, labels, message) -> None:
    images, classes = make_images(12, 4)
    x = images.astype(np.float32)[:, None] / 255
    y = np.full(len(x), 5) if labels == "many" else classes if labels in (None, "nan-image") else np.array(labels)
    if labels == "fractional":
        y = classes + 0.5
    if labels == "nan-image":
        x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=message):
        ContentMatcher(n_classes=n_classes).fit(x, y)


def test_standardised_images_cannot_be_matched() -> None:
    with pytest.raises(ValueError, match="standardize: none"):
        image_keys(np.full((2, 784), -0.5, dtype=np.float32))


def test_originals_must_be_the_10_known_classes(tmp_path: Path, idx_dir: Path) -> None:
    mapping = np.array([0, 1, 0, 1, 2, 2, 0, 2, 1, 2])
    twisted = _preprocess("twisted-csv", write_twisted(tmp_path / "tw-csv", N_TRAIN, N_TEST, mapping), tmp_path / "tw")
    result = runner.invoke(
        app, ["cluster", "--input", str(twisted), "--out", str(tmp_path / "c"), "--originals", str(twisted)]
    )
    assert result.exit_code == 2 and "not the original 10-class Fashion-MNIST" in result.output


def test_no_match_without_reference_is_an_error(tmp_path: Path, idx_dir: Path) -> None:
    originals = _preprocess("idx", idx_dir, tmp_path / "orig")
    images, _ = make_images(12, 99)  # images that are not among the originals
    x = images.astype(np.float32)[:, None] / 255
    with pytest.raises(FmnistError, match="no image was found among the originals"):
        decode_labels(x, np.arange(12) % 2, DecodeConfig(), originals_dir=originals)
    with pytest.raises(FmnistError, match=r"^--originals: content matching needs images in"):
        decode_labels(x - 0.5, np.arange(12) % 2, DecodeConfig(), originals_dir=originals)


def test_reference_decoding_with_a_stand_in_model(
    tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference path end to end, with the network replaced by a classifier that reads the
    bar position of the test images (and takes one image of class 0 for class 1)."""
    import fmnist_cluster.cnn as cnn
    from fmnist_cluster.artefacts import StageRun

    model_dir = tmp_path / "ref"
    with StageRun("train-cnn", model_dir, {}) as run:
        run.save_text("model.pt", "stand-in")
        run.commit()

    def fake_load(folder: Path) -> tuple[object, dict]:
        return object(), {"n_classes": 10, "class_names": list(FASHION_CLASSES), "architecture": []}

    def fake_proba(
        model: object, x: np.ndarray, batch_size: int = 512, device: str = "cpu", test_flip: bool = False
    ) -> np.ndarray:
        rows = x[:, 0, :, :].mean(axis=2)  # the bright bar of class c covers rows 2+2c..3+2c
        cls = np.clip((np.argmax(rows, axis=1) - 2) // 2, 0, 9)
        cls[np.flatnonzero(cls == 0)[:1]] = 1
        return np.eye(10, dtype=np.float32)[cls]

    monkeypatch.setattr(cnn, "load_checkpoint", fake_load)
    monkeypatch.setattr(cnn, "predict_proba", fake_proba)
    mapping = random_grouping(np.random.default_rng(5))
    originals = _preprocess("idx", idx_dir, tmp_path / "orig")
    twisted = _preprocess("twisted-csv", write_twisted(tmp_path / "tw-csv", N_TRAIN, N_TEST, mapping), tmp_path / "tw")
    out = tmp_path / "c"
    result = runner.invoke(
        app,
        [
            "cluster",
            "--input",
            str(twisted),
            "--out",
            str(out),
            "--split",
            "all",
            "--reference",
            str(model_dir),
            "--originals",
            str(originals),
            "--set",
            "reduce.pca_components=5",
            "--set",
            "silhouette_sample=50",
            "--set",
            "dbscan.enabled=false",
            "--set",
            "hdbscan.enabled=false",
        ],
    )
    assert result.exit_code == 0, result.output
    decoding = json.loads((out / "decoding.json").read_text())
    assert decoding["method"] == "content"
    assert decoding["reference"]["agreement_with_content"] == pytest.approx(69 / 70, abs=1e-4)
    for entry in decoding["reference"]["labels"]:
        assert set(entry["members"]) == {FASHION_CLASSES[c] for c in range(10) if mapping[c] == entry["label"]}
    alone = runner.invoke(
        app,
        [
            "cluster",
            "--input",
            str(twisted),
            "--out",
            str(tmp_path / "c2"),
            "--split",
            "all",
            "--reference",
            str(model_dir),
            "--set",
            "reduce.pca_components=5",
            "--set",
            "dbscan.enabled=false",
            "--set",
            "hdbscan.enabled=false",
        ],
    )
    assert alone.exit_code == 0, alone.output
    assert json.loads((tmp_path / "c2" / "decoding.json").read_text())["method"] == "reference"
    explanation = json.loads((tmp_path / "c2" / "explanation.json").read_text())
    assert explanation["class_evidence"] == "reference" and explanation["verdict"] != "unexplained"


def test_reference_must_be_a_10_class_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fmnist_cluster.cnn as cnn
    from fmnist_cluster.artefacts import StageRun

    model_dir = tmp_path / "ref"
    with StageRun("train-cnn", model_dir, {}) as run:
        run.save_text("model.pt", "stand-in")
        run.commit()
    monkeypatch.setattr(cnn, "load_checkpoint", lambda folder: (object(), {"n_classes": 3, "class_names": None}))
    x = np.zeros((4, 1, 28, 28), dtype=np.float32)
    with pytest.raises(FmnistError, match="10 Fashion-MNIST names"):
        decode_labels(x, np.array([0, 1, 0, 1]), DecodeConfig(), reference_dir=model_dir)
    with pytest.raises(FmnistError, match="not `train-cnn`"):
        decode_labels(x, np.array([0, 1, 0, 1]), DecodeConfig(), reference_dir=_other(tmp_path))


def _other(tmp_path: Path) -> Path:
    from fmnist_cluster.artefacts import StageRun

    folder = tmp_path / "other"
    with StageRun("encode", folder, {}) as run:
        run.save_text("x.txt", "x")
        run.commit()
    return folder


def test_a_label_the_explainer_cannot_draw_keeps_the_decodings_montage(tmp_path: Path) -> None:
    """On 8 images the explainer has too few rows to run: every label still gets a montage."""
    originals, tiny, out = tmp_path / "originals", tmp_path / "tiny", tmp_path / "cluster"
    assert runner.invoke(app, ["preprocess", "--source", "sample", "--out", str(originals)]).exit_code == 0
    made = runner.invoke(
        app,
        ["preprocess", "--source", "sample", "--set", "limit=8", "--set", "relabel=random", "--out", str(tiny)],
    )
    assert made.exit_code == 0, made.output
    off = ["--set", "hdbscan.enabled=false", "--set", "agglomerative.enabled=false", "--set", "kmeans.enabled=false"]
    result = runner.invoke(
        app, ["cluster", "--input", str(tiny), "--originals", str(originals), "--out", str(out), *off]
    )
    assert result.exit_code == 0, result.output
    decoding = json.loads((out / "decoding.json").read_text())
    for entry in decoding["labels"]:
        label = entry["label"]
        drawn = [(out / "figures" / f"{kind}-label-{label}.png").is_file() for kind in ("explain", "decode")]
        assert sum(drawn) == 1, (label, drawn)
