"""Latency statistics shared by the classifier summary, ``edge bench`` and the simulator."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def summarize_ms(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, mean, p50/p90/p95/p99 (the sample at or above the
    interpolated position, numpy's ``higher``) and max of timings in ms."""
    if len(values) == 0:
        return {"count": 0, "min": None, "mean": None,
                **{f"p{p}": None for p in PERCENTILES}, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    out: dict[str, float | int | None] = {
        "count": int(arr.size),
        "min": round(float(arr.min()), 3),
        "mean": round(float(arr.mean()), 3),
    }
    for p in PERCENTILES:
        out[f"p{p}"] = round(float(np.percentile(arr, p, method="higher")), 3)
    out["max"] = round(float(arr.max()), 3)
    return out


class StreamingStats:
    """Timing statistics in constant memory, for runs of any length.

    count, min, mean and max are exact; percentiles come from a log-spaced histogram
    (bins 0.5% wide from 1 us to 1000 s) and are the upper edge of the bin holding the
    sample at or above the interpolated position (as summarize_ms), capped at the maximum:
    within 0.5% of the exact value and never optimistic. :meth:`summary` has the keys of
    :func:`summarize_ms`.
    """

    LOW_MS = 1e-3
    GROWTH = 1.005
    BINS = int(math.ceil(math.log(1e6 / LOW_MS) / math.log(GROWTH))) + 1

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._hist = np.zeros(self.BINS, dtype=np.int64)

    def add(self, value: float) -> None:
        """Record one timing in ms."""
        value = float(value)
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value <= self.LOW_MS:
            index = 0
        else:
            index = min(self.BINS - 1,
                        int(math.ceil(math.log(value / self.LOW_MS) / math.log(self.GROWTH))))
        self._hist[index] += 1

    def percentile(self, p: float) -> float | None:
        """Upper edge of the bin holding the value at or above the p-th percentile rank."""
        if self.count == 0:
            return None
        rank = int(math.ceil(p / 100.0 * (self.count - 1)))  # 0-based, like method="higher"
        index = int(np.searchsorted(np.cumsum(self._hist), rank + 1))
        edge = self.LOW_MS * self.GROWTH ** index
        return min(max(edge, self.min), self.max)

    def summary(self) -> dict[str, float | int | None]:
        """count, min, mean, p50/p90/p95/p99 and max, rounded to microseconds."""
        if self.count == 0:
            return summarize_ms([])
        out: dict[str, float | int | None] = {
            "count": self.count,
            "min": round(self.min, 3),
            "mean": round(self.total / self.count, 3),
        }
        for p in PERCENTILES:
            out[f"p{p}"] = round(self.percentile(p), 3)
        out["max"] = round(self.max, 3)
        return out
