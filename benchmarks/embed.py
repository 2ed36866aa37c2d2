"""Benchmark of ``embed``'s t-SNE: openTSNE's FFT-accelerated t-SNE (the default,
``tsne.method: fft``) against its anchor, scikit-learn's Barnes-Hut t-SNE with its own defaults
(1,000 steps), in one run on the same 10,000 x 64 features, then the FFT method on all 70,000
images.

The 10,000 x 64 features are the first 64 principal components of the 10,000 real test images
(the shape of the CNN's ``dense64`` encoding), or the test rows of an ``encode`` folder given
with ``--encoding``. Both maps are scored exactly (every row) by trustworthiness and k-NN
preservation, k = 10. Run it alone on the machine:

    .venv/bin/python benchmarks/embed.py --data ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from fmnist_cluster.data import load_dataset, load_idx_folder
from fmnist_cluster.embed import tsne_embedding
from fmnist_cluster.quality import neighbourhood_scores


def timed(x: np.ndarray, method: str, max_iter: int, threads: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    coords = tsne_embedding(x, max_iter=max_iter, threads=threads, method=method)
    return coords, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fashion-mnist"), help="IDX folder")
    parser.add_argument("--encoding", type=Path, default=None, help="an encode folder to take 10,000 test rows from")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-embed/embed.json"), help="JSON results")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-all", action="store_true", help="skip the 70,000-image run")
    args = parser.parse_args()

    from sklearn.decomposition import PCA

    ds = load_idx_folder(args.data)
    if args.encoding is not None:
        x = load_dataset(args.encoding, "fmnist-cluster encode")[0].x_test.astype(np.float32)
        source = f"test rows of {args.encoding}"
    else:
        x = PCA(64, random_state=0).fit_transform(ds.x_test.reshape(len(ds.x_test), -1)).astype(np.float32)
        source = "first 64 principal components of the 10,000 test images"
    rows = []
    for name, method, max_iter in (
        ("scikit-learn Barnes-Hut (anchor), 1,000 steps", "barnes-hut", 1000),
        ("fmnist-cluster default: openTSNE FFT, 750 steps", "fft", 750),
    ):
        coords, seconds = timed(x, method, max_iter, args.threads)
        row = {"method": name, "rows": len(x), "dims": x.shape[1], "seconds": round(seconds, 2)}
        row.update(neighbourhood_scores(x, coords, k=10, points=None))
        rows.append(row)
        print(json.dumps(row), flush=True)
    anchor, ours = rows[0], rows[1]
    ratio = {
        "speed-up": round(anchor["seconds"] / ours["seconds"], 2),
        "trustworthiness difference": round(ours["trustworthiness"] - anchor["trustworthiness"], 4),
    }
    if not args.skip_all:
        pixels = np.concatenate([ds.x_train, ds.x_test]).reshape(-1, 784).astype(np.float32)
        coords, seconds = timed(pixels, "fft", 750, args.threads)
        row = {"method": "openTSNE FFT, 750 steps, all images", "rows": len(pixels), "dims": 784}
        row["seconds"] = round(seconds, 2)
        row.update(neighbourhood_scores(pixels, coords, k=10, points=5000))
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads",
        "features": source,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "ratio": ratio}, indent=2) + "\n")
    print("\n| t-SNE | rows x dims | wall | trustworthiness (k=10) | 10-NN preservation | scored rows |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['rows']:,} x {r['dims']} | {r['seconds']:.1f} s | {r['trustworthiness']:.4f} | "
            f"{r['knn_preservation']:.4f} | {'all' if r['exact'] else r['points']} |"
        )
    print(
        f"\nspeed-up over scikit-learn: {ratio['speed-up']}x; trustworthiness difference "
        f"{ratio['trustworthiness difference']:+.4f}"
    )


if __name__ == "__main__":
    main()
