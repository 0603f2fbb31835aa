"""train.losses.nt_xent against a slow loop-based reference and closed-form cases."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses import cluster_pair_mask, nt_xent


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Per anchor i of the 2B: -log(exp(s_ip / T) / sum_{k != i} exp(s_ik / T)), then the mean."""
    z = torch.cat([z1, z2]).double()
    z = [row / row.norm() for row in z]
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        denom = 0.0
        for k in range(n):
            if k != i:
                denom += math.exp(float(z[i] @ z[k]) / temperature)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / temperature) / denom)
    return total / n


@pytest.mark.parametrize(("b", "d", "temperature", "seed"),
                         [(2, 3, 0.2, 0), (5, 8, 0.5, 1), (8, 16, 0.1, 2), (3, 2, 1.0, 3)])
def test_matches_loop_reference(b, d, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    got = nt_xent(z1, z2, temperature)
    assert got.ndim == 0
    assert got.item() == pytest.approx(nt_xent_reference(z1, z2, temperature), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_single_pair_has_no_negatives_so_loss_is_zero(seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(1, 4, generator=g), torch.randn(1, 4, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(0.0, abs=1e-6)
    assert nt_xent(z1, z1.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_closed_form_identical_views_of_orthogonal_images():
    t = 0.2
    e = torch.eye(2)
    # Each anchor: positive at similarity 1, two negatives at similarity 0.
    expected = math.log(1 + 2 * math.exp(-1 / t))
    assert nt_xent(e, e.clone(), t).item() == pytest.approx(expected, rel=1e-5)


def test_closed_form_all_orthogonal_is_log_three():
    e = torch.eye(4)
    # B = 2, all four embeddings orthogonal: softmax over three equal logits.
    assert nt_xent(e[:2], e[2:], 0.3).item() == pytest.approx(math.log(3), rel=1e-6)


def test_closed_form_opposite_images():
    t = 0.5
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    # Positive at similarity 1, two negatives at -1.
    expected = math.log(1 + 2 * math.exp(-2 / t))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5)


def test_invariant_to_embedding_scale():
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    base = nt_xent(z1, z2)
    scale = torch.rand(6, 1, generator=g) * 10 + 0.1
    assert nt_xent(z1 * scale, z2 * 3.0).item() == pytest.approx(base.item(), rel=1e-5)


def test_symmetric_in_views_and_invariant_to_batch_order():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    base = nt_xent(z1, z2).item()
    assert nt_xent(z2, z1).item() == pytest.approx(base, rel=1e-5)
    perm = torch.randperm(7, generator=g)
    assert nt_xent(z1[perm], z2[perm]).item() == pytest.approx(base, rel=1e-5)


def test_lower_when_positives_agree():
    g = torch.Generator().manual_seed(6)
    z1 = torch.randn(8, 16, generator=g)
    close = nt_xent(z1, z1 + 0.01 * torch.randn(8, 16, generator=g))
    far = nt_xent(z1, torch.randn(8, 16, generator=g))
    assert close < far


def test_gradient_is_finite_and_nonzero():
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(4, 8, generator=g, requires_grad=True)
    z2 = torch.randn(4, 8, generator=g, requires_grad=True)
    nt_xent(z1, z2).backward()
    for grad in (z1.grad, z2.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_half_precision_inputs_are_computed_in_float32():
    g = torch.Generator().manual_seed(8)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    got = nt_xent(z1.half(), z2.half())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-2)


@pytest.mark.parametrize(("s1", "s2"), [((4, 8), (4, 7)), ((4, 8), (3, 8)), ((8,), (8,)),
                                        ((2, 4, 8), (2, 4, 8))])
def test_shape_errors_raise_value_error(s1, s2):
    with pytest.raises(ValueError, match="expected two"):
        nt_xent(torch.randn(*s1), torch.randn(*s2))


# --- cluster-corrected loss (false-negative elimination / attraction) ------------------------


def nt_xent_cluster_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
                              cluster_ids: torch.Tensor, mode: str) -> float:
    """Loop reference. Images a != b are "same cluster" when they share an id under any
    (eliminate) or every (attract) clustering. eliminate: -log(exp(s_ip/T) / sum over k != i
    that are not views of a same-cluster other image); attract: the mean over positives P(i)
    (own other view, both views of same-cluster images) of -log(exp(s_ip/T) / sum_{k != i})."""
    z = torch.cat([z1, z2]).double()
    z = [row / row.norm() for row in z]
    n = len(z)
    b = n // 2
    ids = cluster_ids.reshape(b, -1).tolist()

    def same(a: int, c: int) -> bool:
        if a == c:
            return False
        hits = [x == y for x, y in zip(ids[a], ids[c], strict=True)]
        return any(hits) if mode == "eliminate" else all(hits)

    def s(i: int, k: int) -> float:
        return float(z[i] @ z[k]) / temperature

    total = 0.0
    for i in range(n):
        img = i % b
        pos = (i + b) % n
        if mode == "eliminate":
            denom = sum(math.exp(s(i, k)) for k in range(n) if k != i and not same(img, k % b))
            total += -math.log(math.exp(s(i, pos)) / denom)
        else:
            denom = sum(math.exp(s(i, k)) for k in range(n) if k != i)
            positives = [pos] + [k for k in range(n) if k != i and same(img, k % b)]
            total += sum(-math.log(math.exp(s(i, p)) / denom) for p in positives) / len(positives)
    return total / n


CLUSTER_CASES = [
    # (b, d, temperature, seed, cluster ids rows)
    (2, 3, 0.2, 0, [[0], [0]]),
    (4, 5, 0.5, 1, [[0], [1], [0], [2]]),
    (6, 8, 0.1, 2, [[1], [1], [1], [0], [0], [3]]),
    (3, 2, 1.0, 3, [[7], [8], [9]]),
    # M = 2: pairs (0, 1) share a cluster under both, (0, 2) and (3, 4) under one only, so
    # "any" (eliminate) and "all" (attract) pick different pairs.
    (5, 6, 0.3, 4, [[0, 0], [0, 0], [0, 1], [1, 2], [2, 2]]),
    (6, 4, 0.2, 5, [[0, 5], [1, 5], [0, 6], [1, 6], [2, 7], [2, 7]]),
]


@pytest.mark.parametrize("mode", ["eliminate", "attract"])
@pytest.mark.parametrize(("b", "d", "temperature", "seed", "ids"), CLUSTER_CASES)
def test_cluster_loss_matches_loop_reference(b, d, temperature, seed, ids, mode):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    cluster_ids = torch.tensor(ids, dtype=torch.int64)
    got = nt_xent(z1, z2, temperature, cluster_ids=cluster_ids, mode=mode)
    assert got.ndim == 0
    expected = nt_xent_cluster_reference(z1, z2, temperature, cluster_ids, mode)
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_m2_eliminate_uses_any_and_attract_uses_all():
    """In the M = 2 case, "any" pairs are {0, 1, 2} x {3, 4} clusters and the "all" pair is
    (0, 1) alone: each mode equals its one-clustering equivalent, and not the other's."""
    b, d, temperature, seed, ids = CLUSTER_CASES[4]
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    cluster_ids = torch.tensor(ids)
    as_any = torch.tensor([[0], [0], [0], [1], [1]])
    as_all = torch.tensor([[0], [0], [1], [2], [3]])
    for mode, right, wrong in (("eliminate", as_any, as_all), ("attract", as_all, as_any)):
        got = nt_xent(z1, z2, temperature, cluster_ids, mode).item()
        assert got == pytest.approx(nt_xent(z1, z2, temperature, right, mode).item(), rel=1e-6)
        assert got != pytest.approx(nt_xent(z1, z2, temperature, wrong, mode).item(), rel=1e-3)


@pytest.mark.parametrize("mode", ["eliminate", "attract"])
@pytest.mark.parametrize("m", [1, 3])
def test_all_distinct_clusters_give_the_plain_loss(mode, m):
    g = torch.Generator().manual_seed(10 + m)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    ids = torch.arange(6)[:, None].repeat(1, m) + 100 * torch.arange(m)[None, :]
    plain = nt_xent(z1, z2, 0.3).item()
    assert nt_xent(z1, z2, 0.3, ids, mode).item() == pytest.approx(plain, rel=1e-6)


def test_one_dimensional_cluster_ids_are_one_clustering():
    g = torch.Generator().manual_seed(11)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    ids = torch.tensor([0, 1, 0, 2])
    for mode in ("eliminate", "attract"):
        assert nt_xent(z1, z2, 0.2, ids, mode).item() == pytest.approx(
            nt_xent(z1, z2, 0.2, ids[:, None], mode).item(), rel=1e-6)


@pytest.mark.parametrize("b", [2, 5])
def test_eliminate_with_one_cluster_leaves_only_the_positive(b):
    g = torch.Generator().manual_seed(12)
    z1, z2 = torch.randn(b, 4, generator=g), torch.randn(b, 4, generator=g)
    ids = torch.zeros(b, 1, dtype=torch.int64)
    assert nt_xent(z1, z2, 0.2, ids, "eliminate").item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("b", [2, 4, 7])
def test_attract_with_identical_embeddings_in_one_cluster_is_log_2b_minus_1(b):
    z = torch.ones(b, 3)
    ids = torch.zeros(b, 2, dtype=torch.int64)
    got = nt_xent(z, z.clone(), 0.2, ids, "attract").item()
    assert got == pytest.approx(math.log(2 * b - 1), rel=1e-6)


def test_attract_closed_form_two_clusters_of_orthogonal_images():
    """B = 4, images 0, 1 share e0 and images 2, 3 share e1 (same in both views); clusters
    {0, 1}, {2, 3}. Each anchor: 3 positives at similarity 1, 4 negatives at 0."""
    t = 0.5
    e = torch.eye(2)
    z = e[[0, 0, 1, 1]]
    ids = torch.tensor([[0], [0], [1], [1]])
    expected = -math.log(math.exp(1 / t) / (3 * math.exp(1 / t) + 4))
    assert nt_xent(z, z.clone(), t, ids, "attract").item() == pytest.approx(expected, rel=1e-6)
    # eliminate: the two views of the other same-cluster image leave the denominator.
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 4))
    assert nt_xent(z, z.clone(), t, ids, "eliminate").item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["eliminate", "attract"])
