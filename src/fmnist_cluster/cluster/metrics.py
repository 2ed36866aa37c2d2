"""Scores of a clustering: against labels (ARI, NMI, purity, contingency, ...) and alone
(silhouette, noise share, sizes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist_cluster.cluster.estimators import sample_rows


def contingency(y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """Counts of each (label, cluster) pair.

    Returns
    -------
    (ndarray, list, list)
        Table (n_labels, n_clusters), the label values (rows), the cluster values (columns;
        -1 is noise).
    """
    rows, y_idx = np.unique(y, return_inverse=True)
    cols, c_idx = np.unique(labels, return_inverse=True)
    table = np.zeros((len(rows), len(cols)), dtype=np.int64)
    np.add.at(table, (y_idx, c_idx), 1)
    return table, [int(v) for v in rows], [int(v) for v in cols]


def purity(y: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose cluster's majority label is their own (noise, -1, counts as one
    cluster)."""
    table, _, _ = contingency(y, labels)
    return float(table.max(axis=0).sum() / max(len(y), 1))


def majority_counts(y: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, int]]:
    """Per label, how many points sit in a cluster whose majority label is theirs (correct)
    and how many do not (incorrect, noise included)."""
    table, rows, cols = contingency(y, labels)
    majority = {c: rows[int(np.argmax(table[:, j]))] for j, c in enumerate(cols) if c >= 0}
    out: dict[str, dict[str, int]] = {}
    for i, label in enumerate(rows):
        correct = int(sum(table[i, j] for j, c in enumerate(cols) if c >= 0 and majority[c] == label))
        out[str(label)] = {"correct": correct, "incorrect": int(table[i].sum()) - correct}
    return out


def score_clustering(
    x: np.ndarray, labels: np.ndarray, y: np.ndarray | None = None, sample_size: int = 3000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of one clustering.

    Always: number of clusters, noise share, cluster sizes, silhouette (on a seeded sample,
    noise left out; None with fewer than 2 clusters). With labels ``y``: ARI, NMI,
    homogeneity, completeness, V-measure and purity on all points (noise counts as one
    cluster), ARI on the clustered points only, the contingency table and the
    correct/incorrect counts by majority label.
    """
    from sklearn import metrics as skm

    labels = np.asarray(labels)
    clustered = labels >= 0
    sizes = {str(int(c)): int(n) for c, n in zip(*np.unique(labels, return_counts=True), strict=True)}
    out: dict[str, Any] = {
        "n_clusters": len(np.unique(labels[clustered])),
        "noise_share": float(1.0 - clustered.mean()) if len(labels) else 0.0,
        "sizes": sizes,
        "largest_share": float(max(sizes.values()) / len(labels)) if len(labels) else 0.0,
    }
    rows = sample_rows(len(x), sample_size, seed)
    rows = rows[clustered[rows]]
    kept = labels[rows]
    n_kept = len(np.unique(kept))
    out["silhouette"] = float(skm.silhouette_score(x[rows], kept)) if 1 < n_kept < len(rows) else None
    if y is not None:
        h, c, v = skm.homogeneity_completeness_v_measure(y, labels)
        table, row_ids, col_ids = contingency(y, labels)
        out.update(
            {
                "ari": float(skm.adjusted_rand_score(y, labels)),
                "nmi": float(skm.normalized_mutual_info_score(y, labels)),
                "homogeneity": float(h),
                "completeness": float(c),
                "v_measure": float(v),
                "purity": purity(y, labels),
                "ari_clustered": float(skm.adjusted_rand_score(y[clustered], labels[clustered]))
                if clustered.any()
                else None,
                "contingency": {"labels": row_ids, "clusters": col_ids, "counts": table.tolist()},
                "majority": majority_counts(y, labels),
            }
        )
    return out
