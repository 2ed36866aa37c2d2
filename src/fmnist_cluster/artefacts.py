"""The artefact contract shared by every stage.

A stage writes into its output folder through a :class:`StageRun`:

* every file is first written into a hidden staging folder inside the output folder;
* :meth:`StageRun.commit` removes the old ``manifest.json``, moves each staged file into
  place with :func:`os.replace` (atomic per file) and writes the new ``manifest.json`` last;
* a folder without ``manifest.json`` is not an artefact, so an interrupted stage never leaves
  something a later stage would read as complete, and a stage that fails before commit
  leaves the previous artefact untouched.

``manifest.json`` holds the stage name, the config as resolved, the seed, package versions,
the sha256 of every input and output file, timings and the creation time. Readers check
an upstream file against its manifest hash, so a file swapped or damaged after the fact is
caught.

Arrays are stored as ``.npz`` written with fixed zip timestamps, so the same arrays give the
same bytes: same config and seed, byte-identical arrays.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from fmnist_cluster import __version__
from fmnist_cluster.errors import FmnistError

MANIFEST = "manifest.json"
_VERSIONED = (
    "numpy",
    "pandas",
    "torch",
    "torchvision",
    "scikit-learn",
    "minisom",
    "optuna",
    "matplotlib",
    "pydantic",
)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


# --------------------------------------------------------------------------------------
# progress reporting (library code never prints: the CLI passes a real reporter in)
# --------------------------------------------------------------------------------------


class Task(Protocol):
    """One bar of progress."""

    def advance(self, amount: float = 1, **fields: Any) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    """Something that can open progress bars; the CLI passes a rich one."""

    def task(self, description: str, total: float | None = None) -> Task: ...


class _NullTask:
    def advance(self, amount: float = 1, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None


class NullProgress:
    """A :class:`Progress` that shows nothing (the default in library calls and tests)."""

    def task(self, description: str, total: float | None = None) -> Task:
        return _NullTask()


NULL_PROGRESS = NullProgress()


# --------------------------------------------------------------------------------------
# hashing and atomic writes
# --------------------------------------------------------------------------------------


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """Hex sha256 of arrays' shapes, dtypes and bytes: a fingerprint of training data."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_json(obj: Any) -> str:
    """JSON text with sorted keys and numpy scalars converted."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True) + "\n"


def save_json(path: Path | str, obj: Any) -> None:
    """Atomically write ``obj`` as pretty JSON."""
    atomic_write_text(path, dumps_json(obj))


def write_npz(fileobj: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed ``.npz`` whose bytes depend on the arrays only
    (sorted names, fixed zip timestamps)."""
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if arr.dtype == object:
                raise TypeError(f"array '{name}' has dtype object; store strings as a str dtype")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.require(arr, requirements="C"), allow_pickle=False)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes :func:`write_npz` writes for ``arrays``."""
    buf = io.BytesIO()
    write_npz(buf, arrays)
    return buf.getvalue()


@contextlib.contextmanager
def atomic_open(path: Path | str) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for binary writing; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask, read when a file is written (not at import): from ``/proc`` where
    it can be read without changing it, else by setting it and putting it back."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """Atomically write a deterministic ``.npz``."""
    with atomic_open(path) as fh:
        write_npz(fh, arrays)


# --------------------------------------------------------------------------------------
# reading upstream artefacts
# --------------------------------------------------------------------------------------


def read_manifest(folder: Path | str, producer: str, option: str = "--input") -> dict[str, Any]:
    """Read and check ``manifest.json`` of an upstream artefact folder.

    Parameters
    ----------
    folder : path
        The upstream stage's output folder.
    producer : str
        The command that makes it, quoted in errors, e.g. ``fmnist-cluster preprocess``.
    option : str
        The command-line option that names the folder, quoted in errors (``--input``, ``--model``).
    """
    folder = Path(folder)
    if folder.is_file():
        raise FmnistError(
            f"{option} {folder} is a file, not an artefact folder; pass the output folder of `{producer}`"
        )
    if not folder.is_dir():
        raise FmnistError(f"input folder {folder} does not exist; run `{producer}` first (or pass {option})")
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise FmnistError(
            f"{mpath} is missing, so {folder} is not a finished artefact (an interrupted or foreign run); "
            f"run `{producer}` again"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FmnistError(f"{mpath} is not valid JSON; run `{producer}` again") from None
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("stage"), str)
        or not isinstance(manifest.get("outputs"), dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["outputs"].items())
    ):
        raise FmnistError(
            f"{mpath} is not an fmnist-cluster manifest (needs a 'stage' string and an 'outputs' mapping of "
            f"file names to sha256); run `{producer}` again"
        )
    return manifest


def require_file(
    folder: Path | str, name: str, producer: str, stage: str | tuple[str, ...] | None = None, option: str = "--input"
) -> tuple[Path, str]:
    """Locate one file of a finished upstream artefact and check it against its manifest.

    Parameters
    ----------
    folder : path
        Upstream output folder.
    name : str
        File inside it, e.g. ``data.npz``.
    producer : str
        The command that makes it (quoted in errors).
    stage : str, tuple of str or None
        If given, the stage name(s) the manifest may carry (e.g. ``preprocess``).
    option : str
        The command-line option that names the folder, quoted in errors.

    Returns
    -------
    (Path, str)
        The file's path and its sha256.

    Raises
    ------
    FmnistError
        Folder, manifest or file missing, wrong stage, a file the manifest does not list, or a
        file changed since it was written.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, producer, option)
    stages = (stage,) if isinstance(stage, str) else stage
    if stages is not None and manifest["stage"] not in stages:
        raise FmnistError(
            f"{option} {folder} was written by `{manifest['stage']}`, not `{' or '.join(stages)}`; "
            f"pass the output folder of `{producer}`"
        )
    path = folder / name
    if not path.is_file():
        raise FmnistError(f"{path} is missing; run `{producer}` to make it")
    expected = manifest["outputs"].get(name)
    if expected is None:
        raise FmnistError(
            f"{path} is not listed in {folder / MANIFEST}, so it was not written by that run; run `{producer}` again"
        )
    digest = sha256_file(path)
    if expected != digest:
        raise FmnistError(
            f"{path} does not match the sha256 in its manifest (changed or damaged since it was written); "
            f"run `{producer}` again"
        )
    return path, digest


