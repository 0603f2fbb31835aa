import numpy as np
import pytest

from edge.latency import PERCENTILES, summarize_ms

KEYS = ["count", "min", "mean", *[f"p{p}" for p in PERCENTILES], "max"]


def test_known_values():
    stats = summarize_ms([float(v) for v in range(1, 11)])
    assert list(stats) == KEYS
    assert stats["count"] == 10
    assert (stats["min"], stats["mean"], stats["max"]) == (1.0, 5.5, 10.0)
    # percentiles take the sample at or above the interpolated rank: never optimistic
    assert (stats["p50"], stats["p90"], stats["p95"], stats["p99"]) == (6.0, 10.0, 10.0, 10.0)


def test_percentiles_are_samples():
    values = [3.0, 1.0, 2.0, 100.0]
    stats = summarize_ms(values)
    assert all(stats[f"p{p}"] in values for p in PERCENTILES)
    assert stats["p99"] == 100.0 and stats["p50"] == 3.0


def test_single_value():
    stats = summarize_ms([2.5])
    assert stats["count"] == 1
    assert all(stats[k] == 2.5 for k in KEYS if k != "count")


def test_empty():
    stats = summarize_ms([])
    assert list(stats) == KEYS
    assert stats["count"] == 0 and all(stats[k] is None for k in KEYS if k != "count")
    assert summarize_ms(np.array([]))["count"] == 0


def test_rounded_to_microseconds():
    stats = summarize_ms([1.23456789, 2.0])
    assert stats["min"] == 1.235 and stats["mean"] == pytest.approx(1.617, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_monotone(seed):
    values = np.random.default_rng(seed).lognormal(0, 1, 57)
    stats = summarize_ms(values)
    chain = [stats["min"], *[stats[f"p{p}"] for p in PERCENTILES], stats["max"]]
    assert chain == sorted(chain)
    assert stats["min"] <= stats["mean"] <= stats["max"]


@pytest.mark.parametrize("seed", range(3))
def test_streaming_stats_close_to_exact_and_never_optimistic(seed):
    from edge.latency import StreamingStats

    values = np.random.default_rng(seed).lognormal(1, 1, 3000)
    stream = StreamingStats()
    for v in values:
        stream.add(v)
    exact, approx = summarize_ms(values), stream.summary()
    assert list(approx) == KEYS
    assert approx["count"] == exact["count"]
    for key in ("min", "mean", "max"):
        assert approx[key] == pytest.approx(exact[key], abs=1e-3)
    for p in PERCENTILES:
        assert exact[f"p{p}"] - 1e-3 <= approx[f"p{p}"] <= exact[f"p{p}"] * 1.006 + 1e-3


def test_streaming_stats_edge_cases():
    from edge.latency import StreamingStats

    empty = StreamingStats()
    assert empty.summary() == summarize_ms([])
    one = StreamingStats()
    one.add(0.0)
    assert one.summary()["p99"] == 0.0 and one.summary()["max"] == 0.0
    big = StreamingStats()
    big.add(5e7)  # beyond the last bin: capped at the maximum
    assert big.summary()["p50"] == 5e7
