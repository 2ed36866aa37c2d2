"""Publication, --out guards, messages and help texts: the parts of the hardening that the
robustness harness (tests/test_robustness.py) does not judge by exit code alone."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fmnist_cluster.artefacts import MANIFEST, StageRun, check_out_dir, sha256_file, stage_run
from fmnist_cluster.cli import app
from fmnist_cluster.config import (
    COMMAND_CONFIGS,
    ClusterConfig,
    CnnConfig,
    SomConfig,
    load_config,
)
from fmnist_cluster.errors import FmnistError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _publish(out: Path, files: dict[str, bytes], stage: str = "demo") -> dict:
    with StageRun(stage, out, {}) as run:
        for name, data in files.items():
            run.save_bytes(name, data)
        return run.commit()


def _consistent(out: Path) -> bool:
    manifest = json.loads((out / MANIFEST).read_text())
    return all(sha256_file(out / name) == digest for name, digest in manifest["outputs"].items())


# -- atomic publication -------------------------------------------------------------------


def test_a_kill_before_the_swap_keeps_the_old_artefact_whole(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "o"
    _publish(out, {"a.npz": b"old-a", "fig.png": b"old-fig"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed(a: Path, b: Path) -> bool:
        raise KeyboardInterrupt  # the process dies between preparing the new folder and the swap

    monkeypatch.setattr(stage_run, "_exchange", killed)
    with pytest.raises(KeyboardInterrupt):
        _publish(out, {"a.npz": b"new-a"})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _consistent(out)
    assert not list(tmp_path.glob(".o.staging-*")), "the staging folder is cleaned up"


def test_publication_swaps_in_one_step_and_drops_outputs_the_new_run_no_longer_writes(tmp_path: Path) -> None:
    out = tmp_path / "o"
    _publish(out, {"a.npz": b"old-a", "sub/old.png": b"old-fig"})
    (out / "checkpoint.npz").write_bytes(b"ckpt")  # not an output: a resumable state survives
    (out / "notes.txt").write_text("mine")
    manifest = _publish(out, {"a.npz": b"new-a", "new.png": b"n"})
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["a.npz", "checkpoint.npz", MANIFEST, "new.png", "notes.txt"]
    assert (out / "a.npz").read_bytes() == b"new-a" and _consistent(out)
    assert set(manifest["outputs"]) == {"a.npz", "new.png"}


def test_publication_without_an_atomic_swap_falls_back_to_renames(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stage_run, "_exchange", lambda a, b: False)
    out = tmp_path / "o"
    _publish(out, {"a.npz": b"1", "old.png": b"x"})
    _publish(out, {"a.npz": b"2"})
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", MANIFEST] and _consistent(out)
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


def test_a_failed_run_leaves_no_new_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "new" / "o"
    with pytest.raises(RuntimeError), StageRun("demo", out, {}):
        raise RuntimeError("boom")
    assert not out.exists()


def test_an_unwritable_out_is_one_error_line(tmp_path: Path, monkeypatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(FmnistError, match=r"cannot write output folder .*Permission denied.*writable --out"):
        with StageRun("demo", tmp_path / "o", {}):
            pass
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0, reason="root may write")
def test_a_read_only_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(FmnistError, match="pass a writable --out"):
            with StageRun("demo", out, {}):
                pass
    finally:
        out.chmod(0o700)


# -- --out guards ------------------------------------------------------------------------------


def test_out_may_not_be_an_input_or_another_stage_s_artefact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _publish(data, {"data.npz": b"x"}, stage="preprocess")
    with pytest.raises(FmnistError, match="is also the --input folder"):
        check_out_dir(data, "preprocess", [("--input", data)])
    with pytest.raises(FmnistError, match="holds a finished `preprocess` artefact; encode would replace it"):
        check_out_dir(data, "encode")
    check_out_dir(data, "preprocess")  # the same stage may replace its own artefact
    with pytest.raises(FmnistError, match="holds a finished"), StageRun("encode", data, {}):
        pass
    assert (data / "data.npz").read_bytes() == b"x"


def test_out_may_neither_hold_an_input_nor_lie_inside_an_input_artefact(tmp_path: Path) -> None:
    data = tmp_path / "study" / "data"
    _publish(data, {"data.npz": b"x"}, stage="preprocess")
    with pytest.raises(FmnistError, match="holds the --input folder"):
        check_out_dir(tmp_path / "study", "tune", [("--input", data)])
    with pytest.raises(FmnistError, match="lies inside the --input folder"):
        check_out_dir(data / "tune", "tune", [("--input", data)])
    check_out_dir(tmp_path / "study" / "tune", "tune", [("--input", data)])  # beside it: fine
    raw = tmp_path / "csv"
    raw.mkdir()
    check_out_dir(raw / "prepared", "preprocess", [("--path", raw)])  # raw data may hold its outputs
    result = runner.invoke(app, ["tune", "--input", str(data), "--out", str(tmp_path / "study"), "--n-trials", "1"])
    assert result.exit_code == 2 and "holds the --input folder" in result.output
    assert (data / "data.npz").read_bytes() == b"x"


def test_an_input_inside_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "in.csv").write_text("1")
    with pytest.raises(FmnistError, match="lies in its --out folder"), StageRun("demo", tmp_path / "o", {}) as run:
        run.add_input(tmp_path / "o" / "in.csv")


# -- messages ----------------------------------------------------------------------------------


def _error(argv: list[str]) -> str:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_messages_name_the_key_and_keep_bracketed_text(tmp_path: Path) -> None:
    assert "k_range needs [low, high] with 2 <= low <= high" in _error(
        ["cluster", "--set", "kmeans.k_range=[1,2]", "--out", str(tmp_path / "c")]
    )
    line = _error(["cluster", "--set", "kmeans.k=many", "--out", str(tmp_path / "c")])
    assert "'kmeans.k' " in line and "kmeans.k.int" not in line and "'labels' or 'auto'" in line
    assert "is a folder; pass a YAML file" in _error(["embed", "--config", str(tmp_path)])


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("som:\n  rows: 3\n  cols: 3\n  rows: 4\n")
    with pytest.raises(FmnistError, match=r"key 'rows' appears twice \(lines 2 and 4\)"):
        load_config(SomConfig, path)


def test_missing_model_names_the_model_option(tmp_path: Path) -> None:
    line = _error(["encode", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "e")])
    assert "--model" in line and "--input" not in line


def test_report_of_an_unfinished_folder_names_the_commands(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    line = _error(["report", "--input", str(tmp_path / "x"), "--out", str(tmp_path / "r")])
    assert "stage that writes it" not in line and "fmnist-cluster preprocess|train-som" in line
    assert not (tmp_path / "r").exists()


def test_winner_neurons_and_map_size_are_checked_with_the_config() -> None:
    with pytest.raises(FmnistError, match=r"winner_neurons \[9\] out of range; neurons of this map are 0..8"):
        load_config(SomConfig, None, ["som.rows=3", "som.cols=3", "analysis.winner_neurons=[9]"])
    with pytest.raises(FmnistError, match="at most 10000"):
        load_config(SomConfig, None, ["som.rows=200", "som.cols=200"])


# -- help shows the real defaults -------------------------------------------------------------

_MODELS = {"train-som": SomConfig, "train-cnn": CnnConfig, "cluster": ClusterConfig}


def _default(model: type, dotted: str) -> object:
    value: object = model()
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def test_help_defaults_are_the_config_defaults() -> None:
    group = typer.main.get_command(app)
    checked = 0
    for name, command in group.commands.items():
        for param in command.params:
            for key, shown in re.findall(r"Overrides '([\w.]+)' \(default: ([^)]*)\)", param.help or ""):
                value = _default(COMMAND_CONFIGS[name][0], key)
                if value is not None:
                    assert shown == (f"{value:g}" if isinstance(value, float) else str(value)), (name, key)
                checked += 1
    assert checked >= 12
    epochs = next(p for p in group.commands["train-som"].params if p.name == "epochs")
    assert f"(default: {SomConfig().som.epochs:g})" in epochs.help
    cnn_epochs = next(p for p in group.commands["train-cnn"].params if p.name == "epochs")
    assert f"(default: {CnnConfig().train.epochs})" in cnn_epochs.help


def test_config_help_names_the_file_that_holds_the_command_defaults() -> None:
    group = typer.main.get_command(app)
    assert set(group.commands) == set(COMMAND_CONFIGS)
    for name, command in group.commands.items():
        config = next(p for p in command.params if p.name == "config")
        files = re.findall(r"configs/([\w-]+\.yaml)", config.help or "")
        assert len(files) == 1, (name, config.help)
        model, shipped = COMMAND_CONFIGS[name]
        assert f"configs/{files[0]}" == shipped
        assert load_config(model, ROOT / shipped) == model(), name


# -- pooled SOM metrics are labelled in-sample -------------------------------------------------


def test_pooled_som_metrics_are_labelled_in_sample(idx_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert (
        runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(data)]).exit_code == 0
    )
    small = ["--set", "som.rows=3", "--set", "som.cols=3", "--set", "som.epochs=2", "--set", "train.search_dims=0"]
    result = runner.invoke(
        app, ["train-som", "--input", str(data), "--out", str(tmp_path / "s"), *small, "--set", "train.pool=true"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert "test_accuracy" not in metrics and "test_qe" not in metrics
    assert {"test_accuracy_in_sample", "test_qe_in_sample"} <= set(metrics) and not metrics["test_is_held_out"]
    assert "test_accuracy_in_sample" in metrics["in_sample"]
    assert "in-sample" in result.stderr and "test accuracy" not in result.stderr
    held = runner.invoke(app, ["train-som", "--input", str(data), "--out", str(tmp_path / "h"), *small])
    assert "test accuracy" in held.stderr
    assert "test_accuracy" in json.loads((tmp_path / "h" / "metrics.json").read_text())


def test_resume_of_a_som_checkpoint_from_other_data_is_refused(tmp_path: Path) -> None:
    from fmnist_cluster.som import make_engine, train

    cfg = load_config(SomConfig, None, ["som.rows=2", "som.cols=2", "som.epochs=3", "train.search_dims=0"])
    x = np.random.default_rng(0).random((30, 6)).astype(np.float32)
    train(make_engine(cfg), x, checkpoint=tmp_path / "c.npz")
    train(make_engine(cfg), x, checkpoint=tmp_path / "c.npz", resume=True)  # same data: fine
    with pytest.raises(FmnistError, match="trained on other data"):
        train(make_engine(cfg), x + 1, checkpoint=tmp_path / "c.npz", resume=True)


def test_out_may_not_be_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for out in (Path("."), Path(".."), tmp_path):
        with pytest.raises(FmnistError, match="is the current folder or holds it"):
            check_out_dir(out, "demo")


def test_empty_folders_of_the_user_survive_a_publication(tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / "keep" / "empty").mkdir(parents=True)
    _publish(out, {"a.npz": b"1"})
    assert (out / "keep" / "empty").is_dir() and _consistent(out)
