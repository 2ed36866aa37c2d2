"""Progress output of the command line when it is not a terminal (logs, pipes, CI)."""

from __future__ import annotations

import gc
import io

import pytest
from rich.console import Console

from fmnist_cluster import cli, terminal


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(terminal, "console", Console(file=out, width=200, force_terminal=False))
    return out


def _run_task(steps: int) -> None:
    with terminal.live_progress() as progress:
        task = progress.task("work", total=steps)
        for i in range(steps):
            task.advance(1, epoch=i + 1, loss=1.0 / (i + 1))
        task.close()


def test_plain_progress_prints_a_line_per_tenth_when_slow_enough(log, monkeypatch):
    monkeypatch.setattr(terminal, "_PLAIN_EVERY", 0.0)
    _run_task(20)
    lines = log.getvalue().splitlines()
    # tenths 1..10 reached on steps 2, 4, ..., 20; the closing line would repeat the last one
    assert [line.split()[1] for line in lines] == [f"{n}/20" for n in range(2, 21, 2)]
    assert lines[0].startswith("work 2/20 ") and "epoch=2" in lines[0] and "loss=0.5" in lines[0]
    assert "epoch=20" in lines[-1]


def test_plain_progress_closing_line_shows_metrics_added_after_the_last_step(log, monkeypatch):
    monkeypatch.setattr(terminal, "_PLAIN_EVERY", 0.0)
    with terminal.live_progress() as progress:
        task = progress.task("train", total=2)
        task.advance(1, epoch=1)
        task.advance(1, epoch=2)
        task.advance(0, epoch=2, val_acc=0.75)
        task.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and "val_acc=0.75" in lines[-1] and "val_acc" not in lines[-2]


def test_plain_progress_of_a_quick_task_prints_nothing(log, monkeypatch):
    monkeypatch.setattr(terminal, "_PLAIN_EVERY", 3600.0)
    _run_task(50)
    assert log.getvalue() == ""


def test_a_task_that_fails_prints_no_progress(log, monkeypatch):
    monkeypatch.setattr(terminal, "_PLAIN_EVERY", 3600.0)
    with pytest.raises(RuntimeError):
        with terminal.live_progress() as progress:
            task = progress.task("work", total=10)
            task.advance(5)
            raise RuntimeError("boom")
    assert log.getvalue() == ""


