"""Typed configs: YAML + --set overrides, one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fmnist_cluster.cli import app
from fmnist_cluster.config import PreprocessConfig, config_to_yaml, load_config, parse_override
from fmnist_cluster.errors import FmnistError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_defaults_file_matches_model() -> None:
    shipped = yaml.safe_load((ROOT / "configs" / "preprocess.yaml").read_text())
    assert shipped == PreprocessConfig().model_dump(mode="json")


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = PreprocessConfig(source="idx", path="/data", limit=10, relabel=[0, 1, 0, 1, 2, 2, 0, 2, 1, 2])
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(PreprocessConfig, path) == cfg


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("limit=5", "limit", 5),
        ("path=null", "path", None),
        ("a.b.c=[1, 2]", "a.b.c", [1, 2]),
        ("x=on", "x", True),
        ("p=a=b", "p", "a=b"),
    ],
)
def test_parse_override(item: str, key: str, value: object) -> None:
    assert parse_override(item) == (key, value)


def test_overrides_apply_after_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source: idx\npath: /a\nlimit: 3\n")
    cfg = load_config(PreprocessConfig, path, ["limit=7", "deskew=true"])
    assert (cfg.source, cfg.path, cfg.limit, cfg.deskew) == ("idx", "/a", 7, True)


@pytest.mark.parametrize(
    ("text", "overrides", "words"),
    [
        ("sorce: idx\n", [], "unknown config key 'sorce'"),
        ("", ["limt=3"], "valid: cache_dir, center, deskew, limit"),
        ("source: mnist\n", [], "; valid: sample, idx, kaggle-csv, twisted-csv, torchvision"),
        ("limit: -4\n", [], "config key 'limit'"),
        ("limit: many\n", [], "valid integer"),
        ("standardize: yes-please\n", [], "unknown standardize 'yes-please' in "),
        ("- a\n- b\n", [], "must hold a mapping"),
        ("source: [idx\n", [], "not valid YAML"),
        ("", ["=3"], "expected dotted.key=value"),
        ("", ["relabel=[0,1]"], "needs 10 label ids"),
    ],
)
def test_config_mistakes_are_one_clear_error(tmp_path: Path, text: str, overrides: list[str], words: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(FmnistError, match=None) as info:
        load_config(PreprocessConfig, path, overrides)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FmnistError, match="does not exist"):
        load_config(PreprocessConfig, tmp_path / "nope.yaml")


def test_cli_config_error_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["preprocess", "--set", "sigma=2", "--out", str(out)])
    assert result.exit_code == 2
    assert "unknown config key 'sigma'" in result.output
    assert not out.exists()


def test_cli_needs_path_for_folder_sources(tmp_path: Path) -> None:
    result = runner.invoke(app, ["preprocess", "--source", "idx", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--path DIR" in result.output


def test_help_lists_options_with_defaults() -> None:
    result = runner.invoke(app, ["preprocess", "--help"])
    assert result.exit_code == 0
    for option in ("--config", "--set", "--out", "--source", "--path", "--limit", "outputs/data"):
        assert option in result.output


def test_help_texts_list_values_and_defaults_from_the_models() -> None:
    from fmnist_cluster.config import DEVICES, SomConfig, TuneConfig, one_of, overrides_help

    assert one_of(DEVICES) == "auto, cpu or cuda" and one_of(["only"]) == "only"
    assert overrides_help(SomConfig, "som.epochs") == "Overrides 'som.epochs' (default: 13)."
    assert overrides_help(TuneConfig, "storage", none="a journal") == "Overrides 'storage' (default: a journal)."


def test_a_commands_own_options_are_taken_as_given_and_named_in_errors(tmp_path: Path) -> None:
    """An option's value is not read as YAML (a URL ending in ':' stays a string), and a bad one
    is named by its option, in the form "unknown X 'y'; valid: a, b, c"."""
    out = tmp_path / "o"
    result = runner.invoke(app, ["train-som", "--input", str(tmp_path), "--out", str(out), "--device", "gpu"])
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip() == "error: unknown train.device 'gpu' in option --device; valid: auto, cpu, cuda"
    cfg = load_config(PreprocessConfig, None, ["limit=3"], {"path": "a: b:", "limit": None})
    assert cfg.path == "a: b:" and cfg.limit == 3
