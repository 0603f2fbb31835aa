"""train.kmeans_torch: spherical k-means in torch (the GPU path of the cluster correction),
against known partitions, against faiss, and through cluster_assignments' backend choice."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import train.kmeans_torch as kmeans_torch
from train.clustering import cluster_assignments, pick_backend
from train.kmeans_torch import spherical_kmeans


def unit(x: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.from_numpy(x.astype(np.float32)), dim=1)


def blobs(seed: int, k: int = 5, per_blob: int = 30, dim: int = 16) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """k tight blobs around orthogonal directions, shuffled -> (features, blob id)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(k), per_blob)
    x = np.eye(dim)[truth] + 0.05 * rng.standard_normal((len(truth), dim))
    order = rng.permutation(len(truth))
    return x[order], truth[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])).all())


def mean_cosine(x: np.ndarray, ids: np.ndarray) -> float:
    """The spherical k-means objective: mean cosine of each item to its cluster's mean
    direction."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    total = 0.0
    for c in np.unique(ids):
        members = x[ids == c]
        centre = members.sum(0)
        total += float((members @ (centre / np.linalg.norm(centre))).sum())
    return total / len(x)


@pytest.mark.parametrize("seed", range(8))
def test_finds_well_separated_blobs_for_every_seed(seed):
    # restarts and the re-seeding of emptied clusters find all five blobs, where a single
    # random start merges two of them for some seeds
    x, truth = blobs(seed)
    ids = spherical_kmeans(unit(x), 5, seed=seed).numpy()
    assert ids.dtype == np.int64 and ids.shape == (150,)
    assert same_partition(ids, truth)


def test_deterministic_for_a_seed():
    x = unit(np.random.default_rng(3).standard_normal((300, 8)))
    assert torch.equal(spherical_kmeans(x, 7, seed=4), spherical_kmeans(x.clone(), 7, seed=4))


def test_emptied_clusters_are_reseeded():
    # 20 copies of one point and two outliers: a start on three copies empties two clusters
    x = unit(np.array([[1.0, 0.0, 0.0]] * 20 + [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    for seed in range(10):
        ids = spherical_kmeans(x, 3, iterations=5, seed=seed, redo=1)
        assert sorted(torch.bincount(ids, minlength=3).tolist()) == [1, 1, 20], seed


def test_chunked_similarities_give_the_same_clusters(monkeypatch):
    x = unit(np.random.default_rng(5).standard_normal((500, 12)))
    whole = spherical_kmeans(x, 9, seed=1)
    monkeypatch.setattr(kmeans_torch, "CHUNK", 37)
    assert torch.equal(spherical_kmeans(x, 9, seed=1), whole)


@pytest.mark.parametrize("k", [0, 11])
def test_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match="clusters"):
        spherical_kmeans(unit(np.ones((10, 3))), k)


def test_matches_faiss_on_blobs_and_its_objective_on_noise():
    pytest.importorskip("faiss")
    x, truth = blobs(1)
    for backend in ("faiss", "torch"):
        assert same_partition(cluster_assignments(x, (5,), seed=1, backend=backend)[:, 0], truth)
    # structureless data: no partition to find; the objective reached is what can be compared
    noise = np.random.default_rng(2).standard_normal((3000, 32)).astype(np.float32)
    ours, theirs = (cluster_assignments(noise, (16,), seed=0, backend=b)[:, 0]
                    for b in ("torch", "faiss"))
    assert abs(mean_cosine(noise, ours) / mean_cosine(noise, theirs) - 1) < 0.02


def test_cluster_assignments_torch_backend_per_k():
    x = np.random.default_rng(6).standard_normal((200, 8)).astype(np.float32) * 3
    ids = cluster_assignments(x, (3, 6), seed=10, backend="torch")
    assert ids.shape == (200, 2) and ids.dtype == np.int64
    for j, k in enumerate((3, 6)):  # seed + j per k, on the L2-normalised features
        assert np.array_equal(ids[:, j], spherical_kmeans(unit(x), k, seed=10 + j).numpy())


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown k-means backend 'sklearn'"):
        cluster_assignments(np.ones((4, 2)), (2,), backend="sklearn")


def test_pick_backend(monkeypatch):
    assert pick_backend("cuda") == "torch" and pick_backend("cuda:1") == "torch"
    try:
        import faiss  # noqa: F401
        assert pick_backend("cpu") == "faiss"
    except ImportError:
        assert pick_backend("cpu") == "torch"
    monkeypatch.setitem(sys.modules, "faiss", None)  # faiss not installed
    assert pick_backend("cpu") == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_runs_on_the_gpu():
    x, truth = blobs(2)
    ids = spherical_kmeans(unit(x).cuda(), 5, seed=2)
    assert ids.is_cuda and same_partition(ids.cpu().numpy(), truth)
    assert np.array_equal(cluster_assignments(x, (5,), seed=2, backend="torch", device="cuda"),
                          ids.cpu().numpy()[:, None])
