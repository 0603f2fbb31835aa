"""train.pool: the per-epoch domain sampler, the --domains parser and PoolConfig.weights
(no data loading)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train.datasets.errors import DatasetError
from train.pool import DOMAINS, PoolConfig, epoch_indices, parse_domains


def domain_of(indices: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Domain index of each pool index (domains concatenated in order)."""
    return np.searchsorted(np.cumsum(sizes), indices, side="right")


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=4),
       raw=st.lists(st.floats(0.0, 5.0), min_size=4, max_size=4),
       n=st.integers(0, 200), seed=st.integers(0, 2**31), epoch=st.integers(0, 1000))
def test_epoch_indices_structure(sizes, raw, n, seed, epoch):
    weights = raw[: len(sizes)]
    live = [w for s, w in zip(sizes, weights, strict=True) if s > 0]
    if sum(live) <= 0:
        with pytest.raises(ValueError):
            epoch_indices(sizes, weights, n, seed, epoch)
        return
    out = epoch_indices(sizes, weights, n, seed, epoch)
    assert out.shape == (n,) and out.dtype == np.int64
    if not n:
        return
    assert out.min() >= 0 and out.max() < sum(sizes)
    dom = domain_of(out, sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for d, size in enumerate(sizes):
        drawn = out[dom == d]
        if size == 0 or weights[d] == 0:
            assert not len(drawn)
            continue
        # Drawn items cycle through a permutation: counts differ by at most one, and no item
        # repeats before every item of its domain has been drawn once.
        counts = np.bincount(drawn - offsets[d], minlength=size)
        assert counts.max() - counts.min() <= 1
        assert len(np.unique(drawn)) == min(len(drawn), size)


@pytest.mark.parametrize(("sizes", "weights"), [
    ([50, 30, 20], [0.5, 0.3, 0.2]),
    ([10, 1000], [3.0, 1.0]),  # weights need not sum to 1; a small domain cycles
    ([5, 5, 5], [1.0, 0.0, 1.0]),
])
def test_epoch_indices_follow_proportions(sizes, weights):
    n = 20_000
    out = epoch_indices(sizes, weights, n, seed=3, epoch=0)
    share = np.bincount(domain_of(out, sizes), minlength=len(sizes)) / n
    expected = np.asarray(weights) / np.sum(weights)
    # Binomial sd at n = 20 000 is at most 0.0036: 0.02 is over 5 sd.
    assert np.allclose(share, expected, atol=0.02)


def test_epoch_indices_pure_and_vary_with_epoch_and_seed():
    args = ([40, 25, 10], [0.2, 0.5, 0.3], 300)
    a = epoch_indices(*args, seed=1, epoch=4)
    assert np.array_equal(a, epoch_indices(*args, seed=1, epoch=4))
    assert not np.array_equal(a, epoch_indices(*args, seed=1, epoch=5))
    assert not np.array_equal(a, epoch_indices(*args, seed=2, epoch=4))


def test_epoch_indices_pure_for_array_and_list_arguments():
    a = epoch_indices([7, 9], [1, 1], 20, seed=0, epoch=0)
    b = epoch_indices(np.array([7, 9]), np.array([1.0, 1.0]), 20, seed=0, epoch=0)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("n", [1, 17, 100])
def test_single_domain_of_n_items_drawn_n_times_is_a_permutation(n):
    out = epoch_indices([n], [1.0], n, seed=5, epoch=2)
    assert sorted(out.tolist()) == list(range(n))


def test_single_domain_permutation_changes_between_epochs():
    a = epoch_indices([50], [1.0], 50, seed=5, epoch=0)
    b = epoch_indices([50], [1.0], 50, seed=5, epoch=1)
    assert sorted(a.tolist()) == sorted(b.tolist()) and not np.array_equal(a, b)


def test_small_domain_is_cycled():
    out = epoch_indices([3], [1.0], 10, seed=0, epoch=0)
    assert np.bincount(out, minlength=3).tolist() in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    # The first three draws are one full pass.
    assert sorted(out[:3].tolist()) == [0, 1, 2]


def test_zero_size_domain_with_weight_is_skipped():
    sizes = [0, 10, 0, 5]
    out = epoch_indices(sizes, [5.0, 1.0, 5.0, 1.0], 1000, seed=0, epoch=0)
    dom = domain_of(out, sizes)
    assert set(dom.tolist()) == {1, 3}
    assert abs((dom == 1).mean() - 0.5) < 0.08
    assert out.min() >= 0 and out.max() < 15


def test_zero_draws():
    assert epoch_indices([3, 4], [1, 1], 0, seed=0, epoch=0).shape == (0,)


@pytest.mark.parametrize(("sizes", "weights", "match"), [
    ([10, 10], [1.0], "do not match"),
    ([10], [1.0, 1.0], "do not match"),
    ([10, 10], [0.0, 0.0], "do not match"),
    ([0, 10], [1.0, 0.0], "empty"),
    ([0, 0], [1.0, 1.0], "empty"),
])
def test_epoch_indices_bad_weights_raise(sizes, weights, match):
    with pytest.raises(ValueError, match=match):
        epoch_indices(sizes, weights, 10, seed=0, epoch=0)


def test_epoch_indices_negative_weight_raises():
    with pytest.raises(ValueError):
        epoch_indices([10, 10], [2.0, -1.0], 10, seed=0, epoch=0)


# --- parse_domains ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("ai4mars", (("ai4mars", 1.0),)),
    ("ai4mars:0.5,msl:0.3,hirise:0.2", (("ai4mars", 0.5), ("msl", 0.3), ("hirise", 0.2))),
    (" msl:2 , hirise ", (("msl", 2.0), ("hirise", 1.0))),
    ("hirise:,", (("hirise", 1.0),)),
    ("ai4mars:1e-1", (("ai4mars", 0.1),)),
])
def test_parse_domains_ok(text, expected):
    assert parse_domains(text) == expected


@pytest.mark.parametrize(("text", "match"), [
    ("mars", "unknown domain"),
    ("ai4mars,MSL", "unknown domain"),
    (":0.5", "unknown domain"),
    ("ai4mars:half", "not a number"),
    ("msl:0.5:1", "not a number"),
    ("", "no domain"),
    (" , ,", "no domain"),
])
def test_parse_domains_errors(text, match):
    with pytest.raises(DatasetError, match=match):
        parse_domains(text)


def test_every_known_domain_parses():
    assert [name for name, _ in parse_domains(",".join(DOMAINS))] == list(DOMAINS)


# --- PoolConfig.weights -----------------------------------------------------------------------


def test_weights_normalise():
    cfg = PoolConfig(domains=(("ai4mars", 2.0), ("msl", 1.0), ("hirise", 1.0)))
    w = cfg.weights()
    assert w.dtype == np.float64
    assert np.allclose(w, [0.5, 0.25, 0.25])
    assert np.allclose(PoolConfig().weights(), [1.0])
    assert np.allclose(PoolConfig(domains=(("msl", 0.0), ("hirise", 3.0))).weights(), [0, 1])


@pytest.mark.parametrize("domains", [
    (),
    (("ai4mars", 0.0),),
    (("ai4mars", 0.0), ("msl", 0.0)),
    (("ai4mars", 1.0), ("msl", -0.5)),
    (("ai4mars", float("nan")),),
    (("ai4mars", 1.0), ("msl", float("inf"))),
])
def test_weights_reject_bad(domains):
    with pytest.raises(DatasetError, match="weights"):
        PoolConfig(domains=domains).weights()
