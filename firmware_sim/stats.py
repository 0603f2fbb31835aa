"""Latency statistics for the simulator, with a warning where a run is too short.

Percentiles are the sample at or above the interpolated position
(``numpy.percentile(method="higher")``: sorted index ceil(p (N - 1)), as in
:func:`edge.latency.summarize_ms`), so a reported p99 is a latency some frame really had.

How many frames a percentile needs follows MLPerf LoadGen's early-stopping rule
(``loadgen/early_stopping.cc``, SingleStream): with confidence 0.99 and no tolerance, the
fewest queries ``n = h + 1`` such that, were the true percentile exactly met, seeing at most
one frame above it in ``n`` would have probability below 1 %:
``p**h * (p + (h + 1) * (1 - p)) < 0.01``. That gives 64 frames for p90 and 662 for p99.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
CONFIDENCE = 0.99


def percentile_key(p: float) -> str:
    """``50.0 -> "p50"``, ``99.9 -> "p99.9"``."""
    return f"p{p:g}"


STAT_KEYS = ("count", "min", "mean", *(percentile_key(p) for p in PERCENTILES), "max", "std", "cv")


def summarize(values: Sequence[float] | np.ndarray,
              digits: int = 3) -> dict[str, float | int | None]:
    """count, min, mean, p50/p90/p95/p99/p99.9, max, std and coefficient of variation.

    values: (N,) timings in ms (NaN entries are ignored). cv = std / mean (population std),
    None when the mean is 0 or there are no values.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {k: (0 if k == "count" else None) for k in STAT_KEYS}
    mean = float(arr.mean())
    std = float(arr.std())
    out: dict[str, float | int | None] = {
        "count": int(arr.size),
        "min": round(float(arr.min()), digits),
        "mean": round(mean, digits),
    }
    for p in PERCENTILES:
        out[percentile_key(p)] = round(float(np.percentile(arr, p, method="higher")), digits)
    out["max"] = round(float(arr.max()), digits)
    out["std"] = round(std, digits)
    out["cv"] = round(std / mean, 4) if mean > 0 else None
    return out


@cache
def min_frames_for_percentile(percentile: float, confidence: float = CONFIDENCE) -> int:
    """Fewest frames for which LoadGen's early stopping can vouch for ``percentile`` (0-100)."""
    p = percentile / 100.0
    if not 0.0 < p < 1.0:
        raise ValueError(f"percentile must lie strictly between 0 and 100, got {percentile}")
    limit = math.log(1.0 - confidence)

    def log_odds(h: int) -> float:  # log P(at most 1 of h + 1 frames above the percentile)
        return h * math.log(p) + math.log(p + (h + 1) * (1.0 - p))

    lo, hi = 1, 2
    while log_odds(hi) >= limit:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if log_odds(mid) < limit:
            hi = mid
        else:
            lo = mid + 1
    return lo + 1


def unsupported_percentiles(count: int) -> dict[str, int]:
    """The reported percentiles (above p50) that ``count`` frames are too few for,
    each with the frames it needs: e.g. ``{"p99": 662, "p99.9": 6636}``."""
    return {percentile_key(p): min_frames_for_percentile(p)
            for p in PERCENTILES if p > 50 and count < min_frames_for_percentile(p)}


def percentile_warnings(count: int, what: str = "end-to-end latency") -> list[str]:
    """A warning (a list of none or one line) naming the percentiles ``count`` frames
    are too few to vouch for."""
    short = unsupported_percentiles(count)
    if not short:
        return []
    needs = ", ".join(f"{k} needs {v}" for k, v in short.items())
    return [f"{what}: {count} classified frames are too few for {', '.join(short)} "
            f"({needs}; MLPerf LoadGen early-stopping rule): treat them as indicative"]
