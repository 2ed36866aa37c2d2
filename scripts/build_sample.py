"""Rebuild the stratified real sample shipped in src/fmnist_cluster/sample/.

usage: python scripts/build_sample.py [DATA_DIR] [--train 6000] [--test 1000] [--seed 0]

DATA_DIR holds the real Fashion-MNIST IDX files (default ../shared/data/fashion-mnist).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist_cluster.data import SAMPLE_DIR, load_idx_folder, stratified_indices, write_idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default="../shared/data/fashion-mnist")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    full = load_idx_folder(Path(args.data))
    for split, x, y, n, prefix in (
        ("train", full.x_train, full.y_train, args.train, "train"),
        ("test", full.x_test, full.y_test, args.test, "t10k"),
    ):
        idx = stratified_indices(y, n, args.seed + (split == "test"))
        images = (x[idx, 0] * 255).round().astype("uint8")
        write_idx(SAMPLE_DIR / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(SAMPLE_DIR / f"{prefix}-labels-idx1-ubyte.gz", y[idx].astype("uint8"))
        print(f"{split}: {len(idx)} images -> {SAMPLE_DIR}")


if __name__ == "__main__":
    main()
