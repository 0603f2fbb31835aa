"""Classify the terrain tiles of frames: decode, preprocess, infer, postprocess, write."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.decode import FrameError
from edge.latency import summarize_ms
from edge.outputs import RunWriter
from edge.preprocess import frame_to_tiles
from edge.runners import Runner
from edge.sources import FrameRef
from edge.tiling import TilingError

STAGES = ("decode", "preprocess", "inference", "postprocess", "write")


@dataclass
class TileResults:
    """Per-tile results of one frame: boxes int64 (N, 4) ``x, y, w, h`` in original pixels,
    class_ids int64 (N,), confidences float32 (N,) (softmax probability of the chosen class)."""

    boxes: np.ndarray
    class_ids: np.ndarray
    confidences: np.ndarray
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, K) -> probabilities (N, K)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class FrameClassifier:
    """Preprocess + infer + postprocess one decoded frame with a bundle and a runner.

    All tiles of a frame go through the network as one batch.
    """

    def __init__(self, bundle: Bundle, runner: Runner):
        self.bundle = bundle
        self.runner = runner
        self.classes = bundle.manifest.classes

    def classify(self, image: np.ndarray) -> TileResults:
        """Decoded image (H, W[, C]) -> :class:`TileResults`; raises FrameError if untileable."""
        m = self.bundle.manifest
        t0 = time.perf_counter()
        try:
            tiled = frame_to_tiles(image, m.input, m.tiling)
        except (TilingError, ValueError) as exc:
            raise FrameError(str(exc)) from exc
        t1 = time.perf_counter()
        logits = self.runner.run(tiled.tiles)
        t2 = time.perf_counter()
        probs = softmax(logits.astype(np.float32))
        class_ids = probs.argmax(axis=1)
        confidences = probs[np.arange(len(class_ids)), class_ids]
        t3 = time.perf_counter()
        return TileResults(
            boxes=tiled.boxes,
            class_ids=class_ids,
            confidences=confidences,
            width=tiled.width,
            height=tiled.height,
            timings_ms={
                "preprocess": (t1 - t0) * 1e3,
                "inference": (t2 - t1) * 1e3,
                "postprocess": (t3 - t2) * 1e3,
            },
        )

    def classify_ref(self, ref: FrameRef) -> TileResults:
        """Decode and classify one frame of a source; raises FrameError for bad input."""
        t0 = time.perf_counter()
        image = ref.load()
        decode_ms = ref.decode_ms if ref.decode_ms is not None else (time.perf_counter() - t0) * 1e3
        try:
            result = self.classify(image)
        except FrameError as exc:  # tiling errors do not know the frame's name; decode errors do
            raise FrameError(f"{ref.name}: {exc}") from exc
        result.timings_ms = {"decode": decode_ms, **result.timings_ms}
        return result


def tile_records(frame: str, result: TileResults, classes: list[str]) -> list[dict[str, Any]]:
    """The ``tiles.jsonl`` records of one frame (DESIGN.md contract)."""
    return [
        {
            "frame": frame,
            "x": int(b[0]),
            "y": int(b[1]),
            "w": int(b[2]),
            "h": int(b[3]),
            "label": classes[int(c)],
            "class_id": int(c),
            "confidence": round(float(p), 4),
        }
        for b, c, p in zip(result.boxes, result.class_ids, result.confidences, strict=True)
    ]


@dataclass
class RunSummary:
    """What a classify run did."""

    frames: int = 0
    classified: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    tiles: int = 0
    class_counts: Counter = field(default_factory=Counter)
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    outputs: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when every frame was classified, 2 when some were skipped for bad input."""
        return 2 if self.skipped else 0

    def report(self) -> dict[str, Any]:
        """Summary as a JSON-ready dict."""
        shares = {k: round(v / self.tiles, 4) for k, v in sorted(self.class_counts.items())} \
            if self.tiles else {}
        return {
            "frames": self.frames,
            "classified": self.classified,
            "skipped": [{"frame": f, "error": e} for f, e in self.skipped],
            "tiles": self.tiles,
            "class_shares": shares,
            "stage_ms": {s: summarize_ms(v) for s, v in self.stage_ms.items()},
            "wall_s": round(self.wall_s, 3),
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }


def classify_frames(
    frames: Iterable[FrameRef],
    classifier: FrameClassifier,
    out_dir: str | os.PathLike,
    max_frames: int | None = None,
    on_frame: Callable[[str, str | None], None] | None = None,
) -> RunSummary:
    """Classify every frame, writing ``tiles.jsonl`` and ``frames.jsonl`` under ``out_dir``.

    A frame that fails to decode or tile gets an ``error`` record and the run goes on.
    The outputs are published (renamed from ``*.partial``) only when the run completes.
    """
    summary = RunSummary()
    writer = RunWriter(out_dir)
    start = time.perf_counter()
    try:
        for ref in frames:
            if max_frames is not None and summary.frames >= max_frames:
                break
            summary.frames += 1
            try:
                result = classifier.classify_ref(ref)
            except FrameError as exc:
                summary.skipped.append((ref.name, str(exc)))
                writer.write_frame({"frame": ref.name, "width": None, "height": None,
                                    "tiles": 0, "timings_ms": None, "error": str(exc)})
                if on_frame:
                    on_frame(ref.name, str(exc))
                continue
            t0 = time.perf_counter()
            records = tile_records(ref.name, result, classifier.classes)
            writer.write_tiles(records)
            timings = result.timings_ms | {"write": (time.perf_counter() - t0) * 1e3}
            writer.write_frame({"frame": ref.name, "width": result.width, "height": result.height,
                                "tiles": len(records), "timings_ms": _rounded(timings),
                                "error": None})
            summary.classified += 1
            summary.tiles += len(records)
            summary.class_counts.update(r["label"] for r in records)
            for stage in STAGES:
                summary.stage_ms[stage].append(timings[stage])
            if on_frame:
                on_frame(ref.name, None)
        summary.outputs = writer.commit()
    finally:
        writer.close()
    summary.wall_s = time.perf_counter() - start
    return summary


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}