def load_npz(
    path: Path | str, required: tuple[str, ...] = (), producer: str = "the stage that makes it"
) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` into memory, checking the required keys.

    Raises
    ------
    FmnistError
        The file is not a readable ``.npz`` or lacks a required array.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FmnistError(
            f"{path} is not a readable .npz file ({exc.__class__.__name__}); run `{producer}` again"
        ) from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise FmnistError(f"{path} lacks array(s) {', '.join(missing)}; run `{producer}` again")
    return arrays


# --------------------------------------------------------------------------------------
# writing a stage's artefact
# --------------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that shape results."""
    versions = {"python": platform.python_version(), "fmnist-cluster": __version__}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


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
        may be none of them.

    Raises
    ------
    FmnistError
        ``--out`` is a file, one of the inputs, or a finished artefact of another stage.
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
        if folder is not None and Path(folder).resolve() == here:
            raise FmnistError(
                f"--out {out} is also the {option} folder; writing there would replace what {stage} reads, "
                "pass another --out"
            )
    mpath = out / MANIFEST
    if mpath.is_file():
        try:
            other = json.loads(mpath.read_text(encoding="utf-8")).get("stage")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
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


def _carry_over(old: Path, new: Path, skip: set[str]) -> None:
    """Hard-link (or copy) every file of ``old`` not named in ``skip`` into ``new`` (same relative path):
    checkpoints, study databases and the user's own files survive a publication; the previous
    run's outputs do not."""
    for path in sorted(old.rglob("*")):
        rel = path.relative_to(old).as_posix()
        if rel in skip or rel.split("/")[0].startswith(".staging-"):
            continue
        target = new / rel
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):  # an empty folder of the user's; folders with files come with them
                target.mkdir(parents=True, exist_ok=True)
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
    """

    stage: str
    out_dir: Path
    config: dict[str, Any]
    seed: int | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    _staging: Path | None = None
    _names: list[str] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter)
    _created: bool = False

    def __enter__(self) -> StageRun:
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
                    shutil.rmtree(stale, ignore_errors=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.staging-{os.getpid()}-", dir=parent))
        except OSError as exc:
            self._remove_if_new()
            raise FmnistError(
                f"cannot write output folder {self.out_dir} ({exc.strerror or exc}); pass a writable --out"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
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
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
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
            shutil.rmtree(staging, ignore_errors=True)
        else:  # no atomic swap on this system: two renames, the window between them holds no folder at all
            old = staging.with_name(staging.name + "-old")
            os.rename(self.out_dir, old)
            os.rename(staging, self.out_dir)
            shutil.rmtree(old, ignore_errors=True)
        self._staging = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the system at every step.

    Training (CNN steps, SOM winner-search chunks) allocates and frees the same large buffers
    over and over; by default glibc unmaps large blocks on free, and the next use faults them
    back in page by page (millions of page faults per epoch, 5-10 % of the time on 2 cores).
    Blocks up to 32 MB stay in the heap after this call. A no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 512 * 1024 * 1024)
    except (OSError, AttributeError):
        pass
