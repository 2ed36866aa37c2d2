"""Embeddings: PCA variance on data of known rank, t-SNE keeps blobs apart, artefact contents,
UMAP as an optional extra, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fmnist_cluster import embed as embed_module
from fmnist_cluster.artefacts import load_npz
from fmnist_cluster.cli import app
from fmnist_cluster.config import EmbedConfig, load_config
from fmnist_cluster.embed import pca_embedding, tsne_embedding
from fmnist_cluster.quality import neighbourhood_scores
from tests.conftest import assert_same_outputs
from tests.test_cluster import blobs, write_features

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "tsne.max_iter=250", "--set", "tsne.perplexity=10", "--set", "threads=1"]


def test_pca_of_rank_two_data_explains_everything() -> None:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 6))
    x = (rng.normal(size=(200, 2)) * [5.0, 1.0]) @ basis
    coords, ratios = pca_embedding(x.astype(np.float32), 4)
    assert coords.shape == (200, 2) and len(ratios) == 4
    assert ratios[:2].sum() == pytest.approx(1.0, abs=1e-6)
    assert ratios[0] > ratios[1]


@pytest.mark.parametrize("method", ["fft", "barnes-hut"])
def test_tsne_keeps_blobs_apart(method: str) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    x, y = blobs(n=150, k=3, dims=10, seed=7)
    coords = tsne_embedding(x, perplexity=10, max_iter=250, pca_components=5, threads=1, method=method)
    assert coords.shape == (150, 2) and np.isfinite(coords).all()
    knn = KNeighborsClassifier(5).fit(coords, y)
    assert knn.score(coords, y) > 0.98


def test_neighbourhood_scores_match_scikit_learn_and_known_answers() -> None:
    from sklearn.manifold import trustworthiness

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    noisy = x[:, :2] + 0.5 * rng.normal(size=(400, 2)).astype(np.float32)
    exact = neighbourhood_scores(x, noisy, k=10, points=None)
    assert exact["exact"] and exact["points"] == 400
    assert exact["trustworthiness"] == pytest.approx(trustworthiness(x, noisy, n_neighbors=10), abs=1e-6)
    plane = x[:, :2].copy()  # features that are 2-D already: the embedding keeps every neighbour
    same = neighbourhood_scores(plane, plane * 3.0 + 1.0, k=5)
    assert same["trustworthiness"] == pytest.approx(1.0) and same["knn_preservation"] == pytest.approx(1.0)
    sampled = neighbourhood_scores(x, noisy, k=10, points=200, seed=1)
    assert not sampled["exact"] and sampled["points"] == 200
    assert sampled["trustworthiness"] == pytest.approx(exact["trustworthiness"], abs=0.02)
    assert sampled["knn_preservation"] == pytest.approx(exact["knn_preservation"], abs=0.05)
    with pytest.raises(ValueError, match="k must be between 1 and"):
        neighbourhood_scores(x[:10], noisy[:10], k=5)


def test_embed_cli_writes_coordinates_and_figures(tmp_path: Path) -> None:
    x, y = blobs(n=120, k=4, dims=12, seed=8)
    enc = write_features(tmp_path / "enc", x, y)
    out = tmp_path / "e"
    result = runner.invoke(app, ["embed", "--input", str(enc), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    arrays = load_npz(out / "embedding.npz", ("index", "pca", "tsne", "y", "explained_variance_ratio"))
    assert arrays["pca"].shape == (120, 2) and arrays["tsne"].shape == (120, 2)
    np.testing.assert_array_equal(arrays["y"], y)
    assert 0.5 < arrays["explained_variance_ratio"].sum() <= 1.0 + 1e-6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"][:2] == ["pca", "tsne"] and metrics["n"] == 120 and "seconds" not in metrics
    assert "tsne" in json.loads((out / "manifest.json").read_text())["timings"]
    for method in metrics["methods"]:  # four well-separated blobs: neighbourhoods are mostly kept
        score = metrics["quality"][method]
        assert score["k"] == 10 and score["exact"] and 0.8 < score["trustworthiness"] <= 1.0
        assert 0.0 < score["knn_preservation"] <= 1.0
    for fig in ("pca-variance", "pca-by-label", "tsne-by-label"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    again = runner.invoke(app, ["embed", "--input", str(enc), "--out", str(tmp_path / "e2"), *FAST])
    assert again.exit_code == 0
    assert (out / "embedding.npz").read_bytes() == (tmp_path / "e2" / "embedding.npz").read_bytes()
    assert_same_outputs(out, tmp_path / "e2")


def test_tsne_sample_and_umap_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed_module, "umap_available", lambda: False)
    x, y = blobs(n=120, k=3, dims=6)
    enc = write_features(tmp_path / "enc", x, y)
    out = tmp_path / "e"
    result = runner.invoke(app, ["embed", "--input", str(enc), "--out", str(out), *FAST, "--set", "tsne.max_points=50"])
    assert result.exit_code == 0, result.output
    assert "umap skipped" in result.output
    tsne = load_npz(out / "embedding.npz")["tsne"]
    assert int(np.isfinite(tsne[:, 0]).sum()) == 50
    assert json.loads((out / "metrics.json").read_text())["skipped"]["umap"].startswith("the optional package")


@pytest.mark.skipif(not embed_module.umap_available(), reason="umap-learn is not installed")
def test_umap_when_installed(tmp_path: Path) -> None:
    x, y = blobs(n=150, k=3, dims=6)
    enc = write_features(tmp_path / "enc", x, y)
    result = runner.invoke(app, ["embed", "--input", str(enc), "--out", str(tmp_path / "e"), *FAST])
    assert result.exit_code == 0, result.output
    assert load_npz(tmp_path / "e" / "embedding.npz")["umap"].shape == (150, 2)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--input", "MISSING"], "does not exist"),
        (["--set", "tsne.perplexty=5"], "unknown config key 'tsne.perplexty'"),
        (["--set", "tsne.max_iter=10"], "config key 'tsne.max_iter'"),
        (["--split", "dev"], "unknown split 'dev' in option --split; valid: test, train, all"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    x, y = blobs(n=60, k=2)
    enc = write_features(tmp_path / "enc", x, y)
    args = [str(tmp_path / "missing") if a == "MISSING" else a for a in args]
    if "--input" not in args:
        args = ["--input", str(enc), *args]
    result = runner.invoke(app, ["embed", "--out", str(tmp_path / "e"), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output and result.output.strip().startswith("error:")
    assert not (tmp_path / "e" / "manifest.json").exists()


def test_features_that_are_all_the_same_are_refused(tmp_path: Path) -> None:
    enc = write_features(tmp_path / "enc", np.full((40, 6), 0.5, np.float32), np.arange(40) % 2)
    result = runner.invoke(app, ["embed", "--input", str(enc), "--out", str(tmp_path / "e"), *FAST])
    assert result.exit_code == 2 and "has the same features: there is nothing to embed" in result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "e").exists()


@pytest.mark.parametrize("scale", [1e30, 1e-40])
def test_huge_or_tiny_features_are_embedded_as_their_scaled_copies(tmp_path: Path, scale: float) -> None:
    """float32 squared distances of such values overflow or vanish: every method is blind to
    scale, so the features are divided by their largest magnitude first."""
    x, y = blobs(n=80, k=2, dims=6, seed=3)
    enc = write_features(tmp_path / "enc", (x.astype(np.float64) * scale).astype(np.float32), y)
    args = ["embed", "--input", str(enc), "--out", str(tmp_path / "e"), *FAST, "--set", "umap.enabled=false"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    coords = load_npz(tmp_path / "e" / "embedding.npz")
    assert np.isfinite(coords["pca"]).all() and np.isfinite(coords["tsne"]).all()
    quality = json.loads((tmp_path / "e" / "metrics.json").read_text())["quality"]
    assert quality["tsne"]["trustworthiness"] > 0.8  # two blobs kept apart


def test_shipped_config_is_the_defaults() -> None:
    shipped = yaml.safe_load((ROOT / "configs" / "embed.yaml").read_text())
    assert shipped == EmbedConfig().model_dump(mode="json")
    assert load_config(EmbedConfig, ROOT / "configs" / "embed.yaml") == EmbedConfig()
