"""Simulator statistics: nearest-rank percentiles up to p99.9, CV, too-short-run warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware_sim.stats import (
    min_frames_for_percentile,
    percentile_warnings,
    summarize,
    unsupported_percentiles,
)


def nearest_rank_higher(values, p):
    """Reference: the sorted value at index ceil(p/100 * (n - 1))."""
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * (len(ordered) - 1) - 1e-12)]


def test_percentiles_up_to_p999_are_nearest_rank_values():
    values = list(range(1, 1001))  # 1..1000 ms
    stats = summarize(values)
    assert stats["count"] == 1000 and stats["min"] == 1 and stats["max"] == 1000
    assert stats["p50"] == 501 and stats["p99"] == 991 and stats["p99.9"] == 1000
    rng = np.random.default_rng(7)
    sample = rng.lognormal(3, 1, 2500).tolist()
    stats = summarize(sample, digits=9)
    for key, p in (("p90", 90), ("p99", 99), ("p99.9", 99.9)):
        assert stats[key] == pytest.approx(nearest_rank_higher(sample, p))
        assert stats[key] in {round(v, 9) for v in sample}


def test_coefficient_of_variation():
    assert summarize([5.0, 5.0, 5.0])["cv"] == 0.0
    stats = summarize([0.0, 2.0])  # mean 1, population std 1
    assert stats["std"] == 1.0 and stats["cv"] == 1.0
    assert summarize([0.0, 0.0])["cv"] is None


def test_nan_entries_are_ignored_and_empty_is_all_none():
    assert summarize([1.0, np.nan, 3.0])["count"] == 2
    empty = summarize([])
    assert empty["count"] == 0 and empty["p99.9"] is None and empty["cv"] is None


def test_minimum_frames_follow_loadgen_early_stopping():
    assert min_frames_for_percentile(90) == 64
    assert min_frames_for_percentile(99) == 662
    # The rule: the fewest n = h + 1 with P(at most 1 of n above the percentile) < 1 %.
    for pct in (90, 95, 99, 99.9):
        p, n = pct / 100, min_frames_for_percentile(pct)

        def odds(h, p=p):
            return p ** h * (p + (h + 1) * (1 - p))

        assert odds(n - 1) < 0.01 <= odds(n - 2)


def test_warnings_name_only_the_percentiles_a_run_is_too_short_for():
    assert set(unsupported_percentiles(63)) == {"p90", "p95", "p99", "p99.9"}
    assert set(unsupported_percentiles(64)) == {"p95", "p99", "p99.9"}
    assert set(unsupported_percentiles(662)) == {"p99.9"}
    assert unsupported_percentiles(10_000) == {}
    (warning,) = percentile_warnings(100)
    assert "100 classified frames" in warning and "p99 needs 662" in warning
    assert "p90," not in warning
    assert percentile_warnings(7000) == []
