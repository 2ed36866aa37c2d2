"""Benchmark of the SOM engines on the full Fashion-MNIST training split (60,000 x 784),
50 x 50 maps, side by side: MiniSom with the original tutorial's settings, MiniSom's online
training for one epoch (timed on a prefix of the steps and extrapolated, as a full epoch takes
minutes), XPySom's batch map (when installed) and the toolkit's batch engine.

Every row is scored the same way: QE and TE on the 60,000 training images, and the test
accuracy of the neuron-majority classifier (each neuron votes the majority training label of
the samples it wins) on the 10,000 test images. Run it alone on the machine:

    .venv/bin/python benchmarks/som.py --data ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from fmnist_cluster.artefacts import keep_freed_memory
from fmnist_cluster.data import load_idx_folder
from fmnist_cluster.som import (
    BatchSOM,
    MiniSomEngine,
    SomGrid,
    best_units,
    majority_accuracy,
    neuron_classes,
    neuron_labels,
)

# the toolkit's batch engine: exact winner search every epoch, or a principal-subspace search
# in all but the last 2 epochs (train.search_dims), whose 8 best units are re-ranked exactly in
# the last 2 (train.exact_candidates); low final sigma for a small QE, high for a small TE
OURS = {
    "configs/som.yaml": {"sigma": 4.5, "sigma_end": 0.665, "epochs": 13, "search_dims": 64, "exact_candidates": 8},
    "configs/som-lowte.yaml": {"sigma": 6.0, "sigma_end": 3.8, "epochs": 10, "search_dims": 64, "exact_candidates": 8},
    "configs/som-classify.yaml": {
        "sigma": 4.5,
        "sigma_end": 0.4,
        "epochs": 20,
        "search_dims": 64,
        "exact_candidates": 8,
    },
    "A1 exact": {"sigma": 4.0, "sigma_end": 0.55, "epochs": 6},
    "A2 pca64": {"sigma": 5.0, "sigma_end": 0.55, "epochs": 10, "search_dims": 64},
}


def score(weights: np.ndarray, grid: SomGrid, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> dict:
    bmu, bmu2, dist = best_units(weights, x)
    _, dominant, _ = neuron_classes(bmu, y, grid.n_neurons, 10)
    labels = neuron_labels(weights, dominant)
    tb = best_units(weights, xt, second=False)[0]
    return {
        "qe": float(dist.mean()),
        "te": float(1 - grid.are_neighbours(bmu, bmu2).mean()),
        "test_accuracy": majority_accuracy(labels, tb, yt),
    }


def main() -> None:
    keep_freed_memory()  # the allocator setting the command line makes, so timings match train-som
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fashion-mnist"), help="IDX folder")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-som/som.json"), help="JSON results")
    parser.add_argument("--minisom-steps", type=int, default=3000, help="timed steps of the 1-epoch MiniSom run")
    parser.add_argument("--full-minisom-epoch", action="store_true", help="run MiniSom's epoch fully (minutes)")
    parser.add_argument("--skip-xpysom", action="store_true")
    args = parser.parse_args()

    ds = load_idx_folder(args.data)
    x = ds.x_train.reshape(len(ds.x_train), -1)
    xt = ds.x_test.reshape(len(ds.x_test), -1)
    y, yt = ds.y_train, ds.y_test
    rows = []

    def add(name: str, seconds: float, weights: np.ndarray, grid: SomGrid, note: str = "") -> None:
        row = {"engine": name, "train_s": round(seconds, 2), **score(weights, grid, x, y, xt, yt), "note": note}
        rows.append(row)
        print(json.dumps(row), flush=True)

    # MiniSom, tutorial settings: sigma 0.5, learning rate 0.4, random samples as weights, 1,000 random steps
    m = MiniSomEngine(
        rows=50, cols=50, sigma=0.5, learning_rate=0.4, init="random", order="random", steps=1000, random_state=0
    )
    m.fit(x)
    add("MiniSom, tutorial settings (1,000 steps)", m.train_seconds_, m.weights_, m.grid_)

    # MiniSom train_random for one epoch, sigma 12.5, PCA init
    m = MiniSomEngine(
        rows=50, cols=50, sigma=12.5, learning_rate=0.5, init="pca", order="random", epochs=1.0, random_state=0
    )
    if args.full_minisom_epoch:
        m.fit(x)
        add("MiniSom train_random, 1 epoch, sigma 12.5, PCA init", m.train_seconds_, m.weights_, m.grid_)
        minisom_epoch_s = m.train_seconds_
    else:
        # time the initialisation and the first steps of the epoch, then extrapolate
        t0 = time.perf_counter()
        steps = m.iter_fit(x)
        next(steps)  # the initialisation
        init_seconds = time.perf_counter() - t0
        done = next(s.done for s in steps if s.done >= args.minisom_steps)
        per_step = (time.perf_counter() - t0 - init_seconds) / done
        steps.close()
        minisom_epoch_s = init_seconds + per_step * len(x)
        rows.append(
            {
                "engine": "MiniSom train_random, 1 epoch, sigma 12.5, PCA init",
                "train_s": round(init_seconds + per_step * len(x), 1),
                "qe": None,
                "te": None,
                "test_accuracy": None,
                "note": f"time extrapolated from {done} timed steps; errors need the full run",
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    if not args.skip_xpysom:
        try:
            from xpysom import XPySom
        except ImportError:
            print("xpysom not installed: skipped (pip install xpysom)")
        else:
            som = XPySom(50, 50, x.shape[1], random_seed=0)
            t0 = time.perf_counter()
            som.train(x, 10)
            seconds = time.perf_counter() - t0
            add("XPySom (batch, NumPy), 10 epochs", seconds, som.get_weights().reshape(-1, x.shape[1]), SomGrid(50, 50))

    for name, kw in OURS.items():
        som = BatchSOM(rows=50, cols=50, device="cpu", random_state=0, **kw).fit(x)
        desc = ", ".join(f"{k} {v}" for k, v in kw.items())
        add(f"fmnist-cluster {name}: {desc}", som.train_seconds_, som.weights_, som.grid_)
        rows[-1]["x_minisom_epoch"] = round(minisom_epoch_s / som.train_seconds_, 1)  # the anchor, this run
        print(f"  {rows[-1]['x_minisom_epoch']}x faster than one MiniSom epoch ({minisom_epoch_s:.1f} s)", flush=True)

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "peak_rss_gb": round(peak_gb, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print("\n| engine | train wall | x one MiniSom epoch | QE | TE | neuron-majority test accuracy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        f = lambda v, p: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
        speed, acc = f(r.get("x_minisom_epoch"), 1), f(r["test_accuracy"], 3)
        print(f"| {r['engine']} | {r['train_s']} s | {speed} | {f(r['qe'], 4)} | {f(r['te'], 4)} | {acc} |")
    print(f"\npeak memory (max RSS of the whole run): {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
