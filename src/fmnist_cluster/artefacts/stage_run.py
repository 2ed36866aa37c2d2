"""Writing a stage's artefact: :class:`StageRun` stages every output and publishes the folder
in one atomic swap; :func:`check_out_dir` refuses an ``--out`` that would destroy an input."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import os
import shlex
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts.files import dumps_json, loads_json, sha256_file, write_npz
from fmnist_cluster.artefacts.manifest import MANIFEST, package_versions, read_manifest
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.text import hide_url_passwords


def check_out_dir(out_dir: Path | str, stage: str, inputs: Iterable[tuple[str, Path | str | None]] = ()) -> None:
    """Refuse an ``--out`` folder that would destroy an upstream artefact.

    Parameters
    ----------
    out_dir : path
        The output folder a stage is about to write.
    stage : str
        The stage that writes it; a folder holding a finished artefact of another stage is refused.
    inputs : iterable of (option, path)
        The folders the stage reads (e.g. ``[("--input", ...), ("--model", ...)]``); ``--out``
        may be none of them, nor hold one, nor lie inside an artefact among them.

    Raises
    ------
    FmnistError
        ``--out`` is a file, one of the inputs, holds one or lies inside an input artefact, or
        is a finished artefact of another stage.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FmnistError(f"--out {out} is a file, not a folder; pass a folder for the {stage} artefact")
    here = out.resolve()
    if Path.cwd().resolve().is_relative_to(here):
        raise FmnistError(
            f"--out {out} is the current folder or holds it; a stage replaces its --out folder as a whole, "
            "pass a folder of its own (e.g. outputs/<name>)"
        )
    for option, folder in inputs:
        if folder is None:
            continue
        there = Path(folder).resolve()
        if there == here:
            raise FmnistError(
                f"--out {out} is also the {option} folder; writing there would replace what {stage} reads, "
                "pass another --out"
            )
        if there.is_relative_to(here):
            raise FmnistError(
                f"--out {out} holds the {option} folder {folder}; {stage} replaces its --out as a whole, "
                "pass a folder beside the input instead"
            )
        if here.is_relative_to(there) and (there / MANIFEST).is_file():  # raw data may hold its outputs
            raise FmnistError(
                f"--out {out} lies inside the {option} folder {folder}, which belongs to another artefact; "
                "pass a folder beside it instead"
            )
    mpath = out / MANIFEST
    if mpath.is_file():
        try:
            other = loads_json(mpath.read_text(encoding="utf-8")).get("stage")
        except (ValueError, AttributeError, OSError):
            other = None
        if isinstance(other, str) and other != stage:
            raise FmnistError(
                f"--out {out} holds a finished `{other}` artefact; {stage} would replace it, pass another --out "
                "(or delete that folder first)"
            )


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


def _remove_tree(path: Path) -> None:
    """Remove a staging or swapped-out folder, also where a folder the user made read-only was
    carried into it (its permissions are kept on publication); errors are ignored."""

    def writable_and_retry(func: Any, name: str, exc_info: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            func(name)

    shutil.rmtree(path, onerror=writable_and_retry)


def _carry_over(old: Path, new: Path, skip: set[str]) -> None:
    """Hard-link (or copy) every file of ``old`` not named in ``skip`` into ``new`` (same relative path):
    checkpoints, study databases and the user's own files survive a publication; the previous
    run's outputs do not. Folders keep their permissions (set last, deepest first, so a
    read-only folder is filled before it is closed)."""
    folders = []
    for path in sorted(old.rglob("*")):
        rel = path.relative_to(old).as_posix()
        if rel in skip or rel.split("/")[0].startswith(".staging-"):
            continue
        target = new / rel
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):  # an empty folder of the user's; folders with files come with them
                target.mkdir(parents=True, exist_ok=True)
            folders.append((path, target))
            continue
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            os.symlink(os.readlink(path), target)
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    for path, target in reversed(folders):
        if target.is_dir() and not target.is_symlink():
            os.chmod(target, stat.S_IMODE(path.stat().st_mode))


