"""Robustness harness: hundreds of bad inputs and faults across the eight commands.

Every case runs one command in-process (``typer.testing.CliRunner``) on tiny data and is held
to the promise of the toolkit: exit code 2, exactly one ``error:`` line, no traceback, every
upstream artefact byte-identical afterwards and no new or half-written ``--out``. A few cases
are valid edge inputs that must succeed (exit 0) without touching their inputs.

The cases are generated, not listed by hand:

- config cases from the pydantic models: for every field of every stage's config (nested
  sections, the tune ``base`` map, the layers of ``train-cnn``): a typo of its name, a value
  of the wrong type and, where the model bounds it, a value just out of range; an unknown key
  per section; YAML files that are folders, missing, invalid, not a mapping, binary, or hold a
  key twice; malformed ``--set`` items;
- source files per input kind (IDX, Twisted CSV, Kaggle CSV): missing, empty, garbage,
  truncated, gzipped under a ``.csv`` name, wrong shapes, text / NaN / huge / negative /
  fractional cells, out-of-range labels, zero images;
- upstream folders per reading option of every command: missing, a file, unfinished (no
  manifest), manifests that are invalid, of the wrong shape or of another stage, files
  missing, swapped, swapped and dropped from the manifest, and crafted ``.npz`` / ``.pt``
  files whose hash was updated (NaN cells, wrong dtype or shape, huge or negative labels,
  pickled objects, NaN weights);
- ``--out`` that is one of the inputs, another stage's artefact, a file or unwritable;
- faults: ``--resume`` from a run on other data, a diverging learning rate, one-row inputs,
  impossible layers, huge maps and epoch counts.

Usage::

    python benchmarks/robustness.py --doc docs/robustness.md      # every case, writes the table
    python benchmarks/robustness.py --every 10                    # a tenth of them, prints a summary

``tests/test_robustness.py`` runs the cases that reproduce the reported faults plus a sample of
the others in ``make test``; ``make robustness`` runs them all.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from typer.testing import CliRunner

from fmnist_cluster.artefacts import MANIFEST, npz_bytes, sha256_file
from fmnist_cluster.cli import app
from fmnist_cluster.config import (
    COMMAND_CONFIGS,
    CnnConfig,
    LayerSpec,
    SomConfig,
)
from fmnist_cluster.data import write_idx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import make_images, write_idx_folder

COMMANDS = tuple(COMMAND_CONFIGS)
MODELS: dict[str, type[BaseModel]] = {command: model for command, (model, _) in COMMAND_CONFIGS.items()}
TIMEOUT_S = 120
TINY_ARCH = (
    "[{name: conv1, type: conv, filters: 4, activation: relu}, {name: pool1, type: pool, size: 4},"
    " {name: flatten, type: flatten}, {name: dense8, type: dense, units: 8, activation: relu},"
    " {name: output, type: dense, units: classes}]"
)
# Settings that keep each stage tiny when it runs for real in a case.
TINY: dict[str, list[str]] = {
    "preprocess": [],
    "train-som": ["som.rows=3", "som.cols=3", "som.epochs=2", "train.search_dims=0"],
    "tune": [
        "n_trials=2",
        "limit=40",
        "base.som.rows=3",
        "base.som.cols=3",
        "base.train.search_dims=0",
        "space={som.epochs: {low: 1, high: 2, integer: true}}",
    ],
    "train-cnn": [f"architecture={TINY_ARCH}", "train.epochs=1", "train.batch_size=16", "threads=1"],
    "encode": ["threads=1"],
    "cluster": ["hdbscan.enabled=false", "agglomerative.enabled=false", "kmeans.k_range=[2,3]", "kmeans.n_init=1"],
    "embed": ["tsne.enabled=false", "umap.enabled=false", "pca_components=5"],
    "report": [],
}
# The upstream folders each command reads, by option (names of fixture folders).
READS: dict[str, dict[str, str]] = {
    "preprocess": {"--path": "raw/idx"},
    "train-som": {"--input": "data"},
    "tune": {"--input": "data"},
    "train-cnn": {"--input": "mystery"},
    "encode": {"--input": "mystery", "--model": "cnn"},
    "cluster": {"--input": "encoding"},
    "embed": {"--input": "encoding"},
    "report": {"--input": "som"},
}
ARTEFACTS = ("data", "mystery", "som", "tune", "cnn", "encoding", "cluster", "embed", "report")


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One hostile input: a command line, an optional change to a fresh copy of the fixtures,
    and the outcome promised (``error``: exit 2 with one error line; ``ok``: exit 0)."""

    id: str
    command: str
    kind: str
    what: str
    args: list[str]
    setup: Callable[[Path], None] | None = None
    expect: str = "error"
    issue: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    says: str = ""
    """Text the error line must contain, where the right reason matters (not just any refusal)."""


@dataclass
class Outcome:
    case: Case
    ok: bool
    result: str
    exit_code: int | None
    message: str
    seconds: float


