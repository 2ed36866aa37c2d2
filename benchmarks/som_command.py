"""Benchmark of the whole ``train-som`` command against its own training time: the wall clock
of the process (start-up, loading, training, analysis, figures, writing) divided by the
``train_seconds`` it reports, with the stage timings of its manifest. Run it alone on the
machine, after ``fmnist-cluster preprocess --source idx --path ../shared/data/fashion-mnist
--out DATA``:

    .venv/bin/python benchmarks/som_command.py --input DATA --config configs/som.yaml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="a preprocess folder of the real data")
    parser.add_argument("--config", type=Path, default=Path("configs/som.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-som-") as tmp:
        out = Path(tmp) / "som"
        cmd = [sys.executable, "-m", "fmnist_cluster", "train-som", "--config", str(args.config)]
        cmd += ["--input", str(args.input), "--out", str(out)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - start
        metrics = json.loads((out / "metrics.json").read_text())
        timings = json.loads((out / "manifest.json").read_text())["timings"]
    train = timings["train_seconds"]
    print(
        json.dumps(
            {
                "command_s": round(wall, 2),
                "train_seconds": train,
                "command_over_training": round(wall / train, 2),
                "timings": {k: v for k, v in timings.items() if k != "train_seconds"},
                "qe": metrics["qe"],
                "te": metrics["te"],
                "test_qe": metrics.get("test_qe"),
                "test_te": metrics.get("test_te"),
            }
        )
    )


if __name__ == "__main__":
    main()
