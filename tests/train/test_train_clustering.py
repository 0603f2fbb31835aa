"""train.clustering: faiss spherical k-means on tiny blobs, purity and PairTally closed forms,
and ClusterConfig's schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from train.clustering import ClusterConfig, PairTally, cluster_assignments, cluster_purity

pytest.importorskip("faiss")


def blobs(seed: int = 0, per_blob: int = 20, dim: int = 8,
          spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """3 tight gaussian blobs around orthogonal directions on the unit sphere, shuffled,
    with varied norms (spherical k-means must ignore them). Returns (features, blob id)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:3]
    truth = np.repeat(np.arange(3), per_blob)
    x = centres[truth] + spread * rng.standard_normal((len(truth), dim)).astype(np.float32)
    x *= rng.uniform(0.5, 5.0, size=(len(truth), 1)).astype(np.float32)
    order = rng.permutation(len(truth))
    return x[order], truth[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labellings split the items identically (up to renaming)."""
    return bool(((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])).all())


# faiss starts k-means from k random points; a single start can merge two blobs and split
# another, but with the three restarts used (nredo=3) every seed of 0..39 found them (checked
# with faiss-cpu 1.15.1), including those a single start misses.
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 12])
def test_finds_well_separated_blobs(seed):
    x, truth = blobs(seed)
    ids = cluster_assignments(x, ks=(3,), seed=seed)
    assert ids.shape == (60, 1)
    assert same_partition(ids[:, 0], truth)
    assert cluster_purity(ids[:, 0], truth) == 1.0


def test_several_ks_shape_dtype_and_range():
    x, truth = blobs(2)
    ids = cluster_assignments(x, ks=(2, 3), seed=0, iterations=10)
    assert ids.shape == (60, 2)
    assert ids.dtype == np.int64
    assert ids[:, 0].min() >= 0 and ids[:, 0].max() <= 1
    assert ids[:, 1].min() >= 0 and ids[:, 1].max() <= 2
    assert same_partition(ids[:, 1], truth)
    # k = 2 merges two blobs: each blob stays whole inside one cluster.
    for blob in range(3):
        assert len(np.unique(ids[truth == blob, 0])) == 1


def test_deterministic_for_a_seed():
    x = np.random.default_rng(3).standard_normal((40, 6)).astype(np.float32)
    a = cluster_assignments(x, ks=(4, 5), seed=7)
    b = cluster_assignments(x.copy(), ks=(4, 5), seed=7)
    assert np.array_equal(a, b)


def test_accepts_float64_and_non_contiguous_input():
    x, truth = blobs(4)
    wide = np.zeros((60, 16), dtype=np.float64)
    wide[:, ::2] = x
    ids = cluster_assignments(wide[:, ::2], ks=(3,), seed=0)
    assert same_partition(ids[:, 0], truth)


def test_k_equal_n_and_k_one():
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    assert (cluster_assignments(x, ks=(1,))[:, 0] == 0).all()
    assert cluster_assignments(x, ks=(6,)).shape == (6, 1)


@pytest.mark.parametrize("k", [0, 7, 100])
def test_rejects_k_out_of_range(k):
    x = np.random.default_rng(6).standard_normal((6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="clusters"):
        cluster_assignments(x, ks=(k,))


@pytest.mark.parametrize("shape", [(0, 8), (8,)])
def test_rejects_empty_or_one_dimensional_input(shape):
    with pytest.raises(ValueError, match="expected features"):
        cluster_assignments(np.zeros(shape, dtype=np.float32), ks=(1,))


# --- purity -----------------------------------------------------------------------------------


def test_purity_perfect_even_with_renamed_clusters():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_purity(np.array([5, 5, 3, 3, 0, 0]), labels) == 1.0


def test_purity_hand_computed_mixed_case():
    # cluster 0: labels 0, 0, 1 -> majority 2; cluster 1: labels 1, 2, 2, 2 -> 3;
    # cluster 2: label 0 -> 1. (2 + 3 + 1) / 8.
    assign = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    assert cluster_purity(assign, labels) == pytest.approx(6 / 8)


def test_purity_ignores_unlabelled():
    assign = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([0, -1, 1, -1, 2, 2])
    # cluster 0: labelled 0, 1 -> 1; cluster 1: labelled 2, 2 -> 2. 3 / 4.
    assert cluster_purity(assign, labels) == pytest.approx(3 / 4)


def test_purity_nan_when_nothing_labelled():
    assert math.isnan(cluster_purity(np.array([0, 1, 2]), np.array([-1, -1, -1])))
    assert math.isnan(cluster_purity(np.array([], dtype=np.int64), np.array([], dtype=np.int64)))


# --- PairTally --------------------------------------------------------------------------------


def test_pair_tally_three_images():
    # Images 0 and 1 share a cluster (one image pair, both orders in the mask).
    pairs = np.zeros((3, 3), dtype=bool)
    pairs[0, 1] = pairs[1, 0] = True
    tally = PairTally()
    tally.add(pairs, np.array([4, 4, 2]))
    assert tally.negatives == 6 * 4  # 2B (2B - 2)
    assert tally.removed == 4 * 2  # 4 view pairs per ordered image pair
    assert tally.removed_labelled == 2
    assert tally.removed_same_class == 2
    summary = tally.summary()
    assert summary["pairs_removed_fraction"] == pytest.approx(8 / 24)
    assert summary["removed_pairs_same_class"] == 1.0

    # A second batch: all three in one cluster, image 1 of another class, image 2 unlabelled.
    tally.add(~np.eye(3, dtype=bool), np.array([0, 1, -1]))
    assert tally.negatives == 48
    assert tally.removed == 8 + 4 * 6
    assert tally.removed_labelled == 2 + 2  # only (0, 1) and (1, 0) are labelled on both sides
    assert tally.removed_same_class == 2 + 0
    summary = tally.summary()
    assert summary["pairs_removed_fraction"] == pytest.approx(32 / 48)
    assert summary["removed_pairs_same_class"] == pytest.approx(2 / 4)


def test_pair_tally_empty_and_unlabelled():
    summary = PairTally().summary()
    assert summary["pairs_removed_fraction"] == 0.0
    assert math.isnan(summary["removed_pairs_same_class"])
    tally = PairTally()
    tally.add(~np.eye(2, dtype=bool), np.array([-1, -1]))
    assert tally.summary()["pairs_removed_fraction"] == pytest.approx(8 / 8)
    assert math.isnan(tally.summary()["removed_pairs_same_class"])


def test_pair_tally_accepts_cluster_pair_mask_output():
    torch = pytest.importorskip("torch")
    from train.losses import cluster_pair_mask

    mask = cluster_pair_mask(torch.tensor([[0], [0], [1]]), "eliminate").numpy()
    tally = PairTally()
    tally.add(mask, np.array([0, 1, 1]))
    assert tally.removed == 8
    assert tally.summary()["removed_pairs_same_class"] == 0.0


# --- schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("warmup", "every", "due_epochs"), [
    (0, 1, [0, 1, 2, 3, 4, 5, 6]),
    (1, 1, [1, 2, 3, 4, 5, 6]),
    (2, 3, [2, 5]),
    (0, 2, [0, 2, 4, 6]),
    (5, 1, [5, 6]),
    (10, 1, []),
])
def test_cluster_config_due(warmup, every, due_epochs):
    cfg = ClusterConfig(warmup_epochs=warmup, every_epochs=every)
    assert [e for e in range(7) if cfg.due(e)] == due_epochs


def test_cluster_config_defaults():
    cfg = ClusterConfig()
    assert cfg.mode == "eliminate" and cfg.ks == (64,)
    assert not cfg.due(0) and cfg.due(1)
