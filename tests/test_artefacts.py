"""The artefact contract: atomic publication, manifests, hashes, determinism."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fmnist_cluster.artefacts import (
    StageRun,
    atomic_write_text,
    load_npz,
    npz_bytes,
    read_hashed,
    read_manifest,
    require_file,
    sha256_file,
)
from fmnist_cluster.cli import app
from fmnist_cluster.data import load_dataset
from fmnist_cluster.errors import FmnistError

runner = CliRunner()


def test_npz_bytes_depend_only_on_arrays() -> None:
    a = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "names": np.array(["a", "bb"])}
    assert npz_bytes(a) == npz_bytes(dict(reversed(list(a.items()))))
    assert npz_bytes(a) != npz_bytes({**a, "x": a["x"] + 1})


def test_npz_keeps_shapes_of_scalars_and_strings(tmp_path: Path) -> None:
    arrays = {"layer": np.array("dense64"), "names": np.array(["a", "bb"]), "x": np.zeros((2, 0, 3))}
    (tmp_path / "a.npz").write_bytes(npz_bytes(arrays))
    with np.load(tmp_path / "a.npz") as loaded:
        for key, value in arrays.items():
            assert loaded[key].shape == value.shape
            np.testing.assert_array_equal(loaded[key], value)


def test_npz_from_read_bytes_gives_the_arrays_numpy_reads_as_views_of_those_bytes(tmp_path: Path) -> None:
    big = np.arange(2 * 300_000, dtype=np.float32).reshape(2, 300_000)
    arrays = {"big": big, "wide": big.reshape(600, 1000).T.copy(), "small": np.arange(5), "s": np.array("a")}
    path = tmp_path / "a.npz"
    path.write_bytes(npz_bytes(arrays))
    before = sha256_file(path)
    content, digest = read_hashed(path, block=1 << 16)  # many blocks, hashed as they are read
    assert digest == before and content.tobytes() == path.read_bytes()
    loaded = load_npz(path, ("big",), content=content)
    for key, value in arrays.items():
        assert type(loaded[key]) is np.ndarray and loaded[key].dtype == value.dtype
        assert np.array_equal(loaded[key], value), key
        assert np.shares_memory(loaded[key], content), key  # used in place: no second copy
    assert loaded["big"].ctypes.data % 64 == 0 and loaded["wide"].ctypes.data % 64 == 0  # write_npz aligns them
    loaded["big"][0, 0] = -1.0  # private bytes: the array changes, the file does not
    assert sha256_file(path) == before
    # the file written in place, then cut short, after the read: the arrays keep the bytes hashed
    with open(path, "r+b") as fh:
        fh.seek(len(content) // 2)
        fh.write(b"\xff" * 4096)
        fh.truncate(100)
    assert np.array_equal(loaded["wide"], arrays["wide"]) and loaded["big"][1, -1] == big[1, -1]
    other = tmp_path / "numpy.npz"  # numpy's own writers do not align: decoded, not viewed
    np.savez(other, big=big, fortran=np.asfortranarray(big.reshape(600, 1000)))
    np.savez_compressed(tmp_path / "z.npz", big=big)
    for name in ("numpy.npz", "z.npz"):
        content, _ = read_hashed(tmp_path / name)
        decoded = load_npz(tmp_path / name, content=content)
        assert np.array_equal(decoded["big"], big) and not np.shares_memory(decoded["big"], content)
    assert np.array_equal(decoded["big"], big)
    assert np.array_equal(load_npz(other, content=read_hashed(other)[0])["fortran"], big.reshape(600, 1000))


def test_npz_from_read_bytes_refuses_a_damaged_file_in_one_error(tmp_path: Path) -> None:
    def load(data: bytes, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        path.write_bytes(data)
        return load_npz(path, required, content=read_hashed(path)[0])

    good = npz_bytes({"big": np.ones(400_000, np.float32)})
    path = tmp_path / "a.npz"
    with pytest.raises(FmnistError, match=r"is not a readable \.npz file \(BadZipFile"):
        load(good[: len(good) // 2])  # truncated: no zip directory
    header_end = good.index(b"\n", good.index(b"\x93NUMPY")) + 1
    with pytest.raises(FmnistError, match=r"is not a readable \.npz file \(ValueError: big.npy: its header"):
        load(good[:header_end].replace(b"400000", b"400001") + good[header_end:])  # claims one more
    with pytest.raises(FmnistError, match="lacks array"):
        load(good, ("x",))
    import zipfile

    buffer = io.BytesIO(good)
    with zipfile.ZipFile(buffer, "a") as archive:  # a second member that is also called "big"
        archive.writestr("big", good[:0])
    with pytest.raises(FmnistError, match=r"is not a readable \.npz file \(ValueError: two arrays are named 'big'"):
        load(buffer.getvalue())


def test_an_array_too_large_for_memory_is_one_error(tmp_path: Path) -> None:
    """A compressed member (decoded, not viewed) that declares 4 TB: numpy cannot allocate it."""
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
    for content in (None, read_hashed(path)[0]):
        with pytest.raises(FmnistError, match="declares arrays too large for this machine's memory"):
            load_npz(path, content=content)


def test_atomic_writes_follow_the_umask_of_the_moment(tmp_path: Path) -> None:
    before = os.umask(0o027)  # set after the package was imported: read when writing, not at import
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o002)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664


def test_stage_run_publishes_everything_with_manifest_last(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with StageRun("demo", out, {"k": 1}, seed=3) as run:
        run.add_input(__file__)
        with run.timer("work"):
            run.save_npz("a.npz", x=np.ones(3))
            run.save_json("metrics.json", {"m": np.float32(0.5)})
        assert not (out / "a.npz").exists(), "nothing is published before commit"
        manifest = run.commit()
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "manifest.json", "metrics.json"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["outputs"]["a.npz"] == sha256_file(out / "a.npz")
    assert on_disk["inputs"][__file__] == sha256_file(__file__)
    assert on_disk["seed"] == 3 and on_disk["config"] == {"k": 1}
    assert "work" in on_disk["timings"] and "wall_s" in on_disk["timings"]
    assert "numpy" in on_disk["versions"] and "python" in on_disk["versions"]


def test_failure_before_commit_leaves_old_artefact(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with StageRun("demo", out, {}) as run:
        run.save_json("metrics.json", {"v": 1})
        run.commit()
    with pytest.raises(RuntimeError), StageRun("demo", out, {}) as run:
        run.save_json("metrics.json", {"v": 2})
        raise RuntimeError("boom")
    assert json.loads((out / "metrics.json").read_text()) == {"v": 1}
    assert not list(out.glob(".staging-*"))


def test_require_file_catches_missing_and_changed(tmp_path: Path) -> None:
    with pytest.raises(FmnistError, match="run `fmnist-cluster preprocess` first"):
        require_file(tmp_path / "nothing", "data.npz", "fmnist-cluster preprocess")
    out = tmp_path / "o"
    out.mkdir()
    (out / "data.npz").write_bytes(b"x")
    with pytest.raises(FmnistError, match=r"manifest\.json is missing"):
        require_file(out, "data.npz", "fmnist-cluster preprocess")
    with StageRun("preprocess", out, {}) as run:
        run.save_bytes("data.npz", b"real")
        run.commit()
    assert require_file(out, "data.npz", "p")[1] == sha256_file(out / "data.npz")
    (out / "data.npz").write_bytes(b"changed")
    with pytest.raises(FmnistError, match="does not match the sha256"):
        require_file(out, "data.npz", "p")
    (out / "data.npz").unlink()
    with pytest.raises(FmnistError, match=r"data\.npz is missing; run `p`"):
        require_file(out, "data.npz", "p")
    (out / "data.npz").mkdir()
    with pytest.raises(FmnistError, match=r"data\.npz is not a regular file; run `p`"):
        require_file(out, "data.npz", "p")
    (out / "data.npz").rmdir()
    (out / "data.npz").symlink_to(out / "loop")
    (out / "loop").symlink_to(out / "data.npz")
    with pytest.raises(FmnistError, match=r"data\.npz is not a regular file"):
        require_file(out, "data.npz", "p")
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(FmnistError, match="not valid JSON"):
        read_manifest(out, "p")


def _preprocess_idx(idx_dir: Path, out: Path, seed: int) -> None:
    args = ["preprocess", "--source", "idx", "--path", str(idx_dir), "--limit", "30", "--set", f"seed={seed}"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output


def test_same_config_same_seed_same_bytes(idx_dir: Path, tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        _preprocess_idx(idx_dir, tmp_path / name, seed=4)
        digests.append(sha256_file(tmp_path / name / "data.npz"))
    assert digests[0] == digests[1]
    _preprocess_idx(idx_dir, tmp_path / "c", seed=5)
    assert sha256_file(tmp_path / "c" / "data.npz") != digests[0]


def test_sample_source_runs_offline(tmp_path: Path) -> None:
    result = runner.invoke(app, ["preprocess", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    ds, _ = load_dataset(tmp_path / "o")
    assert ds.x_train.shape == (6000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [600] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_load_dataset_rejects_bad_arrays(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with StageRun("preprocess", out, {}) as run:
        run.save_npz("data.npz", x_train=np.ones((3, 5), np.float32), x_test=np.ones((2, 4), np.float32))
        run.commit()
    with pytest.raises(FmnistError, match="x_train rows are"):
        load_dataset(out)
    with StageRun("preprocess", out, {}) as run:
        run.save_npz(
            "data.npz",
            x_train=np.ones((3, 5), np.float32),
            x_test=np.ones((2, 5), np.float32),
            y_train=np.ones(2, np.int64),
        )
        run.commit()
    with pytest.raises(FmnistError, match="expected 3 integer labels"):
        load_dataset(out)


def test_checked_reads_of_empty_huge_or_odd_files_end_in_one_error(tmp_path: Path) -> None:
    from fmnist_cluster.artefacts import read_checked, read_hashed

    out = tmp_path / "o"
    with StageRun("preprocess", out, {}) as run:
        run.save_bytes("data.npz", npz_bytes({"x": np.arange(3)}))
        run.commit()
    path = out / "data.npz"
    empty = tmp_path / "empty.npz"
    np.savez(empty)  # a valid archive of no arrays (22 bytes): numpy reads it, so do we
    assert load_npz(empty, content=read_hashed(empty)[0]) == {}
    empty.write_bytes(b"")
    with pytest.raises(FmnistError, match=r"is not a readable \.npz file \(BadZipFile: File is not a zip file\)"):
        load_npz(empty, content=read_hashed(empty)[0])
    os.truncate(path, 1 << 40)  # a sparse terabyte: it cannot be read into memory
    with pytest.raises(FmnistError, match=r"data\.npz \(1099\.5 GB\) does not fit in this machine's memory"):
        read_checked(out, "data.npz", "fmnist-cluster preprocess")


@pytest.mark.parametrize(
    ("argv", "recorded"),
    [
        (["/x/fmnist_cluster/__main__.py", "train-som", "-o", "my maps"], "fmnist-cluster train-som -o 'my maps'"),
        (["/venv/bin/fmnist-cluster", "report", "--input", "a;b"], "fmnist-cluster report --input 'a;b'"),
        (["benchmarks/som_command.py", "--input", "d"], "som_command.py --input d"),
        (["/venv/lib/pytest/__main__.py", "-q"], "pytest -q"),
        (  # a database password is never recorded
            ["/venv/bin/fmnist-cluster", "tune", "--storage", "postgresql+psycopg://tuner:s3cret@db:5432/s"],
            "fmnist-cluster tune --storage 'postgresql+psycopg://tuner:***@db:5432/s'",
        ),
        (["/venv/bin/fmnist-cluster", "report", "--set", "title=a:b@c"], "fmnist-cluster report --set title=a:b@c"),
    ],
)
def test_the_recorded_command_runs_in_a_shell(monkeypatch: pytest.MonkeyPatch, argv: list[str], recorded: str) -> None:
    from fmnist_cluster.artefacts.stage_run import command_line

    monkeypatch.setattr(sys, "argv", argv)
    assert command_line() == recorded
