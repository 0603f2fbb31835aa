"""k-means over embeddings for the false-negative correction, and its monitoring figures.

Everything here is a pure, no-grad function on numpy arrays: the trainer computes features of
un-augmented views, calls :func:`cluster_assignments`, and passes the ids into the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterConfig:
    """When and how to cluster. ``ks``: one clustering per k (several at once are allowed);
    the first clustering happens after ``warmup_epochs`` and is redone every ``every_epochs``."""

    mode: str = "eliminate"
    ks: tuple[int, ...] = (64,)
    warmup_epochs: int = 1
    every_epochs: int = 1
    iterations: int = 20

    def __post_init__(self) -> None:
        if self.every_epochs < 1 or self.warmup_epochs < 0 or not self.ks:
            raise ValueError(f"cluster settings need every_epochs >= 1, warmup_epochs >= 0 and "
                             f"at least one k: {self}")

    def due(self, epoch: int) -> bool:
        """Whether clusters are (re)computed at the start of ``epoch`` (0-based)."""
        return epoch >= self.warmup_epochs and (epoch - self.warmup_epochs) % self.every_epochs == 0


BACKENDS = ("faiss", "torch")


def pick_backend(device: str = "cpu") -> str:
    """The k-means backend for features computed on ``device`` ('cpu', 'cuda', 'cuda:1'):
    torch on a GPU (no faiss needed there); faiss on the CPU when it is installed (the faster
    one there), else torch."""
    if not str(device).startswith("cpu"):
        return "torch"
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "torch"
    return "faiss"


def cluster_assignments(features: np.ndarray, ks: Sequence[int], seed: int = 0,
                        iterations: int = 20, backend: str = "faiss",
                        device: str = "cpu") -> np.ndarray:
    """Spherical k-means of L2-normalised features float (N, D) for each k in ``ks``
    -> cluster ids int64 (N, len(ks)). Deterministic for a given seed, backend and device.
    ``backend``: 'faiss' (CPU) or 'torch' (:mod:`train.kmeans_torch`, run on ``device``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r} (choose from {BACKENDS})")
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"expected features (N, D) with N > 0, got shape {x.shape}")
    for k in ks:
        if not 1 <= k <= len(x):
            raise ValueError(f"k={k} needs between 1 and {len(x)} clusters")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if backend == "torch":
        return _torch_assignments(x, ks, seed, iterations, device)
    try:
        import faiss
    except ImportError as exc:
        raise RuntimeError("cluster correction on the CPU with faiss needs faiss: pip install "
                           "faiss-cpu (part of the [train] extra), or use the torch "
                           "backend") from exc
    out = np.empty((len(x), len(ks)), dtype=np.int64)
    for j, k in enumerate(ks):
        km = faiss.Kmeans(x.shape[1], int(k), niter=iterations, seed=seed + j, spherical=True,
                          nredo=3, min_points_per_centroid=1, max_points_per_centroid=100_000,
                          verbose=False)
        km.train(x)
        _, ids = km.index.search(x, 1)
        out[:, j] = ids[:, 0]
    return out


def _torch_assignments(x: np.ndarray, ks: Sequence[int], seed: int, iterations: int,
                       device: str) -> np.ndarray:
    import torch

    from train.kmeans_torch import spherical_kmeans

    t = torch.from_numpy(x).to(device)
    return np.stack([spherical_kmeans(t, int(k), iterations, seed + j).cpu().numpy()
                     for j, k in enumerate(ks)], axis=1).astype(np.int64)


def cluster_purity(assign: np.ndarray, labels: np.ndarray) -> float:
    """Share of labelled items (label >= 0) whose cluster's majority label is theirs.
    assign int (N,), labels int (N,) with -1 for unlabelled. NaN when nothing is labelled."""
    keep = labels >= 0
    if not keep.any():
        return float("nan")
    a, y = assign[keep], labels[keep]
    table = np.zeros((a.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (a, y), 1)
    return float(table.max(1).sum() / keep.sum())


@dataclass
class PairTally:
    """Running counts over an epoch of the pairs the correction touched (monitoring only)."""

    negatives: int = 0
    removed: int = 0
    removed_labelled: int = 0
    removed_same_class: int = 0

    def add(self, pairs: np.ndarray, labels: np.ndarray) -> None:
        """pairs bool (B, B) from ``cluster_pair_mask``; labels int (B,), -1 unlabelled."""
        b = len(labels)
        self.negatives += 2 * b * (2 * b - 2)
        self.removed += 4 * int(pairs.sum())  # each image pair stands for 4 view pairs
        both = (labels[:, None] >= 0) & (labels[None, :] >= 0) & pairs
        self.removed_labelled += int(both.sum())
        self.removed_same_class += int((both & (labels[:, None] == labels[None, :])).sum())

    def summary(self) -> dict[str, float]:
        """Removed share of negatives, and the share of labelled removed pairs that truly
        share a class (NaN where no labelled pair was touched)."""
        return {
            "pairs_removed_fraction": self.removed / self.negatives if self.negatives else 0.0,
            "removed_pairs_same_class": (self.removed_same_class / self.removed_labelled
                                         if self.removed_labelled else float("nan")),
        }
