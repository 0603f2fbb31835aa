"""End-to-end speed of the runtime on real frames: decode to postprocess, per frame."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edge.bundle import Bundle
from edge.classify import FrameClassifier
from edge.decode import FrameError
from edge.latency import summarize_ms
from edge.runners import make_runner
from edge.sources import FrameRef


@dataclass
class BenchConfig:
    """Thread counts to try, passes over the frames, and warm-up frames not timed."""

    threads: tuple[int, ...] = (1, 2)
    repeats: int = 3
    warmup: int = 5
    backend: str = "onnxruntime"


def bench(bundle: Bundle, frames: list[FrameRef], config: BenchConfig) -> list[dict[str, Any]]:
    """One row per thread count: frames/s, tiles/s and per-frame latency percentiles (ms).

    Every frame is decoded from its file in every pass (the OS page cache keeps the
    bytes in memory, as a rover's frame buffer would).
    """
    rows = []
    for threads in config.threads:
        classifier = FrameClassifier(bundle, make_runner(bundle, config.backend, threads))
        for ref in frames[: config.warmup]:
            try:
                classifier.classify_ref(ref)
            except FrameError:
                pass
        latencies: list[float] = []
        tiles = 0
        start = time.perf_counter()
        for _ in range(config.repeats):
            for ref in frames:
                t0 = time.perf_counter()
                try:
                    result = classifier.classify_ref(ref)
                except FrameError:
                    continue
                latencies.append((time.perf_counter() - t0) * 1e3)
                tiles += len(result.class_ids)
        wall = time.perf_counter() - start
        stats = summarize_ms(latencies)
        rows.append({
            "backend": config.backend,
            "threads": threads,
            "frames": len(latencies),
            "frames_per_s": round(len(latencies) / wall, 2) if wall else None,
            "tiles_per_s": round(tiles / wall, 1) if wall else None,
            "p50_ms": stats["p50"],
            "p99_ms": stats["p99"],
            "max_ms": stats["max"],
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows from :func:`bench` as a Markdown table."""
    cols = ["backend", "threads", "frames", "frames_per_s", "tiles_per_s", "p50_ms", "p99_ms",
            "max_ms"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
