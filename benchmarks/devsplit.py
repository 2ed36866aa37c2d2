"""Write a development copy of an IDX folder: the last ``--dev`` training images become its
"test" files, the rest its training files; the real test files are left out.

Choices of configuration are made on such a folder (every later stage then scores on rows
carved from the training split, never on the real test split), and the real test split is
looked at once, to report. The draw is stratified and seeded, so the copy is the same on
every run::

    python benchmarks/devsplit.py ../shared/data/fashion-mnist /tmp/dev --dev 10000
    fmnist-cluster preprocess --source idx --path /tmp/dev --out /tmp/dev-data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fmnist_cluster.data import load_idx_folder, stratified_indices, write_idx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="IDX folder with the four standard files")
    parser.add_argument("out", type=Path, help="folder to write the development copy into")
    parser.add_argument("--dev", type=int, default=10000, help="training images held out as the development split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_idx_folder(args.source)
    y = data.y_train
    dev = stratified_indices(y, args.dev, args.seed)
    keep = np.setdiff1d(np.arange(len(y)), dev)
    images = np.rint(data.x_train[:, 0] * 255).astype(np.uint8)
    for prefix, rows in (("train", keep), ("t10k", dev)):
        write_idx(args.out / f"{prefix}-images-idx3-ubyte.gz", images[rows])
        write_idx(args.out / f"{prefix}-labels-idx1-ubyte.gz", y[rows].astype(np.uint8))
    print(f"{args.out}: {len(keep)} training and {len(dev)} development images (from the training split only)")


if __name__ == "__main__":
    main()
