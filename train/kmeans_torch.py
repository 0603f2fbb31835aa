"""Spherical k-means in torch, for clustering on a GPU: a GPU run then neither clusters on
its host's CPU nor needs faiss installed. (Pretraining hands the features over in host memory,
a copy of tens of MB each way, small next to the k-means itself.)

Same algorithm as the faiss path of :func:`train.clustering.cluster_assignments`: random
distinct items as initial centroids, ``iterations`` rounds of assign-to-nearest (largest
cosine) and re-normalised means, ``redo`` restarts keeping the lowest-error one. An emptied
cluster is re-seeded with the item its centroid fits worst, so every cluster keeps members.
Sums use one-hot matrix products rather than scatter-adds, which are deterministic on CUDA.
"""

from __future__ import annotations

import torch

#: Rows per block of the (N, k) similarity matrix, bounding its memory for large pools.
CHUNK = 65536


def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row: x float (N, D), centroids float (k, D), both unit-norm
    -> ids int64 (N,) and cosine similarity float (N,)."""
    ids, sims = [], []
    for lo in range(0, len(x), CHUNK):
        best = (x[lo:lo + CHUNK] @ centroids.T).max(dim=1)
        sims.append(best.values)
        ids.append(best.indices)
    return torch.cat(ids), torch.cat(sims)


def _centroids(x: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of the rows of each cluster, float (k, D), and the counts int64 (k,)."""
    sums = x.new_zeros(k, x.shape[1])
    for lo in range(0, len(x), CHUNK):
        onehot = torch.nn.functional.one_hot(ids[lo:lo + CHUNK], k).to(x.dtype)
        sums += onehot.T @ x[lo:lo + CHUNK]
    return sums, torch.bincount(ids, minlength=k)


def spherical_kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0,
                     redo: int = 3) -> torch.Tensor:
    """Cluster ids int64 (N,) of unit-norm rows x float (N, D) into ``k`` clusters, on x's
    device. Deterministic for a given seed and device. Raises ValueError for k outside
    [1, N]."""
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} needs between 1 and {n} clusters")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    best_ids, best_score = None, -float("inf")
    for _ in range(max(1, redo)):
        start = torch.randperm(n, generator=gen, device=x.device)[:k]
        centroids = x[start].clone()
        for _ in range(iterations):
            ids, sims = assign(x, centroids)
            sums, counts = _centroids(x, ids, k)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):
                # the worst-fitted items (distinct) become the emptied clusters' centroids
                worst = torch.argsort(sims)[:len(empty)]
                sums[empty] = x[worst]
            centroids = torch.nn.functional.normalize(sums, dim=1)
        ids, sims = assign(x, centroids)
        score = float(sims.sum())
        if score > best_score:
            best_ids, best_score = ids, score
    assert best_ids is not None
    return best_ids
