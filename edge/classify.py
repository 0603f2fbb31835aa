"""Classify the terrain tiles of one frame: decode, preprocess, infer, postprocess; and the
``tiles.jsonl`` records of the result. The run loop over a source is :mod:`edge.run`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.decode import FrameError
from edge.options import UNCERTAIN
from edge.preprocess import frame_to_tiles
from edge.runners import Runner
from edge.sources import FrameRef
from edge.tiling import TilingError, TilingSpec

STAGES = ("decode", "preprocess", "inference", "postprocess", "write")


@dataclass
class TileResults:
    """Per-tile results of one frame: boxes int64 (N, 4) ``x, y, w, h`` in original pixels,
    class_ids int64 (N,), confidences float32 (N,) (softmax probability of the chosen class),
    ref_boxes int64 (N, 4): the same tiles on the reference grid."""

    boxes: np.ndarray
    class_ids: np.ndarray
    confidences: np.ndarray
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    ref_boxes: np.ndarray | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, K) -> probabilities (N, K)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class FrameClassifier:
    """Preprocess + infer + postprocess one decoded frame with a bundle and a runner.

    All tiles of a frame go through the network as one batch (measured fastest, see
    docs/edge.md); ``max_batch`` splits a frame's tiles into batches of at most that many
    (bounds memory for very small strides). ``stride`` overrides the manifest's tile stride,
    in reference pixels (1 to the tile size: tiles overlap when smaller).
    """

    def __init__(self, bundle: Bundle, runner: Runner, stride: int | None = None,
                 max_batch: int | None = None):
        self.bundle = bundle
        self.runner = runner
        self.classes = bundle.manifest.classes
        self.tiling: TilingSpec = bundle.manifest.tiling
        if stride is not None:
            if not 1 <= stride <= self.tiling.tile:
                raise ValueError(
                    f"--stride must be between 1 and the tile size {self.tiling.tile} "
                    f"(reference pixels at width {self.tiling.reference_width}), got {stride}"
                )
            self.tiling = replace(self.tiling, stride=stride)
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch

    def infer(self, tiles: np.ndarray) -> np.ndarray:
        """Logits float32 (N, K) of tiles float32 (N, C, S, S), in batches of ``max_batch``."""
        n = len(tiles)
        if self.max_batch is None or n <= self.max_batch:
            return self.runner.run(tiles)
        return np.concatenate([self.runner.run(tiles[i : i + self.max_batch])
                               for i in range(0, n, self.max_batch)])

    def classify(self, image: np.ndarray) -> TileResults:
        """Decoded image (H, W[, C]) -> :class:`TileResults`; raises FrameError if untileable,
        or if the model's logits are not finite."""
        m = self.bundle.manifest
        t0 = time.perf_counter()
        try:
            tiled = frame_to_tiles(image, m.input, self.tiling)
        except (TilingError, ValueError) as exc:
            raise FrameError(str(exc)) from exc
        t1 = time.perf_counter()
        logits = self.infer(tiled.tiles)
        t2 = time.perf_counter()
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():
            raise FrameError(f"the model gave NaN or infinite logits for {int((~finite).sum())} "
                             f"of the frame's {len(finite)} tiles; no label would be meaningful")
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
            ref_boxes=tiled.ref_boxes,
        )

    def classify_image(self, name: str, image: np.ndarray, decode_ms: float) -> TileResults:
        """Classify a frame decoded in ``decode_ms``; FrameErrors are prefixed with ``name``."""
        try:
            result = self.classify(image)
        except FrameError as exc:  # tiling errors do not know the frame's name; decode errors do
            raise FrameError(f"{name}: {exc}") from exc
        except MemoryError:  # a large frame on a small board: skip it, keep the run going
            height, width = image.shape[:2]
            raise FrameError(f"{name}: not enough memory to classify this {width}x{height} "
                             "frame") from None
        result.timings_ms = {"decode": decode_ms, **result.timings_ms}
        return result

    def classify_ref(self, ref: FrameRef) -> TileResults:
        """Decode and classify one frame of a source; raises FrameError for bad input."""
        image, decode_ms = decode_ref(ref)
        return self.classify_image(ref.name, image, decode_ms)


def decode_ref(ref: FrameRef) -> tuple[np.ndarray, float]:
    """``(image, decode_ms)`` of a frame; raises FrameError for bad input."""
    t0 = time.perf_counter()
    image = ref.load()
    decode_ms = ref.decode_ms if ref.decode_ms is not None else (time.perf_counter() - t0) * 1e3
    return image, decode_ms


def tile_records(frame: str, result: TileResults, classes: list[str],
                 min_confidence: float | None = None) -> list[dict[str, Any]]:
    """The ``tiles.jsonl`` records of one frame (DESIGN.md contract).

    With ``min_confidence``, a tile whose confidence (before rounding) is below it gets
    ``label`` ``uncertain``; ``class_id`` and ``confidence`` stay those of its best class,
    and an extra field ``best_label`` (present in every record of such a run) names it.
    """
    records = []
    # tolist() converts whole arrays to Python ints and floats at once: half the time of
    # converting element by element, with the same values.
    for (x, y, w, h), c, p in zip(result.boxes.tolist(), result.class_ids.tolist(),
                                  result.confidences.tolist(), strict=True):
        best = classes[c]
        uncertain = min_confidence is not None and p < min_confidence
        record = {
            "frame": frame,
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "label": UNCERTAIN if uncertain else best,
            "class_id": c,
            "confidence": round(p, 4),
        }
        if min_confidence is not None:
            record["best_label"] = best
        records.append(record)
    return records
