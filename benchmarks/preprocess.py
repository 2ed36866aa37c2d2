"""Time `fmnist-cluster preprocess` end to end on the real data.

usage: python benchmarks/preprocess.py [--data ../shared/data/fashion-mnist] [--repeats 3] [--work /tmp/fmc-bench]

Measures the whole command (process start, reading, checking, writing data.npz and the
manifest) for the 70,000-image IDX folder and for a 60,000-row Twisted CSV made from the same
images with the shared make_twisted.py tool (a 10,000-row test split rides along). Prints one
line per case with the median and the individual wall times.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/fashion-mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="/tmp/fmc-bench")
    args = parser.parse_args()
    work = Path(args.work)
    twisted = work / "twisted"
    if not (twisted / "y_test.csv").exists():
        tool = Path(args.data).resolve().parents[1] / "tools" / "make_twisted.py"
        subprocess.run(
            [sys.executable, str(tool), str(twisted), "--data", args.data], check=True, stdout=subprocess.DEVNULL
        )
    cli = [sys.executable, "-m", "fmnist_cluster", "preprocess"]
    cases = {
        "idx, 70,000 images": [*cli, "--source", "idx", "--path", args.data, "--out", str(work / "idx")],
        "twisted-csv, 60,000 + 10,000 rows": [
            *cli,
            "--source",
            "twisted-csv",
            "--path",
            str(twisted),
            "--out",
            str(work / "tw"),
        ],
    }
    for name, cmd in cases.items():
        times = [timed(cmd) for _ in range(args.repeats)]
        print(f"{name}: median {statistics.median(times):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
