"""Hashing and atomic writes of single files; ``.npz`` files whose bytes depend on the arrays only."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def figure_name(name: str) -> str:
    """Where a stage stores figure ``name`` inside its artefact folder (``figures/NAME.png``)."""
    return f"figures/{name}.png"


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_hashed(path: Path | str, block: int = 8 << 20) -> tuple[np.ndarray, str]:
    """The bytes of a file, read once into private memory, and the sha256 of those very bytes.

    Each block is hashed in a thread while the next one is read (both release the GIL), so the
    check costs little more than the read. Whatever happens to the file afterwards (written in
    place, truncated, replaced), the bytes returned stay the ones the digest describes.

    Returns
    -------
    (ndarray of uint8, str)
        The bytes (as many as could be read) and their hex sha256.

    Raises
    ------
    OSError
        The file cannot be opened or read.
    """
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        spare = np.empty(size + NPZ_ALIGN, dtype=np.uint8)
        start = -spare.ctypes.data % NPZ_ALIGN
        data = spare[start : start + size]  # starts on a NPZ_ALIGN boundary, as write_npz's arrays do in the file
        view = memoryview(data)
        done = 0
        with ThreadPoolExecutor(1) as pool:
            hashing: Future[None] | None = None
            while done < len(data):
                n = fh.readinto(view[done : done + block])
                if not n:
                    break  # the file shrank since it was opened: its digest will tell
                if hashing is not None:
                    hashing.result()
                hashing = pool.submit(digest.update, view[done : done + n])
                done += n
            if hashing is not None:
                hashing.result()
    return data[:done], digest.hexdigest()


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


def loads_json(data: str | bytes) -> Any:
    """Parse JSON read from a file; ``ValueError`` for anything that is not readable JSON:
    bad syntax or encoding, a number too long to read, nesting too deep."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def save_json(path: Path | str, obj: Any) -> None:
    """Atomically write ``obj`` as pretty JSON."""
    atomic_write_text(path, dumps_json(obj))


#: zip extra-field ID of the alignment padding (an ID used for padding, by Android's zipalign
#: among others; readers skip extra fields they do not know)
_PADDING_ID = 0xD935
NPZ_ALIGN = 64
"""Bytes :func:`write_npz` aligns each array's data to (numpy pads ``.npy`` headers to it too)."""


def write_npz(fileobj: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed ``.npz`` whose bytes depend on the arrays only
    (sorted names, fixed zip timestamps).

    Each array's data starts on a 64-byte boundary of the file (the local header's extra field
    is padded; numpy pads the ``.npy`` header to 64 bytes), so that the file's bytes read into
    memory (``load_npz(..., content=...)``) hold arrays as aligned as numpy's own, used in place.
    ``fileobj`` must be seekable."""
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if arr.dtype == object:
                raise TypeError(f"array '{name}' has dtype object; store strings as a str dtype")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            # local header: 30 bytes, the name, the padding block (4 + n), the zip64 block (20)
            end = fileobj.tell() + 30 + len(info.filename.encode()) + 4 + 20
            padding = -end % NPZ_ALIGN
            info.extra = struct.pack("<HH", _PADDING_ID, padding) + bytes(padding)
            with zf.open(info, "w", force_zip64=True) as fh:
                assert fileobj.tell() % NPZ_ALIGN == 0, "zip local header layout changed"
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
