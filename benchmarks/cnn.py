"""Benchmark train-cnn and encode on the real data (on a quiet machine:
``.venv/bin/python benchmarks/cnn.py ...``; ``make bench-cnn`` does).

Tasks: ``idx`` is the plain 10-class Fashion-MNIST task; ``tw:<mapping>`` is a Twisted set made
with make_twisted.py from that mapping (10 group ids) and read with ``--source twisted-csv``.
Every run goes through the command line, so the numbers are what a user gets. One JSON line per
run is appended to ``--results``, and a Markdown row is printed.

``cnn-30`` is ``cnn.yaml`` at the 30 epochs it had until 2026-11-24, the anchor of the training
time: run it in the same invocation as ``cnn`` (``--set train.epochs=2`` times both per epoch;
the 22/30 epoch ratio is then the time ratio, the accuracy needs full runs).

Example::

    .venv/bin/python benchmarks/cnn.py \\
        --run reference:idx --run cnn:idx --run cnn:tw:0,0,1,1,2,2,3,3,4,4 --encode cnn:idx
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fmnist_cluster"]
CONFIGS = {
    "reference": (ROOT / "configs" / "cnn-reference.yaml", []),
    "own": (ROOT / "configs" / "cnn-seed-own.yaml", []),
    "cnn": (ROOT / "configs" / "cnn.yaml", []),
    "cnn-30": (ROOT / "configs" / "cnn.yaml", ["--set", "train.epochs=30"]),
    "demo": (ROOT / "configs" / "cnn-demo.yaml", []),
}


def run_times(out: Path) -> dict[str, float]:
    """The durations and speeds of a run: its manifest's ``timings``."""
    return json.loads((out / "manifest.json").read_text())["timings"]


def sh(cmd: list[str]) -> float:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    tick = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True)
    return time.perf_counter() - tick


def task_data(task: str, args: argparse.Namespace) -> Path:
    """The preprocess folder of a task, made once."""
    if task == "idx":
        out = args.work / "data-idx"
        if not (out / "manifest.json").is_file():
            sh([*CLI, "preprocess", "--source", "idx", "--path", args.fmnist, "--out", out])
        return out
    if not task.startswith("tw:"):
        raise SystemExit(f"unknown task '{task}'; valid: idx, tw:<10 comma-separated group ids>")
    mapping = task[3:]
    tag = mapping.replace(",", "")
    out = args.work / f"data-tw{tag}"
    if not (out / "manifest.json").is_file():
        csv = args.work / f"csv-tw{tag}"
        if not (csv / "y_test.csv").is_file():
            sh([sys.executable, args.make_twisted, csv, "--data", args.fmnist, "--mapping", mapping])
        sh([*CLI, "preprocess", "--source", "twisted-csv", "--path", csv, "--out", out])
    return out


def record(entry: dict, args: argparse.Namespace) -> None:
    entry["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with open(args.results, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
    print("RESULT", json.dumps(entry), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fmnist", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    p.add_argument("--make-twisted", type=Path, default=ROOT.parent / "shared" / "tools" / "make_twisted.py")
    p.add_argument("--work", type=Path, default=Path("/tmp/fmnist-cnn-bench"))
    p.add_argument("--results", type=Path, default=Path("/tmp/fmnist-cnn-bench/results.jsonl"))
    p.add_argument(
        "--run", action="append", default=[], help="CONFIG:TASK, e.g. reference:idx or cnn:tw:0,1,0,1,2,3,2,3,4,3"
    )
    p.add_argument("--encode", action="append", default=[], help="CONFIG:TASK of a finished run to time encode on")
    p.add_argument("--set", action="append", default=[], help="--set passed to train-cnn")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for item in args.run:
        name, _, task = item.partition(":")
        data = task_data(task, args)
        out = args.work / f"cnn-{name}-{task.replace(':', '').replace(',', '')}"
        config, fixed = CONFIGS[name]
        sets = [*fixed, *(x for s in args.set for x in ("--set", s))]
        wall = sh([*CLI, "train-cnn", "-c", config, "-i", data, "-o", out, *sets])
        m = {**json.loads((out / "metrics.json").read_text()), **run_times(out)}
        record(
            {
                "kind": "train-cnn",
                "config": name,
                "task": task,
                "test_accuracy": m["test_accuracy"],
                "test_accuracy_single_view": m.get("test_accuracy_single_view"),
                "n_right": m["n_right"],
                "n_test": m["n_test"],
                "epochs": m["epochs_run"],
                "best_epoch": m["best_epoch"],
                "train_seconds": m["train_seconds"],
                "seconds_per_epoch": round(m["train_seconds"] / m["epochs_run"], 2),
                "wall_seconds": round(wall, 1),
                "train_images_per_s": m["train_images_per_s"],
                "inference_images_per_s": m["inference_images_per_s"],
                "val_curve": [round(h.get("val_acc", float("nan")), 4) for h in m["history"]],
            },
            args,
        )
    for item in args.encode:
        name, _, task = item.partition(":")
        data = task_data(task, args)
        model = args.work / f"cnn-{name}-{task.replace(':', '').replace(',', '')}"
        out = args.work / f"enc-{name}-{task.replace(':', '').replace(',', '')}"
        wall = sh([*CLI, "encode", "-m", model, "-i", data, "-o", out])
        m = {**json.loads((out / "metrics.json").read_text()), **run_times(out)}
        record(
            {
                "kind": "encode",
                "config": name,
                "task": task,
                "layer": m["layer"],
                "dim": m["dim"],
                "n": m["n_train"] + m["n_test"],
                "encode_seconds": m["seconds"],
                "wall_seconds": round(wall, 1),
                "images_per_s": m["images_per_s"],
            },
            args,
        )


if __name__ == "__main__":
    main()
