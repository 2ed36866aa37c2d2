"""Hostile input: YAML that blows up, values no library takes, tampered artefacts, signals."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmnist_cluster.artefacts import MANIFEST, StageRun, sha256_file
from fmnist_cluster.cli import app
from fmnist_cluster.config import (
    COMMAND_CONFIGS,
    MAX_THREADS,
    ClusterConfig,
    CnnConfig,
    PreprocessConfig,
    TuneConfig,
    load_config,
    short_repr,
)
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.text import visible_controls

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


# -- YAML a config never needs ------------------------------------------------------------------
BOMB = "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]]"


@pytest.mark.parametrize(
    ("text", "message", "as_set"),
    [
        # nested aliases: 10**9 references in a few hundred bytes
        (f"seed: {BOMB}\n", r"line 1 repeats an anchor \(\*a\); write the value out", True),
        ("<<: {seed: 3}\n", r"line 1 has a merge key \(<<\); write the keys out", False),
        ("? [a, b]\n: 1\n", "line 1 has a key that is not a plain value", False),
        ("seed: " + "9" * 5000 + "\n", "holds a value YAML cannot read .*; quote it or shorten it", True),
        (
            "seed: 2024-02-30\n",
            r"holds a value YAML cannot read \(a number of thousands of digits, an impossible",
            True,
        ),
        ("seed: " + "[" * 3000 + "]" * 3000 + "\n", "is nested too deep to read; flatten it", True),
        ("seed: [1\n", r"line 2 is not valid YAML; fix its syntax", False),
        ("seed: 1:30\n", r"line 1 holds 1:30, which YAML reads as a base-60 number; write the number in", True),
        ("seed: 010\n", r"line 1 holds 010, which YAML reads as an octal number; write the number in", True),
    ],
)
def test_yaml_a_config_never_needs_is_refused_in_one_line(
    tmp_path: Path, text: str, message: str, as_set: bool
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(FmnistError, match=message):
        load_config(ClusterConfig, path)
    if as_set:  # the same value given with --set
        with pytest.raises(FmnistError, match=message):
            load_config(ClusterConfig, None, [f"seed={text.split(':', 1)[1].strip()}"])
    assert time.perf_counter() - started < 5


def test_an_unknown_alias_in_a_set_value_is_plain_text() -> None:
    assert load_config(COMMAND_CONFIGS["report"][0], None, ["title=*draft"]).title == "*draft"


def test_a_key_given_twice_in_a_set_value_is_refused() -> None:
    with pytest.raises(FmnistError, match="key 'a' appears twice"):
        load_config(TuneConfig, None, ["space={a: {low: 1, high: 2}, a: {low: 1, high: 3}}"])


def test_a_fifo_as_config_is_named_for_what_it_is(tmp_path: Path) -> None:
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    with pytest.raises(FmnistError, match="is not a regular file"):
        load_config(ClusterConfig, fifo)


def test_an_error_shows_a_short_picture_of_a_huge_value() -> None:
    bomb: object = [1] * 10
    for _ in range(9):
        bomb = [bomb] * 10  # 10**10 leaves, shared
    started = time.perf_counter()
    shown = short_repr(bomb)
    assert len(shown) <= 80 and shown.startswith("[[[")
    assert short_repr(10**5000) == "<int too long to show>"
    assert time.perf_counter() - started < 1


# -- values no library takes -----------------------------------------------------------------------
@pytest.mark.parametrize("command", sorted(k for k, (m, _) in COMMAND_CONFIGS.items() if "seed" in m.model_fields))
def test_every_seed_is_a_seed_numpy_torch_and_scikit_learn_take(command: str) -> None:
    model = COMMAND_CONFIGS[command][0]
    assert load_config(model, None, [f"seed={2**32 - 1}"]).seed == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(FmnistError, match=r"config key 'seed'"):
            load_config(model, None, [f"seed={bad}"])


@pytest.mark.parametrize(
    ("model", "item"),
    [
        (CnnConfig, "train.lr=.inf"),
        (CnnConfig, "train.weight_decay=.inf"),
        (TuneConfig, "te_weight=.inf"),
        (TuneConfig, "space={som.sigma: {low: 1, high: .inf}}"),
        (ClusterConfig, "explain.min_z=.nan"),
    ],
)
def test_no_number_may_be_infinite_or_nan(model: type, item: str) -> None:
    with pytest.raises(FmnistError, match="finite number"):
        load_config(model, None, [item])


@pytest.mark.parametrize(
    ("model", "item"),
    [
        (PreprocessConfig, "limit=true"),
        (ClusterConfig, "kmeans.k=false"),
        (PreprocessConfig, "relabel=[true,false,true,false,false,true,true,false,true,false]"),
    ],
)
def test_true_and_false_are_not_numbers(model: type, item: str) -> None:
    with pytest.raises(FmnistError, match=r"true and false are yes/no values; this key takes another kind of value"):
        load_config(model, None, [item])
    assert load_config(ClusterConfig, None, ["explain.enabled=false"]).explain.enabled is False
    assert load_config(TuneConfig, None, ["space={som.x: {choices: [true, false]}}"]).space["som.x"].choices == [
        True,
        False,
    ]


def test_thread_counts_and_restarts_are_bounded() -> None:
    assert load_config(CnnConfig, None, [f"threads={MAX_THREADS}"]).threads == MAX_THREADS
    with pytest.raises(FmnistError, match=f"less than or equal to {MAX_THREADS}"):
        load_config(CnnConfig, None, [f"threads={MAX_THREADS + 1}"])
    with pytest.raises(FmnistError, match=r"kmeans\.n_init"):
        load_config(ClusterConfig, None, ["kmeans.n_init=100000000"])


def test_a_check_across_a_section_names_the_section_not_its_whole_value() -> None:
    with pytest.raises(FmnistError) as info:
        load_config(COMMAND_CONFIGS["train-som"][0], None, ["som.epochs=2.5"])
    assert str(info.value).startswith("config section 'som' in the defaults with --set overrides: epochs must be")
    assert "(got {" not in str(info.value)


def test_set_reaches_a_key_that_holds_dots() -> None:
    default = TuneConfig().space
    for config in (None, ROOT / "configs" / "tune.yaml"):
        cfg = load_config(TuneConfig, config, ["space.som.sigma.low=2"])  # one bound of an existing key
        assert cfg.space["som.sigma"].low == 2 and cfg.space["som.sigma"].high == default["som.sigma"].high
        assert set(cfg.space) == set(default)
        cfg = load_config(TuneConfig, config, ["space.som.sigma={low: 2, high: 5}"])  # a whole key
        assert (cfg.space["som.sigma"].low, cfg.space["som.sigma"].high, cfg.space["som.sigma"].log) == (2, 5, False)
        cfg = load_config(TuneConfig, config, ["space.som.rows={low: 5, high: 9, integer: true}"])  # a new key
        assert set(cfg.space) == {*default, "som.rows"} and cfg.space["som.rows"].integer
    assert set(load_config(TuneConfig, None, ["space={som.rows: {low: 5, high: 9}}"]).space) == {"som.rows"}


# -- artefacts: folders keep their modes; links and foreign structures refused ---------------------
def test_publishing_keeps_the_modes_of_the_users_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "private" / "deep").mkdir(parents=True)
    (out / "private" / "notes.txt").write_text("mine")
    (out / "empty").mkdir()
    os.chmod(out / "private", 0o700)
    os.chmod(out / "empty", 0o750)
    with StageRun("preprocess", out, {}, seed=0) as run:
        run.save_text("a.txt", "x")
        run.commit()
    assert stat.S_IMODE((out / "private").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "empty").stat().st_mode) == 0o750
    assert (out / "private" / "notes.txt").read_text() == "mine" and (out / "private" / "deep").is_dir()


def _artefact(folder: Path, files: dict[str, bytes], stage: str = "cluster") -> None:
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    outputs = {name: sha256_file(folder / name) for name in files}
    (folder / MANIFEST).write_text(json.dumps({"stage": stage, "outputs": outputs}))


def test_report_refuses_foreign_structures_links_and_fake_pictures(tmp_path: Path) -> None:
    cases = {
        "labels": ({"decoding.json": json.dumps({"labels": [{}]}).encode()}, "does not hold what its stage writes"),
        "content": ({"decoding.json": json.dumps({"content": "oops"}).encode()}, "does not hold what its stage"),
        "picture": ({"u_matrix.png": b"not a png at all"}, "is not a PNG image"),
    }
    for name, (files, message) in cases.items():
        _artefact(tmp_path / name, files)
        result = runner.invoke(app, ["report", "--input", str(tmp_path / name), "--out", str(tmp_path / f"r-{name}")])
        assert result.exit_code == 2, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (name, result.output)
        assert not (tmp_path / f"r-{name}").exists()
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    linked = tmp_path / "linked"
    _artefact(linked, {"metrics.json": b"{}"}, stage="train-som")
    (linked / "metrics.json").unlink()
    (linked / "metrics.json").symlink_to(secret)
    manifest = json.loads((linked / MANIFEST).read_text())
    manifest["outputs"]["metrics.json"] = sha256_file(secret)
    (linked / MANIFEST).write_text(json.dumps(manifest))
    result = runner.invoke(app, ["report", "--input", str(linked), "--out", str(tmp_path / "r-linked")])
    assert result.exit_code == 2 and "is a link" in result.output, result.output


def test_report_reads_a_folder_given_twice_once(tmp_path: Path) -> None:
    _artefact(tmp_path / "run", {"metrics.json": json.dumps({"score": 1.5}).encode()}, stage="custom")
    args = ["report", "--input", str(tmp_path / "run"), "--input", f"{tmp_path / 'run'}/", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "report: 1 artefact(s)" in result.output


def test_report_reads_each_manifest_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fmnist_cluster.artefacts.manifest as manifest_module
    import fmnist_cluster.report.evidence as evidence_module

    reads: list[Path] = []

    def counted(folder: Path | str, *args: object, **kwargs: object) -> dict:
        reads.append(Path(folder))
        return original(folder, *args, **kwargs)

    original = manifest_module.read_manifest
    monkeypatch.setattr(manifest_module, "read_manifest", counted)
    monkeypatch.setattr(evidence_module, "read_manifest", counted)
    files = {f"part{i}.txt": f"{i}".encode() for i in range(50)} | {"metrics.json": b"{}"}
    _artefact(tmp_path / "run", files, stage="custom")
    result = runner.invoke(app, ["report", "--input", str(tmp_path / "run"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert reads.count(tmp_path / "run") == 1, len(reads)


def test_a_wrong_folder_is_named_by_the_option_that_gave_it(tmp_path: Path) -> None:
    from fmnist_cluster.decode import load_originals
    from fmnist_cluster.features import _load_images

    _artefact(tmp_path / "cnn", {"metrics.json": b"{}"}, stage="train-cnn")
    with pytest.raises(FmnistError, match=r"^--originals .*cnn was written by `train-cnn`"):
        load_originals(tmp_path / "cnn")
    with pytest.raises(FmnistError, match=r"^--images .*cnn was written by `train-cnn`"):
        _load_images(tmp_path / "cnn", "test", 10, None)
    with pytest.raises(FmnistError, match=r"does not exist; .* \(or pass --originals\)$"):
        load_originals(tmp_path / "none")


def test_bidirectional_controls_are_written_out() -> None:
    assert visible_controls("\u202egnp.exe") == "\\u202egnp.exe"
    assert visible_controls("a\u2066b\u200fc\x1bd") == "a\\u2066b\\u200fc\\x1bd"
    assert visible_controls("é 日本 — ×") == "é 日本 — ×"


def test_a_folder_name_that_is_not_utf8_is_written_out(tmp_path: Path) -> None:
    assert visible_controls(os.fsdecode(b"r\xe9p")) == "r\\xe9p"
    assert visible_controls("a\ud800b") == "a\\ud800b"
    folder = tmp_path / os.fsdecode(b"r\xe9p")
    _artefact(folder, {"metrics.json": json.dumps({"score": 1.5}).encode()}, stage="custom")
    result = runner.invoke(app, ["report", "--input", str(folder), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "r\\xe9p" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    missing = runner.invoke(app, ["report", "--input", str(folder / "none"), "--out", str(tmp_path / "r2")])
    assert missing.exit_code == 2 and "r\\xe9p/none does not exist" in missing.output, missing.output


def _preprocess(idx_dir: Path, data: Path) -> None:
    result = runner.invoke(app, ["preprocess", "--source", "idx", "--path", str(idx_dir), "--out", str(data)])
    assert result.exit_code == 0, result.output


# -- signals ----------------------------------------------------------------------------------------
@pytest.mark.serial
def test_sigterm_ends_a_stage_like_ctrl_c(tmp_path: Path, idx_dir: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "cnn"
    _preprocess(idx_dir, data)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "fmnist_cluster", "train-cnn", "-c", str(ROOT / "configs" / "cnn-demo.yaml")]
    args += ["-i", str(data), "-o", str(out), "--epochs", "500", "--threads", "1", "--device", "cpu"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and not (out / "train-state.pt").is_file() and proc.poll() is None:
        time.sleep(0.05)  # an epoch is done and checkpointed
    proc.send_signal(signal.SIGTERM)
    errors = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, errors
    assert errors.startswith("error: interrupted: train-cnn stopped; run the same command with --resume"), errors
    assert len(errors.strip().splitlines()) == 1, errors
    assert not (out / MANIFEST).exists() and not list(tmp_path.glob(".cnn.staging-*"))


def test_ctrl_c_while_the_command_line_loads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fmnist_cluster.__main__ import run

    class Interrupting:
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "fmnist_cluster.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "fmnist_cluster.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as info:
        run()
    assert info.value.code == 130
    assert capsys.readouterr().err == "error: interrupted while starting; nothing was written\n"


def test_hdbscan_min_samples_beyond_the_rows_is_named(tmp_path: Path, idx_dir: Path) -> None:
    data = tmp_path / "data"
    _preprocess(idx_dir, data)
    only = ["--set", "kmeans.enabled=false", "--set", "dbscan.enabled=false", "--set", "agglomerative.enabled=false"]
    args = ["cluster", "--input", str(data), "--out", str(tmp_path / "c"), *only, "--set", "hdbscan.min_samples=100000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: hdbscan.min_samples=100000 is more than the 20 rows clustered")


def test_a_first_tune_run_that_fails_in_a_library_leaves_no_out(
    tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_cluster.tune import stage

    data, out = tmp_path / "data", tmp_path / "tune"
    _preprocess(idx_dir, data)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a library failed")

    monkeypatch.setattr(stage, "_study", broken)
    with pytest.raises(RuntimeError):
        stage.run_tune(TuneConfig(), data, out)
    assert not out.exists()


def test_a_storage_password_is_never_shown_or_recorded(tmp_path: Path, idx_dir: Path) -> None:
    data = tmp_path / "data"
    _preprocess(idx_dir, data)
    cfg = ROOT / "configs" / "tune-demo.yaml"
    for url, message in (
        ("postgresql+psycopg://tuner:s3cretPW@127.0.0.1:badport/db", "is not a database URL that can be opened"),
        ("sqlite://tuner:s3cretPW@/:memory:", "is a database in memory"),
    ):
        args = ["tune", "-c", str(cfg), "--input", str(data), "--out", str(tmp_path / "t"), "--storage", url]
        result = runner.invoke(app, [*args, "--n-trials", "1"])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "s3cretPW" not in result.output and "tuner:***@" in result.output
        assert not (tmp_path / "t").exists()


def test_rows_with_one_cell_more_than_the_header_are_refused(tmp_path: Path) -> None:
    header = ",".join(str(i) for i in range(784))
    rows = "\n".join(f"{k}," + ",".join(["0"] * 784) for k in range(4))  # an unnamed index column
    folder = tmp_path / "tw"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"x_{split}.csv").write_text(f"{header}\n{rows}\n")
        (folder / f"y_{split}.csv").write_text("label\n0\n1\n0\n1\n")
    result = runner.invoke(
        app, ["preprocess", "--source", "twisted-csv", "--path", str(folder), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert "the rows have one cell more than the header (785 against 784); remove the index column" in result.output


def test_embed_and_cluster_say_what_is_too_small(tmp_path: Path, idx_dir: Path) -> None:
    data = tmp_path / "data"
    _preprocess(idx_dir, data)
    import numpy as np

    from fmnist_cluster.artefacts import save_npz

    arrays = dict(np.load(data / "data.npz", allow_pickle=False))
    arrays["x_test"], arrays["y_test"] = arrays["x_test"][:0], arrays["y_test"][:0]
    save_npz(data / "data.npz", **arrays)
    manifest = json.loads((data / MANIFEST).read_text())
    manifest["outputs"]["data.npz"] = sha256_file(data / "data.npz")
    (data / MANIFEST).write_text(json.dumps(manifest))
    for command in ("embed", "cluster"):
        result = runner.invoke(app, [command, "--input", str(data), "--out", str(tmp_path / command)])
        assert result.exit_code == 2, result.output
        assert "has no rows in the 'test' split; pass another --split" in result.output


def test_a_checkpoint_header_must_be_what_train_cnn_writes() -> None:
    from fmnist_cluster.cnn.checkpoint import _sound_header

    good = {"format_version": 1, "n_classes": 5, "input_shape": [1, 28, 28], "class_names": None, "test_flip": True}
    assert _sound_header(good) and _sound_header(dict(good, class_names=["a", "b", "c", "d", "e"]))
    for bad in (
        {"format_version": "abc"},
        {"n_classes": None},
        {"n_classes": 10**30},
        {"input_shape": None},
        {"input_shape": [1, 14, 14]},
        {"class_names": "abcde"},
        {"class_names": [0, 1, 2, 3, 4]},
        {"test_flip": "no"},
    ):
        assert not _sound_header(dict(good, **bad)), bad
