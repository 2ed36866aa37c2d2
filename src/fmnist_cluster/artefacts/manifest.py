"""``manifest.json`` and reading upstream artefacts: every file is checked against the sha256
its manifest records, so a file swapped or damaged after the fact is caught."""

from __future__ import annotations

import contextlib
import errno
import io
import math
import platform
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster import __version__
from fmnist_cluster.artefacts.files import NPZ_ALIGN, loads_json, read_hashed, sha256_file
from fmnist_cluster.errors import FmnistError, why_not_a_file

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
        manifest = loads_json(mpath.read_text(encoding="utf-8"))
    except ValueError:  # bad JSON or encoding, too long a number, too deep
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
    folder: Path | str,
    name: str,
    producer: str,
    stage: str | tuple[str, ...] | None = None,
    option: str = "--input",
    *,
    manifest: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    """Locate one file of a finished upstream artefact and check it against its manifest
    (:func:`locate_file`, then :func:`check_digest` of the file's sha256).

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
    manifest : dict, optional
        The folder's manifest as :func:`read_manifest` returned it, for a caller that reads
        many files of one folder; read from the folder when not given.

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
    path, expected = locate_file(folder, name, producer, stage, option, manifest=manifest)
    with _reading(path, producer):
        digest = sha256_file(path)
    check_digest(path, expected, digest, producer)
    return path, digest


def read_checked(
    folder: Path | str,
    name: str,
    producer: str,
    stage: str | tuple[str, ...] | None = None,
    option: str = "--input",
    *,
    manifest: dict[str, Any] | None = None,
) -> tuple[Path, str, np.ndarray]:
    """Read one file of a finished upstream artefact once, checked against its manifest: the
    bytes returned are the bytes whose sha256 was checked (:func:`locate_file`, then
    :func:`~fmnist_cluster.artefacts.files.read_hashed` and :func:`check_digest`), so what a
    stage uses is what its manifest records, whatever happens to the file meanwhile.

    Parameters are those of :func:`require_file`.

    Returns
    -------
    (Path, str, ndarray of uint8)
        The file's path, its sha256 and its bytes.

    Raises
    ------
    FmnistError
        As :func:`require_file`, and a file that cannot be read.
    """
    path, expected = locate_file(folder, name, producer, stage, option, manifest=manifest)
    with _reading(path, producer):
        content, digest = read_hashed(path)
    check_digest(path, expected, digest, producer)
    return path, digest, content


def load_checked_npz(
    folder: Path | str,
    name: str,
    producer: str,
    required: tuple[str, ...] = (),
    stage: str | tuple[str, ...] | None = None,
    option: str = "--input",
) -> tuple[Path, str, dict[str, np.ndarray]]:
    """The arrays of one ``.npz`` of a finished upstream artefact, parsed from the very bytes
    checked against its manifest (:func:`read_checked`, then :func:`load_npz` of those bytes).

    Returns
    -------
    (Path, str, dict of str to ndarray)
        The file's path, its sha256 and its arrays.
    """
    path, digest, content = read_checked(folder, name, producer, stage, option)
    return path, digest, load_npz(path, required, producer, content=content)


@contextlib.contextmanager
def _reading(path: Path, producer: str) -> Iterator[None]:
    """One error line for a file that cannot be read, or not held in memory."""
    try:
        yield
    except OSError as exc:
        raise FmnistError(f"cannot read {path} ({exc.strerror or exc}); check the file and its permissions") from None
    except MemoryError:
        size = path.stat().st_size / 1e9
        raise FmnistError(
            f"{path} ({size:.1f} GB) does not fit in this machine's memory (damaged?); run `{producer}` again"
        ) from None


def locate_file(
    folder: Path | str,
    name: str,
    producer: str,
    stage: str | tuple[str, ...] | None = None,
    option: str = "--input",
    *,
    manifest: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    """The path of one file of a finished upstream artefact and the sha256 its manifest lists.

    Parameters are those of :func:`require_file`; the file itself is not read.

    Raises
    ------
    FmnistError
        Folder, manifest or file missing, wrong stage, or a file the manifest does not list.
    """
    folder = Path(folder)
    if manifest is None:
        manifest = read_manifest(folder, producer, option)
    stages = (stage,) if isinstance(stage, str) else stage
    if stages is not None and manifest["stage"] not in stages:
        raise FmnistError(
            f"{option} {folder} was written by `{manifest['stage']}`, not `{' or '.join(stages)}`; "
            f"pass the output folder of `{producer}`"
        )
    path = folder / name
    if not path.is_file():
        raise FmnistError(f"{path} {why_not_a_file(path)}; run `{producer}` to make it")
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise FmnistError(
            f"{path} is a link (an artefact holds plain files in its folder); replace it with the file itself "
            f"(cp -L) or run `{producer}` again"
        )
    expected = manifest["outputs"].get(name)
    if expected is None:
        raise FmnistError(
            f"{path} is not listed in {folder / MANIFEST}, so it was not written by that run; run `{producer}` again"
        )
    return path, expected


def check_digest(path: Path, expected: str, digest: str, producer: str) -> None:
    """Raise FmnistError unless ``digest`` (the file's sha256) is the ``expected`` one of its manifest."""
    if expected != digest:
        raise FmnistError(
            f"{path} does not match the sha256 in its manifest (changed or damaged since it was written); "
            f"run `{producer}` again"
        )


def load_npz(
    path: Path | str,
    required: tuple[str, ...] = (),
    producer: str = "the stage that makes it",
    *,
    content: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz``, checking the required keys.

    Parameters
    ----------
    path : path
    required : tuple of str
        Arrays the file must hold.
    producer : str
        The command quoted in errors.
    content : ndarray of uint8, optional
        The file's bytes, already read (:func:`~fmnist_cluster.artefacts.files.read_hashed`,
        whose digest the caller checks against the manifest with :func:`check_digest`). The
        arrays are then parsed from these bytes, never from the file again: numeric arrays
        stored uncompressed with their data 64-byte aligned (as
        :func:`~fmnist_cluster.artefacts.files.write_npz` writes them) are writable views of
        ``content``, at no cost; the others (other writers, compressed) are decoded from it. The
        zip CRC of the views is not checked: the sha256 covers them.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    FmnistError
        The file is not a readable ``.npz`` or lacks a required array.
    """
    path = Path(path)
    try:
        if content is not None:
            arrays = _npz_from_bytes(content)
        else:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise FmnistError(f"{path} is not a readable .npz file ({_reason(exc)}); run `{producer}` again") from None
    except MemoryError:
        raise FmnistError(
            f"{path} declares arrays too large for this machine's memory (damaged?); run `{producer}` again"
        ) from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise FmnistError(f"{path} lacks array(s) {', '.join(missing)}; run `{producer}` again")
    return arrays


def _reason(exc: BaseException) -> str:
    """The class of an exception, with its message when that is short and printable."""
    text = str(exc).strip()
    if text and len(text) <= 120 and text.isprintable():
        return f"{exc.__class__.__name__}: {text}"
    return exc.__class__.__name__


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _BytesReader(io.RawIOBase):
    """A read-only, seekable file over bytes in memory, without copying them."""

    def __init__(self, data: np.ndarray) -> None:
        super().__init__()
        self._data = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "Invalid argument")  # as a real file, which zipfile expects
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        n = max(0, min(len(target), len(self._data) - self._pos))
        target[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _npz_from_bytes(content: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in ``content``: stored, aligned numeric ones as views of
    it, the others decoded."""
    arrays: dict[str, np.ndarray] = {}
    raw = _BytesReader(content)
    with zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name in arrays:
                raise ValueError(f"two arrays are named {name!r}")
            array = _member_view(content, raw, info)
            if array is None:
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            arrays[name] = array
    return arrays


def _member_view(content: np.ndarray, raw: _BytesReader, info: zipfile.ZipInfo) -> np.ndarray | None:
    """One member as a view of ``content``, or None where it is to be decoded instead
    (compressed, unaligned, or a header version not parsed here)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    raw.seek(info.header_offset)
    local = raw.read(30)  # the local file header: its name and extra field lengths end it
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {info.filename}")
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    raw.seek(start)
    version = np.lib.format.read_magic(raw)
    if version not in _HEADER_READERS:
        return None
    shape, fortran, dtype = _HEADER_READERS[version](raw)
    offset = raw.tell()
    if dtype.hasobject or offset % NPZ_ALIGN:
        return None  # objects are refused by the reader; unaligned data would slow every product on it
    if offset - start + dtype.itemsize * math.prod(shape) != info.file_size or start + info.file_size > len(content):
        raise ValueError(f"{info.filename}: its header does not match its size")
    return np.ndarray(shape, dtype=dtype, buffer=content, offset=offset, order="F" if fortran else "C")


def package_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that shape results."""
    versions = {"python": platform.python_version(), "fmnist-cluster": __version__}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