@pytest.mark.parametrize("ids", [[[0], [1], [0], [1]], [[0], [0], [0], [0]]])
def test_cluster_loss_gradient_is_finite(mode, ids):
    g = torch.Generator().manual_seed(13)
    z1 = torch.randn(4, 8, generator=g, requires_grad=True)
    z2 = torch.randn(4, 8, generator=g, requires_grad=True)
    loss = nt_xent(z1, z2, 0.2, torch.tensor(ids), mode)
    loss.backward()
    assert torch.isfinite(loss)
    for grad in (z1.grad, z2.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
    if ids != [[0]] * 4 or mode == "attract":  # eliminate with one cluster has nothing to learn
        assert (z1.grad.abs().sum() + z2.grad.abs().sum()) > 0


@pytest.mark.parametrize("rows", [3, 5])
def test_wrong_cluster_id_rows_raise(rows):
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="rows"):
        nt_xent(z1, z2, 0.2, torch.zeros(rows, 1, dtype=torch.int64))


def test_bad_mode_raises():
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="cluster mode"):
        nt_xent(z1, z2, 0.2, torch.zeros(4, 1, dtype=torch.int64), mode="repel")
    with pytest.raises(ValueError, match="cluster mode"):
        cluster_pair_mask(torch.zeros(4, 1, dtype=torch.int64), "both")


def test_cluster_pair_mask_any_and_all():
    ids = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 2], [2, 2]])
    any_ = cluster_pair_mask(ids, "eliminate")
    all_ = cluster_pair_mask(ids, "attract")
    assert any_.dtype == torch.bool and any_.shape == (5, 5)
    expected_all = {(0, 1)}
    expected_any = {(0, 1), (0, 2), (1, 2), (3, 4)}
    for mask, expected in ((any_, expected_any), (all_, expected_all)):
        assert not mask.diagonal().any()
        assert torch.equal(mask, mask.t())
        got = {(i, j) for i, j in mask.nonzero().tolist() if i < j}
        assert got == expected


def test_cluster_pair_mask_diagonal_false_and_1d_input():
    ids = torch.zeros(3, dtype=torch.int64)
    for mode in ("eliminate", "attract"):
        mask = cluster_pair_mask(ids, mode)
        assert torch.equal(mask, ~torch.eye(3, dtype=torch.bool))
    assert not cluster_pair_mask(torch.arange(4)[:, None], "eliminate").any()