def _argv(command: str, ws: Path, out: str | None = None, reads: dict[str, str] | None = None) -> list[str]:
    """A full command line on the fixtures: the command's inputs, a fresh ``--out`` and the tiny settings."""
    argv = [command]
    for option, folder in (READS[command] if reads is None else reads).items():
        if command == "preprocess" and option == "--path":
            argv += ["--source", "idx"]
        argv += [option, str(ws / folder)]
    argv += ["--out", str(ws / (out or "new-out"))]
    for item in TINY[command]:
        argv += ["--set", item]
    return argv


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, annotation, FieldInfo) of every field, descending into nested sections."""
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = info.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if nested is not None:
            yield from _leaves(nested, dotted + ".")
        else:
            yield dotted, annotation, info


def _sections(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    yield prefix
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _sections(annotation, f"{prefix}{name}.")


def _typo(name: str, taken: set[str]) -> str:
    """A plausible misspelling of ``name`` that is not a valid key."""
    for candidate in (name[:-1] + name[-1] * 2, name[1:] + name[0], name + "s", name.upper(), name + "_x"):
        if candidate not in taken:
            return candidate
    return name + "_typo"


def _kinds(annotation: Any) -> set[str]:
    """The plain kinds an annotation accepts: int, float, bool, str, list, dict, literal, none."""
    kinds: set[str] = set()
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return {"literal"}
    if origin in (list, tuple):
        return {"list"}
    if origin is dict:
        return {"dict"}
    args = typing.get_args(annotation)
    if args and origin is not None:
        for arg in args:
            kinds |= _kinds(arg)
        return kinds
    return {{int: "int", float: "float", bool: "bool", str: "str", type(None): "none"}.get(annotation, "other")}


def _wrong_type(annotation: Any) -> str | None:
    """A YAML value of a type the annotation does not accept."""
    kinds = _kinds(annotation)
    if kinds & {"str"}:
        return "{a: 1}"
    if kinds & {"dict"}:
        return "7"
    if kinds & {"int", "float", "list", "literal", "bool"}:
        return "not-a-value"
    return None


def _out_of_range(info: Any) -> list[str]:
    """YAML values just outside the bounds declared on a field."""
    values = []
    bounds = list(info.metadata)
    for arg in typing.get_args(info.annotation):  # ``Threads | None``: the bounds of the annotated member
        if typing.get_origin(arg) is typing.Annotated:
            for extra in typing.get_args(arg)[1:]:
                bounds += getattr(extra, "metadata", [extra])
    for bound in bounds:
        for attr, step in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            limit = getattr(bound, attr, None)
            if limit is not None:
                bad = limit + step if attr in ("le", "ge") else limit
                if attr == "ge" and isinstance(limit, float):
                    bad = limit - 0.5
                if attr == "le" and isinstance(limit, float):
                    bad = limit + 0.5
                values.append(f"{attr}:{bad}")
    return values


_VALIDATED = {  # values refused by field or model validators rather than by declared bounds
    "preprocess": ["relabel=[0,1,2]", "relabel=[0,0,0,0,0,0,0,0,0,5]", "relabel=[-1,0,1,2,3,4,5,6,7,8]"],
    "cluster": [
        "kmeans.k=1",
        "kmeans.k_range=[5,2]",
        "kmeans.k_range=[1,4]",
        "kmeans.k_range=[2,5000]",
        "kmeans.k_range=[3]",
        "dbscan.eps=-1",
        "dbscan.eps=0",
        "dbscan.min_samples=0",
        "hdbscan.min_cluster_size=1",
    ],
    "train-som": [
        "som.engine=batch",
        "som.neighbourhood=mexican_hat",
        "som.epochs=2.5",
        "som.sigma=0.1",
        "som={rows: 200, cols: 200}",
        "analysis.winner_neurons=[99999]",
        "analysis.winner_neurons=[-1]",
    ],
    "tune": [
        "space={som.sigma: {low: 5, high: 1}}",
        "space={som.sigma: {low: 0, high: 1, log: true}}",
        "space={som.sigma: {low: 1}}",
        "space={som.neighbourhood: {choices: []}}",
        "space={som.sigma: {low: 1, high: 2, choices: [1]}}",
        "space=[1, 2]",
        "base.som.rows=100000",
        "base.som.epochs=1000000000000",
    ],
    "train-cnn": [
        "architecture=[]",
        "train.epochs=1000000000000",
        "architecture=[{name: out, type: dense}]",
        "architecture=[{name: a, type: conv}]",
        "architecture=[{name: 'bad name', type: flatten}]",
        "architecture=[{name: a, type: flatten}, {name: a, type: flatten}]",
        "architecture=[{name: a, type: activation}]",
        "architecture=[{name: a, type: pool, units: 3}]",
        "architecture=[{name: a, type: dense, units: -3}]",
    ],
}


def config_cases() -> list[Case]:
    """Cases derived from the config models: typo, wrong type, out of range, unknown key."""
    cases: list[Case] = []

    def add(command: str, what: str, item: str, kind: str = "config") -> None:
        # preprocess's --source/--path options would override a --set of those keys
        extra = {"reads": {}} if command == "preprocess" else {}
        cases.append(Case(f"{command}:{kind}:{len(cases)}", command, kind, what, ["--set", item], extra=extra))

    for command, model in MODELS.items():
        for section in _sections(model):
            add(command, f"unknown key in section '{section or '(top)'}'", f"{section}no_such_key=1")
        for dotted, annotation, info in _leaves(model):
            parent, _, name = dotted.rpartition(".")
            siblings = set(info_name for info_name in _section_fields(model, parent))
            typo = _typo(name, siblings)
            add(command, f"'{dotted}' misspelt '{typo}'", f"{parent + '.' if parent else ''}{typo}=1", "config-typo")
            wrong = _wrong_type(annotation)
            if wrong is not None:
                add(command, f"'{dotted}' of the wrong type", f"{dotted}={wrong}", "config-type")
            for bound in _out_of_range(info):
                rule, _, value = bound.partition(":")
                add(command, f"'{dotted}' out of range ({rule} bound)", f"{dotted}={value}", "config-range")
        if command == "train-cnn":
            for name, info in LayerSpec.model_fields.items():
                if name in ("name", "type"):
                    continue
                base = "{name: layer1, type: conv, filters: 4"
                wrong = _wrong_type(info.annotation)
                if wrong is not None:
                    add(command, f"layer key '{name}' of the wrong type", f"architecture=[{base}, {name}: {wrong}}}]")
                for bound in _out_of_range(info):
                    rule, _, value = bound.partition(":")
                    add(
                        command,
                        f"layer key '{name}' out of range ({rule})",
                        f"architecture=[{base}, {name}: {value}}}]",
                    )
                add(command, f"layer key '{name}' misspelt", f"architecture=[{base}, {_typo(name, set())}: 1}}]")
        for item in _VALIDATED.get(command, []):
            add(command, f"value refused by a validator: {item}", item, "config-rule")
    # values the validators accept; only the first must fail (batch + mexican hat), the
    # second pairs a valid engine with its neighbourhood
    return [c for c in cases if c.args[1] != "som.engine=batch"]


def _section_fields(model: type[BaseModel], dotted: str) -> list[str]:
    current: Any = model
    for part in [p for p in dotted.split(".") if p]:
        current = current.model_fields[part].annotation
    return list(current.model_fields)


def yaml_cases() -> list[Case]:
    """--config files that are not usable configs, and malformed --set items, for every command."""
    files = {
        "a folder": ("folder", None),
        "missing": ("missing.yaml", None),
        "invalid YAML": ("bad.yaml", b"seed: [1, 2\n  x: : :\n"),
        "a list, not a mapping": ("list.yaml", b"- 1\n- 2\n"),
        "binary": ("binary.yaml", bytes(range(256)) * 4),
        "a key given twice": ("dup.yaml", b"seed: 1\nseed: 2\n"),
        "a nested key given twice": ("dup2.yaml", None),
        "a scalar": ("scalar.yaml", b"42\n"),
    }
    nested = {
        "preprocess": b"seed: 1\nlimit: 5\nlimit: 6\n",
        "train-som": b"som:\n  rows: 3\n  rows: 4\n",
        "tune": b"base:\n  som:\n    rows: 3\n    rows: 4\n",
        "train-cnn": b"train:\n  lr: 0.1\n  lr: 0.2\n",
        "encode": b"batch_size: 4\nbatch_size: 8\n",
        "cluster": b"kmeans:\n  k: 3\n  k: 4\n",
        "embed": b"tsne:\n  perplexity: 5\n  perplexity: 6\n",
        "report": b"title: a\ntitle: b\n",
    }
    cases = []
    for command in COMMANDS:
        for what, (name, content) in files.items():

            def setup(ws: Path, name: str = name, content: bytes | None = content, command: str = command) -> None:
                if name == "folder":
                    (ws / "cfg" / "folder").mkdir(parents=True, exist_ok=True)
                elif name == "dup2.yaml":
                    (ws / "cfg").mkdir(exist_ok=True)
                    (ws / "cfg" / name).write_bytes(nested[command])
                elif content is not None:
                    (ws / "cfg").mkdir(exist_ok=True)
                    (ws / "cfg" / name).write_bytes(content)

            issue = "7" if "twice" in what else "9" if what == "a folder" else ""
            says = "twice" if "twice" in what else "is a folder" if what == "a folder" else ""
            cases.append(
                Case(
                    f"{command}:yaml:{name}",
                    command,
                    "config-file",
                    f"--config is {what}",
                    ["--config", f"{{ws}}/cfg/{name}"],
                    setup,
                    issue=issue,
                    says=says,
                )
            )
        for item in ("novalue", "=3", "a..b=1", ".seed=1"):
            cases.append(Case(f"{command}:set:{item}", command, "config-set", f"--set '{item}'", ["--set", item]))
    return cases


# -- source files ---------------------------------------------------------------------------


def _write_sources(raw: Path) -> None:
    write_idx_folder(raw / "idx")
    mapping = np.array([0, 1, 0, 1, 2, 2, 0, 2, 1, 2])
    tw, kg = raw / "twisted", raw / "kaggle"
    tw.mkdir(parents=True)
    kg.mkdir(parents=True)
    header = ",".join(str(i) for i in range(784))
    for split, n, seed in (("train", 40, 0), ("test", 20, 1)):
        images, labels = make_images(n, seed)
        flat = images.reshape(n, -1)
        np.savetxt(tw / f"x_{split}.csv", flat, fmt="%d", delimiter=",", header=header, comments="")
        np.savetxt(tw / f"y_{split}.csv", mapping[labels], fmt="%d", header="0", comments="")
        khead = "label," + ",".join(f"pixel{i + 1}" for i in range(784))
        rows = np.column_stack([labels, flat])
        np.savetxt(kg / f"fashion-mnist_{split}.csv", rows, fmt="%d", delimiter=",", header=khead, comments="")


def _edit_csv(path: Path, line: int, col: int, value: str) -> None:
    lines = path.read_text().splitlines()
    cells = lines[line].split(",")
    cells[col] = value
    lines[line] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _idx_payload(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def source_cases() -> list[Case]:
    """Bad source files of preprocess, per input kind."""
    cases: list[Case] = []

    def add(source: str, what: str, setup: Callable[[Path], None], issue: str = "", extra: list[str] = ()) -> None:
        folder = {"idx": "raw/idx", "twisted-csv": "raw/twisted", "kaggle-csv": "raw/kaggle"}[source]
        args = ["--source", source, "--path", f"{{ws}}/{folder}", *extra]
        cases.append(
            Case(
                f"preprocess:{source}:{len(cases)}",
                "preprocess",
                f"file-{source}",
                what,
                args,
                setup,
                issue=issue,
                extra={"reads": {}},
            )
        )

    idx_files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    for name in idx_files:

        def path(ws: Path, name: str = name) -> Path:
            return ws / "raw" / "idx" / name

        add("idx", f"{name} missing", lambda ws, p=path: p(ws).unlink())
        add("idx", f"{name} empty", lambda ws, p=path: p(ws).write_bytes(b""))
        add("idx", f"{name} garbage bytes", lambda ws, p=path: p(ws).write_bytes(os.urandom(300)))
        add("idx", f"{name} gzip truncated", lambda ws, p=path: p(ws).write_bytes(_half(p(ws).read_bytes())))
        add("idx", f"{name} plain text under .gz", lambda ws, p=path: p(ws).write_text("hello\n"))
        add(
            "idx",
            f"{name} wrong magic number",
            lambda ws, p=path: p(ws).write_bytes(gzip.compress(b"\x01\x02" + _idx_payload(p(ws))[2:])),
        )
        add(
            "idx",
            f"{name} data truncated",
            lambda ws, p=path: p(ws).write_bytes(gzip.compress(_idx_payload(p(ws))[:-7])),
        )
        add(
            "idx",
            f"{name} header truncated",
            lambda ws, p=path: p(ws).write_bytes(gzip.compress(_idx_payload(p(ws))[:6])),
        )
        add("idx", f"{name} gzip of an empty payload", lambda ws, p=path: p(ws).write_bytes(gzip.compress(b"")))
    raw_idx = "raw/idx"

    def put(ws: Path, name: str, array: np.ndarray) -> None:
        write_idx(ws / raw_idx / name, array)

    add("idx", "train images 27x28", lambda ws: put(ws, idx_files[0], np.zeros((50, 27, 28), np.uint8)))
    add("idx", "train images one-dimensional", lambda ws: put(ws, idx_files[0], np.zeros(50, np.uint8)))
    add("idx", "train labels two-dimensional", lambda ws: put(ws, idx_files[1], np.zeros((50, 2), np.uint8)))
    add("idx", "more labels than images", lambda ws: put(ws, idx_files[1], np.zeros(51, np.uint8)))
    add("idx", "train label 10 (classes are 0..9)", lambda ws: put(ws, idx_files[1], np.full(50, 10, np.uint8)))
    add("idx", "test label 255", lambda ws: put(ws, idx_files[3], np.full(20, 255, np.uint8)))
    add(
        "idx",
        "0 training images",
        lambda ws: (
            put(ws, idx_files[0], np.zeros((0, 28, 28), np.uint8)),
            put(ws, idx_files[1], np.zeros(0, np.uint8)),
        ),
        issue="7",
    )
    add(
        "idx",
        "0 test images",
        lambda ws: (
            put(ws, idx_files[2], np.zeros((0, 28, 28), np.uint8)),
            put(ws, idx_files[3], np.zeros(0, np.uint8)),
        ),
        issue="7",
    )
    add(
        "idx",
        "a folder where a file should be",
        lambda ws: (os.unlink(ws / raw_idx / idx_files[0]), (ws / raw_idx / idx_files[0]).mkdir()),
    )

    for source, folder, files in (
        ("twisted-csv", "raw/twisted", ["x_train.csv", "y_train.csv", "x_test.csv", "y_test.csv"]),
        ("kaggle-csv", "raw/kaggle", ["fashion-mnist_train.csv", "fashion-mnist_test.csv"]),
    ):
        for name in files:

            def p(ws: Path, name: str = name, folder: str = folder) -> Path:
                return ws / folder / name

            is_y = name.startswith("y_")
            col = 0 if is_y else 5
            add(source, f"{name} missing", lambda ws, p=p: p(ws).unlink())
            add(source, f"{name} empty", lambda ws, p=p: p(ws).write_bytes(b""))
            add(source, f"{name} header only", lambda ws, p=p: p(ws).write_text(p(ws).read_text().splitlines()[0]))
            add(
                source,
                f"{name} gzipped under a .csv name",
                lambda ws, p=p: p(ws).write_bytes(gzip.compress(p(ws).read_bytes())),
                issue="6",
            )
            add(source, f"{name} binary garbage", lambda ws, p=p: p(ws).write_bytes(os.urandom(2000)))
            if source == "twisted-csv" and not is_y:
                add(
                    source,
                    f"{name} without its header row",
                    lambda ws, p=p: p(ws).write_text("\n".join(p(ws).read_text().splitlines()[1:]) + "\n"),
                )
            add(
                source,
                f"{name} one column too many",
                lambda ws, p=p: p(ws).write_text("\n".join(line + ",0" for line in p(ws).read_text().splitlines())),
            )
            add(
                source,
                f"{name} a row with a missing cell",
                lambda ws, p=p: p(ws).write_text(_drop_cell(p(ws).read_text(), 3)),
            )
            add(source, f"{name} a text cell", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "abc"))
            add(source, f"{name} an empty (NaN) cell", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, ""))
            add(source, f"{name} a 'nan' cell", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "nan"))
            add(source, f"{name} a negative cell", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "-1"))
            add(source, f"{name} a fractional cell", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "0.5"))
            add(source, f"{name} an 'inf' cell", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "inf"))
            add(
                source,
                f"{name} a huge cell (99999999999)",
                lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "99999999999"),
                issue="1",
            )
            add(source, f"{name} a cell of 1e300", lambda ws, p=p, c=col: _edit_csv(p(ws), 3, c, "1e300"))
            if source == "twisted-csv":  # a Kaggle file carries its labels in the same rows
                add(
                    source,
                    f"{name} last row dropped",
                    lambda ws, p=p: p(ws).write_text("\n".join(p(ws).read_text().splitlines()[:-1]) + "\n"),
                )
            if is_y or source == "kaggle-csv":
                add(source, f"{name} label 1000000", lambda ws, p=p: _edit_csv(p(ws), 3, 0, "1000000"), issue="1")
                add(
                    source,
                    f"{name} label 10 / beyond K",
                    lambda ws, p=p, big="10" if source == "kaggle-csv" else "1000": _edit_csv(p(ws), 3, 0, big),
                )
        if source == "kaggle-csv":
            first = ws_file(folder, files[0])
            add(
                source,
                "first column not 'label'",
                lambda ws, p=first: p(ws).write_text(p(ws).read_text().replace("label,", "lab,", 1)),
            )
        else:
            add(
                source,
                "a label value never used in training",
                lambda ws, folder=folder: _edit_csv(ws / folder / "y_test.csv", 3, 0, "7"),
            )
    for what, args in (
        ("--path does not exist", ["--source", "idx", "--path", "{ws}/nonexistent"]),
        ("--path is a file", ["--source", "idx", "--path", "{ws}/raw/idx/train-images-idx3-ubyte.gz"]),
        ("idx source without --path", ["--source", "idx"]),
        ("twisted-csv without --path", ["--source", "twisted-csv"]),
        ("unknown --source", ["--source", "parquet"]),
        (
            "relabel of a source without the 10 classes",
            ["--source", "twisted-csv", "--path", "{ws}/raw/twisted", "--set", "relabel=random"],
        ),
        ("--path of the wrong kind (CSV folder as idx)", ["--source", "idx", "--path", "{ws}/raw/twisted"]),
        ("--path of the wrong kind (idx folder as twisted-csv)", ["--source", "twisted-csv", "--path", "{ws}/raw/idx"]),
    ):
        cases.append(
            Case(
                f"preprocess:path:{len(cases)}",
                "preprocess",
                "file-source",
                what,
                args,
                issue="6" if what == "--path does not exist" else "",
                extra={"reads": {}},
            )
        )
    return cases


def ws_file(folder: str, name: str) -> Callable[[Path], Path]:
    return lambda ws: ws / folder / name


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _drop_cell(text: str, line: int) -> str:
    lines = text.splitlines()
    lines[line] = lines[line].rsplit(",", 1)[0] if "," in lines[line] else ""
    return "\n".join(lines) + "\n"


# -- upstream folders -----------------------------------------------------------------------


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def _write_manifest(folder: Path, manifest: Any) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _rehash(folder: Path, name: str) -> None:
    manifest = _manifest(folder)
    manifest["outputs"][name] = sha256_file(folder / name)
    _write_manifest(folder, manifest)


def _craft_npz(folder: Path, name: str, change: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
    with np.load(folder / name, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    (folder / name).write_bytes(npz_bytes(change(arrays)))
    _rehash(folder, name)


def _pickled_npz(folder: Path, name: str) -> None:
    buf = io.BytesIO()
    with np.load(folder / name, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["x_train"] = np.array([{"a": 1}] * len(arrays["x_train"]), dtype=object)
    np.savez(buf, **arrays)
    (folder / name).write_bytes(buf.getvalue())
    _rehash(folder, name)


def _data_faults() -> list[tuple[str, Callable[[Path], None], str]]:
    """Changes to a folder holding ``data.npz`` (preprocess or encode output)."""
    f = "data.npz"

    def set_(key: str, value: Callable[[dict[str, np.ndarray]], np.ndarray]):
        return lambda d: _craft_npz(d, f, lambda a: {**a, key: value(a)})

    def drop(key: str):
        return lambda d: _craft_npz(d, f, lambda a: {k: v for k, v in a.items() if k != key})

    def nan(a: dict[str, np.ndarray]) -> np.ndarray:
        x = a["x_train"].copy()
        x.reshape(-1)[3] = np.nan
        return x

    def one_label(value: int):
        def change(a: dict[str, np.ndarray]) -> np.ndarray:
            y = a["y_train"].copy()
            y[0] = value
            return y

        return change

    return [
        ("data.npz swapped for other bytes (hash differs)", lambda d: (d / f).write_bytes(os.urandom(500)), ""),
        (
            "data.npz swapped for another valid data.npz and dropped from the manifest",
            lambda d: (
                (d / f).write_bytes(
                    npz_bytes({"x_train": np.zeros((3, 784), np.float32), "x_test": np.zeros((2, 784), np.float32)})
                ),
                _drop_output(d, f),
            ),
            "7",
        ),
        ("data.npz missing", lambda d: (d / f).unlink(), ""),
        (
            "data.npz truncated (hash updated)",
            lambda d: ((d / f).write_bytes((d / f).read_bytes()[:999]), _rehash(d, f)),
            "",
        ),
        ("data.npz not a zip (hash updated)", lambda d: ((d / f).write_text("x"), _rehash(d, f)), ""),
        ("data.npz empty file (hash updated)", lambda d: ((d / f).write_bytes(b""), _rehash(d, f)), ""),
        ("data.npz holds a pickled object array (hash updated)", lambda d: _pickled_npz(d, f), ""),
        ("data.npz without x_train", drop("x_train"), ""),
        ("data.npz without x_test", drop("x_test"), ""),
        ("x_train holds NaN", set_("x_train", nan), ""),
        ("x_train holds inf", set_("x_train", lambda a: np.full_like(a["x_train"], np.inf)), ""),
        ("x_train float64", set_("x_train", lambda a: a["x_train"].astype(np.float64)), ""),
        ("x_train int", set_("x_train", lambda a: a["x_train"].astype(np.int32)), ""),
        ("x_train 3-D", set_("x_train", lambda a: a["x_train"].reshape(len(a["x_train"]), 1, -1)), ""),
        ("x_train a scalar", set_("x_train", lambda a: np.float32(1.0)), ""),
        (
            "x_train and x_test widths differ",
            set_("x_test", lambda a: a["x_test"].reshape(len(a["x_test"]), -1)[:, :5].copy()),
            "",
        ),
        (
            "x_train with 0 rows",
            lambda d: _craft_npz(d, f, lambda a: {**a, "x_train": a["x_train"][:0], "y_train": a["y_train"][:0]}),
            "",
        ),
        ("y_train label 99999999999", set_("y_train", one_label(99_999_999_999)), "1"),
        ("y_train label 1000000", set_("y_train", one_label(1_000_000)), "1"),
        ("y_train label -1", set_("y_train", one_label(-1)), ""),
        ("y_train float labels", set_("y_train", lambda a: a["y_train"].astype(np.float32)), ""),
        ("y_train one label short", set_("y_train", lambda a: a["y_train"][:-1]), ""),
        ("y_train two-dimensional", set_("y_train", lambda a: a["y_train"].reshape(-1, 1)), ""),
        (
            "y_test label 99999999999",
            lambda d: _craft_npz(d, f, lambda a: {**a, "y_test": np.full_like(a["y_test"], 99_999_999_999)}),
            "1",
        ),
    ]


def _drop_output(folder: Path, name: str) -> None:
    manifest = _manifest(folder)
    manifest["outputs"].pop(name, None)
    _write_manifest(folder, manifest)


def _folder_faults(main: str, other_stage: str) -> list[tuple[str, Callable[[Path], None], str]]:
    """Changes to any upstream folder and its manifest."""

    def manifest_edit(change: Callable[[dict[str, Any]], Any]):
        return lambda d: _write_manifest(d, change(_manifest(d)))

    return [
        ("folder missing", lambda d: shutil.rmtree(d), ""),
        ("a file instead of the folder", lambda d: (shutil.rmtree(d), d.write_text("x")), ""),
        ("empty folder", lambda d: (shutil.rmtree(d), d.mkdir()), ""),
        ("manifest.json deleted (unfinished run)", lambda d: (d / MANIFEST).unlink(), ""),
        ("manifest.json not JSON", lambda d: (d / MANIFEST).write_text("{oops"), ""),
        ("manifest.json binary", lambda d: (d / MANIFEST).write_bytes(os.urandom(64)), ""),
        ("manifest.json a list", lambda d: _write_manifest(d, [1, 2]), ""),
        ("manifest outputs null", manifest_edit(lambda m: {**m, "outputs": None}), "6"),
        ("manifest outputs a list", manifest_edit(lambda m: {**m, "outputs": list(m["outputs"])}), "6"),
        ("manifest without stage", manifest_edit(lambda m: {k: v for k, v in m.items() if k != "stage"}), ""),
        ("manifest stage not a string", manifest_edit(lambda m: {**m, "stage": ["preprocess"]}), ""),
        ("manifest of another stage", manifest_edit(lambda m: {**m, "stage": other_stage}), "7"),
        (
            "manifest hash of the main file changed",
            manifest_edit(lambda m: {**m, "outputs": {**m["outputs"], main: "0" * 64}}),
            "",
        ),
    ]


_SAYS = {  # the reason an upstream fault must be refused for
    "dropped from the manifest": "not listed",
    "manifest of another stage": "was written by",
    "manifest outputs": "not an fmnist-cluster manifest",
    "label 99999999999": "0..999",
    "label 1000000": "0..999",
    "weights NaN": "NaN or infinite weights",
    "swapped (hash differs)": "sha256",
}


def artefact_cases() -> list[Case]:
    """Damaged or wrong upstream folders for every reading option of every command."""
    cases: list[Case] = []
    readers = [
        ("train-som", "--input", "data", "data.npz", True),
        ("tune", "--input", "data", "data.npz", True),
        ("train-cnn", "--input", "mystery", "data.npz", True),
        ("encode", "--input", "mystery", "data.npz", True),
        ("encode", "--model", "cnn", "model.pt", False),
        ("cluster", "--input", "encoding", "data.npz", True),
        ("embed", "--input", "encoding", "data.npz", True),
        ("report", "--input", "som", "som.npz", False),
        ("report", "--input", "cnn", "model.pt", False),
        ("report", "--input", "data", "data.npz", False),
    ]
    for command, option, folder, main, data_faults in readers:
        faults = _folder_faults(main, "embed" if folder != "embed" else "cluster")
        if data_faults:
            faults += _data_faults()
        if main == "model.pt":
            faults += _model_faults() if command == "encode" else []
        if main in ("som.npz", "model.pt") and command == "report":
            faults += [
                (f"{main} swapped (hash differs)", lambda d, m=main: (d / m).write_bytes(os.urandom(300)), "7"),
                (f"{main} missing", lambda d, m=main: (d / m).unlink(), ""),
            ]
        for what, change, issue in faults:

            def setup(ws: Path, change=change, folder=folder) -> None:
                change(ws / folder)

            says = next((text for key, text in _SAYS.items() if key in what), "")
            if command == "report" and "another stage" in what:
                says = ""

            cases.append(
                Case(
                    f"{command}:{option}:{folder}:{len(cases)}",
                    command,
                    "upstream",
                    f"{option} {folder}: {what}",
                    [],
                    setup,
                    issue=issue,
                    says=says,
                    extra={"reads": {**READS[command], option: folder}},
                )
            )
    # a folder of the wrong stage for every reading option (one that does hold the file)
    for command, option, wrong in (
        ("train-som", "--input", "som"),
        ("train-som", "--input", "cluster"),
        ("tune", "--input", "cnn"),
        ("train-cnn", "--input", "encoding"),
        ("encode", "--input", "encoding"),
        ("encode", "--model", "data"),
        ("cluster", "--input", "cnn"),
        ("cluster", "--input", "embed"),
        ("embed", "--input", "report"),
        ("embed", "--input", "tune"),
        ("train-cnn", "--input", "report"),
        ("encode", "--model", "som"),
    ):
        reads = {**READS[command], option: wrong}
        cases.append(
            Case(
                f"{command}:wrong-stage:{option}:{wrong}",
                command,
                "upstream",
                f"{option} is a {wrong} folder (wrong stage)",
                [],
                None,
                issue="7",
                says="" if wrong == "encoding" else "was written by",
                extra={"reads": reads},
            )
        )
    # a data.npz planted in another stage's folder and listed in its manifest
    for command in ("train-som", "tune", "train-cnn", "encode"):  # cluster and embed read train-som folders

        def plant(ws: Path) -> None:
            shutil.copy(ws / "data" / "data.npz", ws / "som" / "data.npz")
            _rehash(ws / "som", "data.npz")

        cases.append(
            Case(
                f"{command}:planted-data",
                command,
                "upstream",
                "--input is a train-som folder with a data.npz planted in it",
                [],
                plant,
                issue="7",
                says="was written by",
                extra={"reads": {**READS[command], "--input": "som"}},
            )
        )
    return cases


def _model_faults() -> list[tuple[str, Callable[[Path], None], str]]:
    import torch

    m = "model.pt"

    def edit(change: Callable[[dict[str, Any]], Any]):
        def apply(d: Path) -> None:
            blob = torch.load(d / m, map_location="cpu", weights_only=True)
            buf = io.BytesIO()
            torch.save(change(blob), buf)
            (d / m).write_bytes(buf.getvalue())
            _rehash(d, m)

        return apply

    def nan_weights(blob: dict[str, Any]) -> dict[str, Any]:
        state = {k: v.clone() for k, v in blob["state_dict"].items()}
        first = next(k for k, v in state.items() if v.is_floating_point())
        state[first].view(-1)[0] = float("nan")
        return {**blob, "state_dict": state}

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pickled code ran",))

    def pickled(d: Path) -> None:
        buf = io.BytesIO()
        torch.save({"format": "x", "evil": Evil()}, buf)
        (d / m).write_bytes(buf.getvalue())
        _rehash(d, m)

    return [
        ("model.pt swapped (hash differs)", lambda d: (d / m).write_bytes(os.urandom(300)), ""),
        ("model.pt missing", lambda d: (d / m).unlink(), ""),
        (
            "model.pt truncated (hash updated)",
            lambda d: ((d / m).write_bytes((d / m).read_bytes()[:500]), _rehash(d, m)),
            "",
        ),
        ("model.pt not a checkpoint (hash updated)", edit(lambda b: {"hello": 1}), ""),
        ("model.pt weights NaN (hash updated)", edit(nan_weights), "4"),
        (
            "model.pt weights of another shape (hash updated)",
            edit(lambda b: {**b, "state_dict": {k: v[:1] for k, v in b["state_dict"].items()}}),
            "",
        ),
        ("model.pt architecture invalid (hash updated)", edit(lambda b: {**b, "architecture": [{"name": "x"}]}), ""),
        ("model.pt K of 1 (hash updated)", edit(lambda b: {**b, "n_classes": 1}), ""),
        ("model.pt a pickled object (hash updated)", pickled, ""),
        ("model.pt from a newer format (hash updated)", edit(lambda b: {**b, "format_version": 999}), ""),
    ]


def out_cases() -> list[Case]:
    """--out that would destroy an upstream artefact, is a file, or cannot be written."""
    cases: list[Case] = []
    stage_of = {
        "data": "preprocess",
        "mystery": "preprocess",
        "som": "train-som",
        "tune": "tune",
        "cnn": "train-cnn",
        "encoding": "encode",
        "cluster": "cluster",
        "embed": "embed",
        "report": "report",
    }
    for command in COMMANDS:
        for option, folder in READS[command].items():
            cases.append(
                Case(
                    f"{command}:out=input:{option}",
                    command,
                    "out",
                    f"--out equal to {option}",
                    [],
                    None,
                    issue="2",
                    extra={"out": folder},
                )
            )
            if command == "preprocess":  # its --path is raw data, which may hold its outputs
                continue
            cases.append(
                Case(
                    f"{command}:out=inside:{option}",
                    command,
                    "out",
                    f"--out inside the {option} artefact",
                    [],
                    None,
                    extra={"out": f"{folder}/new-out"},
                    says=f"lies inside the {option} folder",
                )
            )
        first = next(iter(READS[command].items()), None)
        if first is not None and command != "preprocess":
            cases.append(
                Case(
                    f"{command}:out=holds:{first[0]}",
                    command,
                    "out",
                    f"--out the folder that holds the {first[0]} artefact",
                    [],
                    None,
                    extra={"out": "."},
                    says=f"holds the {first[0]} folder",
                )
            )
        for folder in ARTEFACTS:
            if stage_of[folder] == command or folder in READS[command].values():
                continue
            cases.append(
                Case(
                    f"{command}:out=artefact:{folder}",
                    command,
                    "out",
                    f"--out is a finished {stage_of[folder]} artefact ({folder})",
                    [],
                    None,
                    issue="2",
                    extra={"out": folder},
                )
            )
        cases.append(
            Case(
                f"{command}:out=file",
                command,
                "out",
                "--out is a file",
                [],
                lambda ws: (ws / "a-file").write_text("x"),
                extra={"out": "a-file"},
            )
        )
        cases.append(
            Case(
                f"{command}:out=under-file",
                command,
                "out",
                "--out inside a file",
                [],
                lambda ws: (ws / "a-file").write_text("x"),
                extra={"out": "a-file/sub"},
            )
        )
        cases.append(
            Case(
                f"{command}:out=proc",
                command,
                "out",
                "--out not writable (/proc)",
                [],
                None,
                issue="6",
                extra={"out": "/proc/fmnist-cluster-out"},
            )
        )
    return cases


def fault_cases() -> list[Case]:
    """Runs that fail in the middle: the previous artefact must survive and nothing be left over."""

    def one_row(ws: Path) -> None:
        for folder in ("encoding",):
            _craft_npz(
                ws / folder,
                "data.npz",
                lambda a: {k: (v[:1] if k in ("x_test", "y_test") else v) for k, v in a.items()},
            )

    def som_ckpt(ws: Path) -> None:
        shutil.copytree(ws / "som", ws / "som-out")
        shutil.copy(ws / "ckpt" / "checkpoint.npz", ws / "som-out" / "checkpoint.npz")

    def cnn_state(ws: Path) -> None:
        shutil.copytree(ws / "cnn", ws / "cnn-out")
        shutil.copy(ws / "ckpt" / "train-state.pt", ws / "cnn-out" / "train-state.pt")

    def garbage_ckpt(ws: Path) -> None:
        som_ckpt(ws)
        (ws / "som-out" / "checkpoint.npz").write_bytes(os.urandom(100))

    tail = "{name: f, type: flatten}, {name: o, type: dense, units: classes}]"
    big_kernel = "architecture=[{name: c, type: conv, filters: 2, kernel: 40, padding: 0}, " + tail
    return [
        Case("embed:one-row", "embed", "fault", "embed on 1 row", [], one_row, issue="6"),
        Case("cluster:one-row", "cluster", "fault", "cluster on 1 row", [], one_row),
        Case(
            "train-cnn:kernel>image",
            "train-cnn",
            "fault",
            "a conv kernel larger than the image",
            ["--set", big_kernel],
            issue="6",
            says="cannot take an input",
        ),
        Case(
            "train-cnn:pool>image",
            "train-cnn",
            "fault",
            "pooling that shrinks the image to nothing",
            [
                "--set",
                "architecture=[{name: p, type: pool, size: 64}, " + tail,
            ],
        ),
        Case(
            "train-som:epochs=1e12",
            "train-som",
            "fault",
            "--epochs 1e12",
            ["--epochs", "1e12"],
            issue="6",
            says="less than or equal",
        ),
        Case(
            "train-som:grid",
            "train-som",
            "fault",
            "a 100000x100000 grid",
            ["--set", "som.rows=100000", "--set", "som.cols=100000"],
            issue="6",
            says="1000",
        ),
        Case(
            "train-som:winner",
            "train-som",
            "fault",
            "analysis.winner_neurons beyond the map",
            ["--set", "analysis.winner_neurons=[500]"],
            issue="9",
            says="winner_neurons",
        ),
        Case(
            "train-cnn:lr=1e9",
            "train-cnn",
            "fault",
            "train.lr=1e9 diverges; the previous model is kept",
            ["--set", "train.lr=1e9", "--set", "train.schedule=constant"],
            issue="4",
            extra={"out": "cnn"},
            says="diverged",
        ),
        Case(
            "train-som:resume-other-data",
            "train-som",
            "fault",
            "--resume from a checkpoint trained on other data",
            ["--resume"],
            som_ckpt,
            issue="3",
            extra={"out": "som-out"},
            says="other data",
        ),
        Case(
            "train-som:resume-garbage",
            "train-som",
            "fault",
            "--resume from a damaged checkpoint",
            ["--resume"],
            garbage_ckpt,
            extra={"out": "som-out"},
        ),
        Case(
            "train-cnn:resume-other-data",
            "train-cnn",
            "fault",
            "--resume from a state trained on other data",
            ["--resume"],
            cnn_state,
            issue="3",
            extra={"out": "cnn-out"},
            says="other data",
        ),
        Case("train-cnn:resume-missing", "train-cnn", "fault", "--resume with no saved state", ["--resume"]),
        Case(
            "train-som:minisom-resume",
            "train-som",
            "fault",
            "--resume with the minisom engine",
            ["--resume", "--engine", "minisom"],
        ),
        Case("encode:layer", "encode", "fault", "an unknown --layer", ["--layer", "nope"]),
        Case("cluster:split", "cluster", "fault", "--split bogus", ["--split", "bogus"]),
        Case(
            "cluster:reference-not-10",
            "cluster",
            "fault",
            "--reference trained on mystery labels",
            [],
            None,
            extra={"reads": {"--input": "encoding", "--reference": "cnn"}},
        ),
        Case(
            "cluster:originals-mystery",
            "cluster",
            "fault",
            "--originals is a relabelled folder",
            [],
            None,
            extra={"reads": {"--input": "encoding", "--originals": "mystery"}},
        ),
        Case(
            "cluster:images-mismatch",
            "cluster",
            "fault",
            "--images of other rows",
            [],
            None,
            extra={"reads": {"--input": "encoding", "--images": "data"}},
        ),
        Case("cluster:k>rows", "cluster", "fault", "kmeans.k larger than the rows", ["--set", "kmeans.k=500"]),
        Case(
            "embed:perplexity>rows",
            "embed",
            "ok",
            "t-SNE perplexity above the rows allow (lowered to fit)",
            [
                "--set",
                "tsne.enabled=true",
                "--set",
                "tsne.perplexity=500",
                "--set",
                "tsne.max_iter=250",
                "--set",
                "umap.enabled=false",
            ],
            expect="ok",
        ),
        Case(
            "embed:constant-features",
            "embed",
            "fault",
            "every row has the same features",
            [],
            lambda ws: _craft_npz(
                ws / "encoding",
                "data.npz",
                lambda a: {**a, "x_train": np.full_like(a["x_train"], 0.5), "x_test": np.full_like(a["x_test"], 0.5)},
            ),
            says="has the same features",
        ),
        Case(
            "train-cnn:one-label",
            "train-cnn",
            "fault",
            "training data with one label",
            [],
            lambda ws: _craft_npz(
                ws / "mystery",
                "data.npz",
                lambda a: {**a, "y_train": np.zeros_like(a["y_train"]), "y_test": np.zeros_like(a["y_test"])},
            ),
        ),
        Case(
            "train-cnn:features",
            "train-cnn",
            "fault",
            "--input an encoding (features, not images)",
            [],
            None,
            extra={"reads": {"--input": "encoding"}},
        ),
        Case(
            "encode:K-mismatch",
            "encode",
            "fault",
            "--input with another K than the model",
            [],
            None,
            extra={"reads": {"--input": "data", "--model": "cnn"}},
        ),
        Case(
            "report:no-inputs",
            "report",
            "fault",
            "report of a folder with no artefacts",
            [],
            None,
            extra={"reads": {"--input": "raw"}},
        ),
        Case("tune:storage", "tune", "fault", "--storage URL of an unknown scheme", ["--storage", "nosuch://x"]),
        # valid edge inputs that must succeed and leave the inputs alone
        Case(
            "train-som:reuse-out",
            "train-som",
            "ok",
            "--out a finished train-som folder: replaced, old figures gone",
            ["--set", "analysis.n_largest_qe=1"],
            _stale_figure,
            expect="ok",
            issue="9",
            extra={"out": "som"},
        ),
        Case(
            "preprocess:limit", "preprocess", "ok", "a limit larger than the data", ["--limit", "100000"], expect="ok"
        ),
    ]


def _stale_figure(ws: Path) -> None:
    """A figure an older train-som run wrote that the next run does not write."""
    (ws / "som" / "stale.png").write_bytes(b"x")
    _rehash(ws / "som", "stale.png")


def all_cases() -> list[Case]:
    cases = config_cases() + yaml_cases() + source_cases() + artefact_cases() + out_cases() + fault_cases()
    seen: set[str] = set()
    for case in cases:
        while case.id in seen:
            case.id += "'"
        seen.add(case.id)
    return cases


# --------------------------------------------------------------------------------------
# fixtures and running
# --------------------------------------------------------------------------------------

runner = CliRunner()


def _invoke(argv: list[str]) -> Any:
    return runner.invoke(app, argv, catch_exceptions=True)


def build_fixtures(ws: Path) -> None:
    """Tiny sources and one finished artefact of every stage, plus checkpoints of other data."""
    _write_sources(ws / "raw")
    steps = [
        ["preprocess", "--source", "idx", "--path", f"{ws}/raw/idx", "--out", f"{ws}/data"],
        ["preprocess", "--source", "twisted-csv", "--path", f"{ws}/raw/twisted", "--out", f"{ws}/mystery"],
        [*_argv("train-som", ws, "som")],
        [*_argv("tune", ws, "tune")],
        [*_argv("train-cnn", ws, "cnn")],
        [*_argv("encode", ws, "encoding")],
        [*_argv("cluster", ws, "cluster")],
        [*_argv("embed", ws, "embed")],
        [
            "report",
            *(a for f in ("data", "som", "cnn", "cluster", "embed") for a in ("--input", f"{ws}/{f}")),
            "--out",
            f"{ws}/report",
        ],
    ]
    for argv in steps:
        result = _invoke(argv)
        if result.exit_code != 0:
            raise RuntimeError(f"fixture step {' '.join(argv)} failed: {result.stderr}{result.exception!r}")
    _other_data_checkpoints(ws)


def _other_data_checkpoints(ws: Path) -> None:
    """A train-som checkpoint and a train-cnn state saved on other data (same settings and size)."""
    from fmnist_cluster.cnn import Trainer
    from fmnist_cluster.config import load_config
    from fmnist_cluster.data import load_dataset
    from fmnist_cluster.som import make_engine, train

    (ws / "ckpt").mkdir()
    data, _ = load_dataset(ws / "data")
    rng = np.random.default_rng(5)
    som_cfg = load_config(SomConfig, None, TINY["train-som"])
    x = data.x_train.reshape(len(data.x_train), -1)
    train(make_engine(som_cfg), x[::-1] * np.float32(0.9), checkpoint=ws / "ckpt" / "checkpoint.npz")
    mystery, _ = load_dataset(ws / "mystery")
    cnn_cfg = load_config(CnnConfig, None, TINY["train-cnn"])
    y_other = rng.permutation(mystery.y_train)
    Trainer(state_path=ws / "ckpt" / "train-state.pt").train(
        mystery.x_train,
        y_other,
        n_classes=mystery.n_classes,
        architecture=cnn_cfg.architecture,
        train=cnn_cfg.train,
        augment=cnn_cfg.augment,
        device="cpu",
        threads=1,
        seed=0,
    )


def _snapshot(ws: Path) -> dict[str, str]:
    """sha256 of every file under the workspace (and the folders, so an empty new one shows)."""
    out: dict[str, str] = {}
    for path in sorted(ws.rglob("*")):
        rel = path.relative_to(ws).as_posix()
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def case_argv(case: Case, ws: Path) -> list[str]:
    out = case.extra.get("out")
    argv = _argv(case.command, ws, out, case.extra.get("reads"))
    if out is not None and out.startswith("/"):
        argv[argv.index("--out") + 1] = out
    return argv + [a.replace("{ws}", str(ws)) for a in case.args]


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def run_case(case: Case, base: Path, scratch: Path) -> Outcome:
    """Run one case on a fresh copy of the fixtures and judge it against the promise."""
    ws = scratch / "ws"
    if ws.exists():
        shutil.rmtree(ws)
    shutil.copytree(base, ws, symlinks=True)
    if case.setup is not None:
        case.setup(ws)
    before = _snapshot(ws)
    argv = case_argv(case, ws)
    tick = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        result = _invoke(argv)
    except _Timeout:
        result = None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - tick
    if result is None:
        return Outcome(case, False, "timeout", None, f"no answer in {TIMEOUT_S} s", seconds)
    stderr = result.stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    exc = result.exception
    crashed = exc is not None and not isinstance(exc, SystemExit)
    if crashed or isinstance(exc, _Timeout):
        name = "timeout" if isinstance(exc, _Timeout) else f"traceback ({type(exc).__name__})"
        return Outcome(case, False, name, result.exit_code, str(exc).splitlines()[0][:200] if str(exc) else "", seconds)
    after = _snapshot(ws)
    out_path = argv[argv.index("--out") + 1]
    out_rel = Path(out_path).relative_to(ws).as_posix() if out_path.startswith(str(ws)) else None
    if case.expect == "ok":
        changed = _changes(before, after, out_rel)
        good = result.exit_code == 0 and not changed and _ok_check(case, ws)
        message = (stderr.strip().splitlines() or [""])[-1][:300] if result.exit_code else "accepted"
        if changed:
            message = f"changed {changed[:3]}"
        return Outcome(case, good, "ok" if good else "wrong", result.exit_code, message, seconds)
    changed = _changes(before, after, None)
    message = errors[0][len("error: ") :] if errors else (stderr.strip().splitlines() or ["(no message)"])[-1]
    if result.exit_code == 0:
        return Outcome(case, False, "accepted", 0, "accepted silently", seconds)
    if result.exit_code != 2 or len(errors) != 1 or "Traceback" in stderr + result.stdout:
        return Outcome(
            case, False, f"exit {result.exit_code}, {len(errors)} error lines", result.exit_code, message[:300], seconds
        )
    if changed:
        return Outcome(case, False, "refused but files changed", 2, f"{changed[:3]}: {message[:200]}", seconds)
    if len(message) > 600:
        return Outcome(case, False, "error line too long", 2, message[:200] + "...", seconds)
    if case.says and case.says not in message:
        return Outcome(case, False, f"refused for another reason (expected '{case.says}')", 2, message, seconds)
    return Outcome(case, True, "refused", 2, message, seconds)


def _changes(before: dict[str, str], after: dict[str, str], allowed: str | None) -> list[str]:
    keys = set(before) | set(after)
    changed = sorted(k for k in keys if before.get(k) != after.get(k))
    if allowed is not None:
        changed = [k for k in changed if not (k == allowed or k.startswith(allowed + "/"))]
    return changed


def _ok_check(case: Case, ws: Path) -> bool:
    if case.id == "train-som:reuse-out":
        return not (ws / "som" / "stale.png").exists() and (ws / "som" / MANIFEST).is_file()
    return True


def run_all(cases: list[Case], progress: bool = True) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="fmnist-robustness-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        build_fixtures(base)
        outcomes = []
        for i, case in enumerate(cases):
            outcome = run_case(case, base, Path(tmp))
            outcome.message = outcome.message.replace(str(Path(tmp) / "ws"), "WS").replace(str(base), "BASE")
            outcomes.append(outcome)
            if progress and not outcome.ok:
                print(f"[{i + 1}/{len(cases)}] FAIL {case.id}: {outcome.result}: {outcome.message}", file=sys.stderr)
        return outcomes


def markdown(outcomes: list[Outcome], seconds: float) -> str:
    kept = sum(o.ok for o in outcomes)
    by_command: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_command.setdefault(o.case.command, []).append(o)
    lines = [
        "# Robustness",
        "",
        "Every case below is a hostile input or a fault, run by `benchmarks/robustness.py` (`make robustness`)",
        "through the command line in-process on tiny data. The promise: exit code 2, exactly one `error:` line",
        "naming the file or key and the fix, no traceback, every upstream artefact byte-identical afterwards and",
        "no new or half-written `--out`. Cases marked *ok* are valid edge inputs that must succeed without",
        "touching their inputs. The config cases are generated from the pydantic models (every field of every",
        "stage: a misspelt name, a wrong type, each declared bound), so new fields get cases by themselves.",
        "`tests/test_robustness.py` runs the cases of the reported faults (column *issue*) and a sample of the",
        "rest in `make test`.",
        "",
        f"**{kept} of {len(outcomes)} cases kept the promise** ({seconds:.0f} s on {os.cpu_count()} cores).",
        "",
        "| command | cases | kept |",
        "| --- | ---: | ---: |",
    ]
    for command in COMMANDS:
        group = by_command.get(command, [])
        lines.append(f"| `{command}` | {len(group)} | {sum(o.ok for o in group)} |")
    lines += [
        "",
        "| # | command | kind | case | issue | outcome | message |",
        "| ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for i, o in enumerate(outcomes, 1):
        verdict = ("kept: " if o.ok else "**BROKEN**: ") + o.result
        message = o.message.replace("|", "\\|").replace("\n", " ")
        what = o.case.what.replace("|", "\\|")
        lines.append(f"| {i} | `{o.case.command}` | {o.case.kind} | {what} | {o.case.issue} | {verdict} | {message} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", type=Path, help="Write the Markdown table here (e.g. docs/robustness.md).")
    parser.add_argument("--every", type=int, default=1, help="Run every N-th case only.")
    parser.add_argument("--match", default="", help="Run only cases whose id contains this text.")
    args = parser.parse_args(argv)
    cases = [c for c in all_cases() if args.match in c.id][:: args.every]
    tick = time.perf_counter()
    outcomes = run_all(cases)
    seconds = time.perf_counter() - tick
    broken = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(broken)} of {len(outcomes)} cases kept the promise in {seconds:.0f} s")
    if args.doc is not None:
        args.doc.write_text(markdown(outcomes, seconds), encoding="utf-8")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
