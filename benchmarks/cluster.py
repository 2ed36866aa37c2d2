"""Benchmark of the mystery-label path after encoding: cluster (KMeans, DBSCAN with automatic
eps, HDBSCAN, agglomerative), decoding, embed (t-SNE time) and report, on a Twisted test set.

Run it on a quiet machine, on an encoding made by ``encode`` from a network trained on the
mystery labels, e.g.::

    .venv/bin/python benchmarks/cluster.py \\
        --encoding outputs/encoding --images outputs/data --originals outputs/originals \\
        --reference outputs/cnn-reference --mapping 0,1,0,1,2,3,2,3,4,3 --out /tmp/bench-cluster

``--mapping`` is the grouping the Twisted set was made with: the benchmark uses it only to
score the decoding afterwards (the toolkit never sees it). Prints a Markdown table and writes
``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from fmnist_cluster import FASHION_CLASSES
from fmnist_cluster.cluster import run_cluster
from fmnist_cluster.config import ClusterConfig, EmbedConfig, ReportConfig
from fmnist_cluster.embed import run_embed
from fmnist_cluster.report import run_report


def decoding_correct(decoding: dict, mapping: np.ndarray, key: str | None = None) -> tuple[bool, list[str]]:
    """Whether every label's members are exactly the classes the mapping puts in it."""
    entries = decoding["labels"] if key is None else decoding[key]["labels"]
    wrong = []
    for entry in entries:
        expected = {FASHION_CLASSES[c] for c in range(10) if mapping[c] == entry["label"]}
        if set(entry["members"]) != expected:
            wrong.append(f"label {entry['label']}: got {sorted(entry['members'])}, expected {sorted(expected)}")
    return not wrong, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoding", type=Path, required=True, help="encode output folder (Twisted images)")
    parser.add_argument("--images", type=Path, required=True, help="preprocess output folder of the Twisted images")
    parser.add_argument("--originals", type=Path, help="preprocess output folder of the original data")
    parser.add_argument("--reference", type=Path, help="train-cnn folder of a 10-class model")
    parser.add_argument("--mapping", required=True, help="the grouping used to make the Twisted set (for scoring)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-cluster"))
    args = parser.parse_args()
    mapping = np.array([int(v) for v in args.mapping.split(",")])
    results: dict = {"machine": f"{platform.machine()}, {platform.python_version()}", "mapping": mapping.tolist()}
    rows = []

    variants = {
        "default (k auto)": ClusterConfig(),
        "k = labels": ClusterConfig.model_validate({"kmeans": {"k": "labels"}}),
        "standardize + PCA 10": ClusterConfig.model_validate({"reduce": {"standardize": True, "pca_components": 10}}),
        "normalize + PCA 10": ClusterConfig.model_validate({"reduce": {"normalize": True, "pca_components": 10}}),
        "normalize + PCA 10, min_samples 300": ClusterConfig.model_validate(
            {"reduce": {"normalize": True, "pca_components": 10}, "dbscan": {"min_samples": 300}}
        ),
    }
    for name, cfg in variants.items():
        decode = name.startswith("default")
        start = time.perf_counter()
        run_cluster(
            cfg,
            args.encoding,
            args.out / f"cluster-{len(rows)}",
            images_dir=args.images,
            originals_dir=args.originals if decode else None,
            reference_dir=args.reference if decode else None,
        )
        seconds = time.perf_counter() - start
        metrics = json.loads((args.out / f"cluster-{len(rows)}" / "metrics.json").read_text())
        algos = metrics["algorithms"]
        row = {
            "variant": name,
            "seconds": round(seconds, 1),
            "n": metrics["n"],
            "dims": metrics["reduce"]["dims"],
            **{
                f"{a}_{k}": algos[a].get(k)
                for a in algos
                for k in ("n_clusters", "ari", "nmi", "purity", "noise_share", "eps", "min_samples")
            },
        }
        if decode and (args.out / "cluster-0" / "decoding.json").is_file():
            decoding = json.loads((args.out / "cluster-0" / "decoding.json").read_text())
            ok, wrong = decoding_correct(decoding, mapping)
            row["decoding_method"] = decoding["method"]
            row["decoding_correct"] = ok
            row["decoding_wrong"] = wrong
            row["decoding_lines"] = [e["summary"] for e in decoding["labels"]]
            if "reference" in decoding:
                ok_ref, wrong_ref = decoding_correct(decoding, mapping, "reference")
                row["reference_only_correct"] = ok_ref
                row["reference_only_wrong"] = wrong_ref
                row["reference_agreement"] = decoding["reference"].get("agreement_with_content")
                row["reference_lines"] = [e["summary"] for e in decoding["reference"]["labels"]]
        rows.append(row)
    results["cluster"] = rows

    start = time.perf_counter()
    embed_summary = run_embed(EmbedConfig(), args.encoding, args.out / "embed")
    results["embed"] = {"seconds_total": round(time.perf_counter() - start, 1), **embed_summary}

    start = time.perf_counter()
    report_summary = run_report(
        ReportConfig(), [args.images, args.encoding, args.out / "cluster-0", args.out / "embed"], args.out / "report"
    )
    results["report"] = {"seconds": round(time.perf_counter() - start, 1), **report_summary}

    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(
        "| variant | dims | KMeans k | KMeans ARI | DBSCAN eps | min_samples | DBSCAN clusters | DBSCAN ARI | noise "
        "| HDBSCAN ARI | HDBSCAN noise | agglomerative ARI | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['dims']} | {r.get('kmeans_n_clusters')} | {r.get('kmeans_ari', 0):.3f} "
            f"| {r.get('dbscan_eps', 0):.3g} | {r.get('dbscan_min_samples')} | {r.get('dbscan_n_clusters')} "
            f"| {r.get('dbscan_ari', 0):.3f} | {r.get('dbscan_noise_share', 0):.1%} | {r.get('hdbscan_ari', 0):.3f} "
            f"| {r.get('hdbscan_noise_share', 0):.1%} | {r.get('agglomerative_ari', 0):.3f} | {r['seconds']} |"
        )
    first = rows[0]
    if "decoding_correct" in first:
        print(f"\ndecoding ({first['decoding_method']}): all labels exactly right = {first['decoding_correct']}")
        for line in first["decoding_lines"]:
            print(f"  {line}")
        if "reference_only_correct" in first:
            print(
                f"reference model alone: all labels exactly right = {first['reference_only_correct']}, "
                f"agreement with content {first['reference_agreement']}"
            )
            for line in first["reference_lines"]:
                print(f"  {line}")
            for line in first["reference_only_wrong"]:
                print(f"  WRONG {line}")
    print(f"\nembed: {results['embed']['seconds']} (s per method), total {results['embed']['seconds_total']} s")
    print(f"report: {results['report']['seconds']} s, {report_summary['n_figures']} figures")


if __name__ == "__main__":
    main()
