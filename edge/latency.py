"""Latency statistics shared by the classifier summary, ``edge bench`` and the simulator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def summarize_ms(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, mean, p50/p90/p95/p99 (nearest rank at or above) and max of timings in ms."""
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
