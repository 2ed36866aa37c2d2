"""``manifest.json`` and reading upstream artefacts: every file is checked against the sha256
its manifest records, so a file swapped or damaged after the fact is caught."""

from __future__ import annotations

import contextlib
import json
import math
import platform
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fmnist_cluster import __version__
from fmnist_cluster.artefacts.files import NPZ_ALIGN, sha256_file
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
    path, expected = locate_file(folder, name, producer, stage, option)
    digest = sha256_file(path)
    check_digest(path, expected, digest, producer)
    return path, digest


def locate_file(
    folder: Path | str, name: str, producer: str, stage: str | tuple[str, ...] | None = None, option: str = "--input"
) -> tuple[Path, str]:
    """The path of one file of a finished upstream artefact and the sha256 its manifest lists.

    Parameters are those of :func:`require_file`; the file itself is not read.

    Raises
    ------
    FmnistError
        Folder, manifest or file missing, wrong stage, or a file the manifest does not list.
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
    return path, expected


def check_digest(path: Path, expected: str, digest: str, producer: str) -> None:
    """Raise FmnistError unless ``digest`` (the file's sha256) is the ``expected`` one of its manifest."""
    if expected != digest:
        raise FmnistError(
            f"{path} does not match the sha256 in its manifest (changed or damaged since it was written); "
            f"run `{producer}` again"
        )


def load_npz(
    path: Path | str, required: tuple[str, ...] = (), producer: str = "the stage that makes it", *, mapped: bool = False
) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz``, checking the required keys.

    Parameters
    ----------
    path : path
    required : tuple of str
        Arrays the file must hold.
    producer : str
        The command quoted in errors.
    mapped : bool
        Memory-map the large arrays (numeric, stored uncompressed, at least 1 MiB, their data
        aligned as :func:`~fmnist_cluster.artefacts.files.write_npz` writes them) copy-on-write
        instead of reading them: they stay in the page cache the file is already in, and
        writing to them never touches the file. Their zip CRC is not checked, so only for files
        whose sha256 the caller checks against their manifest (:func:`check_digest`). The other
        arrays (and those of ``.npz`` files of other writers, whose data is not aligned) are
        read. In a fresh process, reading the 220 MB of the real ``data.npz`` faults in as many
        bytes of new memory, 0.16-0.6 s on a 2-core virtual machine; mapping it took 0.05 s
        (docs/benchmarks.md).

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
        if mapped:
            arrays = _mapped_npz(path)
        else:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise FmnistError(
            f"{path} is not a readable .npz file ({exc.__class__.__name__}); run `{producer}` again"
        ) from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise FmnistError(f"{path} lacks array(s) {', '.join(missing)}; run `{producer}` again")
    return arrays


_MAP_FROM_BYTES = 1 << 20
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _mapped_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``: large stored numeric ones whose data is 64-byte aligned in
    the file (as :func:`~fmnist_cluster.artefacts.files.write_npz` writes them) memory-mapped
    copy-on-write, the others read."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name in arrays:
                raise ValueError(f"two arrays are named {name!r}")
            mapped = _mapped_member(path, raw, info)
            if mapped is None:
                with archive.open(info) as member:
                    mapped = np.lib.format.read_array(member, allow_pickle=False)
            arrays[name] = mapped
    return arrays


def _mapped_member(path: Path, raw: BinaryIO, info: zipfile.ZipInfo) -> np.ndarray | None:
    """One member memory-mapped, or None where it is to be read instead (small, compressed,
    unaligned, a header version not parsed here, or a file system that cannot map)."""
    if info.compress_type != zipfile.ZIP_STORED or info.file_size < _MAP_FROM_BYTES:
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
    if offset - start + dtype.itemsize * math.prod(shape) != info.file_size:
        raise ValueError(f"{info.filename}: its header does not match its size")
    try:
        mapped = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C")
    except OSError:
        return None
    return mapped.view(np.ndarray)  # a plain array; the mapping lives as long as it does


def package_versions() -> dict[str, str]:
    """Versions of Python, this package and the libraries that shape results."""
    versions = {"python": platform.python_version(), "fmnist-cluster": __version__}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
