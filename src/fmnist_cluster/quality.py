"""How well a 2-D embedding keeps the neighbourhoods of the features it was made from.

* Trustworthiness (Venna and Kaski; ``sklearn.manifold.trustworthiness``): penalises points
  that are among a point's ``k`` nearest neighbours in the embedding but not in the feature
  space, by how far down the feature-space ranking they are. 1 is perfect.
* k-NN preservation: the share of each point's ``k`` nearest neighbours in the feature space
  that are also among its ``k`` nearest neighbours in the embedding, averaged. 1 is perfect.

Both are averages over points of a per-point term that needs that point's distances to all
points. On up to ``points`` rows this is exact; beyond that the average is taken over a seeded
sample of ``points`` query rows, each still ranked against every row (an unbiased estimate of
the exact value, not the value of a smaller data set).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fmnist_cluster.cluster.estimators import sample_rows

CHUNK = 256


def neighbourhood_scores(
    x: np.ndarray, embedding: np.ndarray, k: int = 10, points: int | None = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Trustworthiness and k-NN preservation of ``embedding`` (N, 2) with respect to ``x`` (N, D).

    Parameters
    ----------
    x : ndarray of shape (N, D)
    embedding : ndarray of shape (N, 2)
    k : int
        Neighbours considered (``1 <= k < N / 2``).
    points : int or None
        Query rows: all rows when N is at most this (or None), else a seeded sample of this many.
    seed : int

    Returns
    -------
    dict
        ``trustworthiness``, ``knn_preservation``, ``k``, ``points`` (query rows used) and
        ``exact`` (True when every row was a query row).
    """
    import torch
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    if not 1 <= k < n / 2:
        raise ValueError(f"k must be between 1 and {int(np.ceil(n / 2)) - 1} for {n} rows, got {k}")
    queries = np.arange(n) if points is None else sample_rows(n, points, seed)
    emb_nn = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    emb_idx = _without_self(emb_nn.kneighbors(embedding[queries], return_distance=False), queries, k)
    penalty, kept = 0.0, 0
    for start, d in _squared_distances(x, queries):
        orig = torch.topk(d, k, dim=1, largest=False).indices
        emb = torch.from_numpy(emb_idx[start : start + CHUNK])
        kept += int((emb[:, :, None] == orig[:, None, :]).any(2).sum())
        d_emb = torch.gather(d, 1, emb)
        ranks = (d[:, None, :] < d_emb[:, :, None]).sum(2) + 1  # 1 = nearest in feature space
        penalty += float(torch.clamp(ranks - k, min=0).sum())
    m = len(queries)
    trust = 1.0 - 2.0 * penalty / (m * k * (2.0 * n - 3.0 * k - 1.0))
    return {
        "trustworthiness": round(trust, 6),
        "knn_preservation": round(kept / (m * k), 6),
        "k": k,
        "points": m,
        "exact": m == n,
    }


def exact_neighbours(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row of ``x`` (exact, Euclidean): indices and
    distances, both (N, k), nearest first."""
    import torch

    idx = np.empty((len(x), k), dtype=np.int64)
    dist = np.empty((len(x), k), dtype=np.float32)
    for start, d in _squared_distances(x, np.arange(len(x))):
        near = torch.topk(d, k, dim=1, largest=False)
        idx[start : start + len(d)] = near.indices.numpy()
        dist[start : start + len(d)] = near.values.clamp_(min=0).sqrt_().numpy()
    return idx, dist


def _squared_distances(x: np.ndarray, queries: np.ndarray) -> Iterator[tuple[int, Any]]:
    """(offset, squared distances of a chunk of ``queries`` rows to every row), each row's
    distance to itself set to infinity."""
    import torch

    feats = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (feats * feats).sum(1)
    for start in range(0, len(queries), CHUNK):
        rows = torch.from_numpy(queries[start : start + CHUNK])
        d = sq[rows, None] + sq[None, :] - 2.0 * feats[rows] @ feats.T
        d[torch.arange(len(rows)), rows] = torch.inf
        yield start, d


def _without_self(idx: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` neighbours of each query row, leaving the row itself out (wherever it is listed)."""
    out = np.empty((len(idx), k), dtype=np.int64)
    for i, (row, q) in enumerate(zip(idx, queries, strict=True)):
        others = row[row != q]
        out[i] = others[:k]
    return out