def command_line() -> str:
    """The command that runs this process, as a shell would take it: ``fmnist-cluster`` for the
    program however it was started (``python -m fmnist_cluster`` runs ``__main__.py``), another
    program by its name (a script that calls a stage), each argument quoted where needed."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    ours = path.name == "fmnist-cluster" or (path.name == "__main__.py" and path.parent.name == "fmnist_cluster")
    program = "fmnist-cluster" if ours else (path.parent.name if path.name == "__main__.py" else path.name)
    return shlex.join([program, *(hide_url_passwords(arg) for arg in sys.argv[1:])])


@dataclass
class StageRun:
    """Collects a stage's outputs in a staging folder and publishes them atomically.

    Use as a context manager; call :meth:`commit` at the end of a successful stage. Leaving
    the block without commit (an exception) deletes the staging folder and leaves the
    output folder as it was (a folder this run created, still empty, is removed).

    The staging folder is a sibling of the output folder. :meth:`commit` writes the manifest
    into it, links in the files of the old folder that are not outputs of the previous run
    (checkpoints, a study database, the user's own files), then swaps the two folders in one
    atomic rename: a reader sees the old artefact or the new one, never a mixture, and
    outputs the new run no longer writes disappear with the old folder.

    Parameters
    ----------
    stage : str
        Stage name, e.g. ``preprocess``.
    out_dir : path
        Output folder (created if needed).
    config : dict
        The resolved config, stored in the manifest.
    seed : int or None
        The run's seed.
    started : float or None
        ``time.perf_counter()`` when the stage's work began, for a stage that works before it
        opens its output (``tune`` runs its study first); default: when the run is created.
        The manifest's ``timings.wall_s`` runs from it to publishing.
    """

    stage: str
    out_dir: Path
    config: dict[str, Any]
    seed: int | None = None
    started: float | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    _staging: Path | None = None
    _names: list[str] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter)
    _created: bool = False

    def __enter__(self) -> StageRun:
        if self.started is not None:
            self._start = self.started
        self.out_dir = Path(self.out_dir)
        if self.out_dir.is_symlink():
            self.out_dir = self.out_dir.resolve()
        check_out_dir(self.out_dir, self.stage)
        self._created = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.out_dir, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
            parent = self.out_dir.absolute().parent
            for stale in [*parent.glob(f".{self.out_dir.name}.staging-*"), *self.out_dir.glob(".staging-*")]:
                pid = stale.name.rsplit(".staging-", 1)[1].split("-")[0]
                if not (pid.isdigit() and _pid_alive(int(pid))):
                    _remove_tree(stale)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.staging-{os.getpid()}-", dir=parent))
        except OSError as exc:
            self._remove_if_new()
            raise FmnistError(
                f"cannot write output folder {self.out_dir} ({exc.strerror or exc}); pass a writable --out"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._staging is not None:
            _remove_tree(self._staging)
            self._staging = None
            self._remove_if_new()

    def _remove_if_new(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only when still empty

    # -- inputs and timings -------------------------------------------------------------
    def add_input(self, path: Path | str, digest: str | None = None) -> None:
        """Record an input file's sha256 in the manifest.

        Raises
        ------
        FmnistError
            The input lies inside the output folder, which publishing would replace.
        """
        if Path(path).resolve().parent == self.out_dir.resolve():
            raise FmnistError(
                f"{path} is an input of {self.stage} but lies in its --out folder {self.out_dir}; pass another --out"
            )
        self.inputs[str(path)] = digest or sha256_file(path)

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Time a phase; the seconds land in the manifest's ``timings``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)

    def measured(self, **values: float | None) -> None:
        """Record durations and speeds of this run (``train_seconds``, ``images_per_s``, ...) in
        the manifest's ``timings``, the run's record. They differ from run to run, so they stay
        out of the outputs, which are the same bytes for the same config, seed and inputs.
        ``None`` values are left out."""
        self.timings.update({k: round(float(v), 4) for k, v in values.items() if v is not None})

    # -- outputs ------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """A path in the staging folder for a file that will be published as ``name``."""
        if self._staging is None:
            raise RuntimeError("StageRun used outside its with-block")
        if name not in self._names:
            self._names.append(name)
        target = self._staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def save_npz(self, name: str, **arrays: np.ndarray) -> Path:
        """Stage a deterministic ``.npz``."""
        target = self.path(name)
        with open(target, "wb") as fh:
            write_npz(fh, arrays)
        return target

    def save_json(self, name: str, obj: Any) -> Path:
        """Stage a JSON file."""
        target = self.path(name)
        target.write_text(dumps_json(obj), encoding="utf-8")
        return target

    def save_text(self, name: str, text: str) -> Path:
        """Stage a text file."""
        target = self.path(name)
        target.write_text(text, encoding="utf-8")
        return target

    def save_bytes(self, name: str, data: bytes) -> Path:
        """Stage a binary file (a figure, a checkpoint)."""
        target = self.path(name)
        target.write_bytes(data)
        return target

    def commit(self) -> dict[str, Any]:
        """Write ``manifest.json`` beside the staged files and swap them in as the output folder
        in one rename; returns the manifest."""
        if self._staging is None:
            raise RuntimeError("StageRun.commit called outside its with-block")
        outputs = {}
        for name in self._names:
            staged = self._staging / name
            if staged.is_file():
                outputs[name] = sha256_file(staged)
        manifest = {
            "stage": self.stage,
            "config": self.config,
            "seed": self.seed,
            "versions": package_versions(),
            "inputs": self.inputs,
            "outputs": outputs,
            "timings": {**self.timings, "wall_s": round(time.perf_counter() - self._start, 4)},
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": command_line(),
            **self.extra,
        }
        staging = self._staging
        (staging / MANIFEST).write_text(dumps_json(manifest), encoding="utf-8")
        try:
            self._publish(staging, outputs)
        except OSError as exc:
            raise FmnistError(
                f"cannot publish into {self.out_dir} ({exc.strerror or exc}); the previous artefact is kept, "
                "pass a writable --out"
            ) from None
        self._created = False
        return manifest

    def _publish(self, staging: Path, outputs: dict[str, str]) -> None:
        """Swap the finished staging folder in for the output folder (see the class notes)."""
        skip = {MANIFEST, *outputs}
        with contextlib.suppress(FmnistError, KeyError):
            skip.update(read_manifest(self.out_dir, "")["outputs"])
        _carry_over(self.out_dir, staging, skip)
        os.chmod(staging, stat.S_IMODE(self.out_dir.stat().st_mode))
        if _exchange(staging, self.out_dir):
            _remove_tree(staging)
        else:  # no atomic swap on this system: two renames, the window between them holds no folder at all
            old = staging.with_name(staging.name + "-old")
            os.rename(self.out_dir, old)
            os.rename(staging, self.out_dir)
            _remove_tree(old)
        self._staging = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