def test_parser_errors_end_in_one_error_line(monkeypatch, capsys) -> None:
    import pytest

    def exit_(code: int) -> None:  # main() ends the process with os._exit; here it must not
        raise SystemExit(code)

    monkeypatch.setattr("os._exit", exit_)
    monkeypatch.setattr("sys.argv", ["fmnist-cluster", "train-cnn", "--epochs", "1e12"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 2
    assert gc.isenabled()  # main() imports with the garbage collector off, and turns it back on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Invalid value for '--epochs'")
    monkeypatch.setattr("sys.argv", ["fmnist-cluster", "--version"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 0 and "fmnist-cluster" in capsys.readouterr().out


def test_collect_from_here_turns_the_collector_on_with_what_exists_frozen() -> None:
    gc.disable()
    try:
        cli.collect_from_here()
        frozen = gc.get_freeze_count()
        assert gc.isenabled() and frozen > 0
        made = [[i] for i in range(1000)]  # tracked objects a second freeze would take in
        cli.collect_from_here()  # once on, nothing more is frozen
        assert gc.get_freeze_count() < frozen + len(made)  # (a frozen object may die meanwhile)
    finally:
        gc.unfreeze()
        gc.enable()


def test_the_process_ends_with_its_output_flushed_and_its_exit_code(tmp_path) -> None:
    """main() ends the process with os._exit: piped (block-buffered) output must still arrive."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # piped output is block-buffered

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "fmnist_cluster", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)

    script = "import sys; from fmnist_cluster import cli; "
    script += "sys.stdout.write('out'); sys.stderr.write('err'); cli._exit(3)"
    direct = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert (direct.returncode, direct.stdout, direct.stderr) == (3, "out", "err")
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("fmnist-cluster ")
    done = run("preprocess", "--source", "sample", "--out", str(tmp_path / "data"))
    assert done.returncode == 0 and "preprocess: 6000 train" in done.stdout + done.stderr, done.stderr
    assert (tmp_path / "data" / "manifest.json").is_file()
    bad = run("preprocess", "--source", "sample", "--set", "nope=1", "--out", str(tmp_path / "other"))
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "nope" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_an_out_path_with_brackets_is_shown_as_it_is(tmp_path) -> None:
    """Rich markup in the summary line must not eat '[run1]' or choke on '[/]' in a folder name."""
    from typer.testing import CliRunner

    from fmnist_cluster.cli import app

    for name in ("outputs[run1]", "a[/]b"):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["preprocess", "--source", "sample", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert f"->{out}/data.npz" in "".join(result.output.split()), result.output  # wrapping aside


def test_control_characters_from_an_artefact_are_written_out_not_sent_to_the_terminal(tmp_path) -> None:
    """A stage name with an ESC sequence (it could retitle or recolour the terminal) and a line
    break is shown as text, in one error line."""
    import json

    from typer.testing import CliRunner

    from fmnist_cluster.cli import app

    folder = tmp_path / "odd"
    folder.mkdir()
    stage = "\x1b]0;PWNED\x07\x1b[31mevil\nline"
    (folder / "manifest.json").write_text(json.dumps({"stage": stage, "outputs": {}, "inputs": {}}))
    result = CliRunner().invoke(app, ["train-som", "--input", str(folder), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;PWNED\\x07\\x1b[31mevil line" in result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error:")


def test_ctrl_c_ends_in_one_line_that_says_what_is_left(tmp_path, monkeypatch, capsys) -> None:
    """Interrupted in a stage: one error line, exit code 130, and the way on (--resume from the
    checkpoint a training stage left, or nothing published); interrupted while the command was
    still starting (the option parser turns it into exit code 130): one line too."""
    import pytest

    import fmnist_cluster.data
    import fmnist_cluster.som

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(cli, "_exit", exit_)  # not os._exit: train-som forks figure workers, which end by it

    def run(*argv: str) -> list[str]:
        monkeypatch.setattr("sys.argv", ["fmnist-cluster", *argv])
        with pytest.raises(SystemExit) as ended:
            cli.main()
        assert ended.value.code == 130
        return capsys.readouterr().err.strip().splitlines()

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    def interrupted_after_a_checkpoint(*args: object, **kwargs: object) -> None:
        (tmp_path / "som").mkdir()
        (tmp_path / "som" / fmnist_cluster.som.CHECKPOINT).write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(fmnist_cluster.data, "run_preprocess", interrupted)
    assert run("preprocess", "--out", str(tmp_path / "data")) == [
        f"error: interrupted: preprocess stopped; nothing of it was published to {tmp_path / 'data'}"
    ]
    monkeypatch.setattr(fmnist_cluster.som, "run_train_som", interrupted_after_a_checkpoint)
    som = tmp_path / "som"
    assert run("train-som", "--input", str(tmp_path / "data"), "--out", str(som)) == [
        "error: interrupted: train-som stopped; run the same command with --resume to continue from "
        f"{som}/checkpoint.npz"
    ]
    monkeypatch.setattr(cli, "_load", interrupted)  # before the stage: the parser's own exit code 130
    assert run("preprocess", "--out", str(tmp_path / "data")) == [
        "error: interrupted; --out holds its previous artefact or the complete new one, never a part"
    ]


def test_a_full_disk_is_one_error_line_and_leaves_the_older_artefact(tmp_path, monkeypatch) -> None:
    import errno

    from typer.testing import CliRunner

    import fmnist_cluster.artefacts.stage_run as stage_run
    from fmnist_cluster.cli import app

    out = tmp_path / "data"
    assert CliRunner().invoke(app, ["preprocess", "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "data.npz"))

    monkeypatch.setattr(stage_run, "write_npz", full)
    result = CliRunner().invoke(app, ["preprocess", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: No space left on device ({out / 'data.npz'}); free some space or pass an --out on another disk"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"], "no staging folder is left"
