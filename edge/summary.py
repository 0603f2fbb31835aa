"""What a classify run did, accumulated frame by frame in constant memory."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.latency import StreamingStats

STAGES = ("decode", "preprocess", "inference", "postprocess", "write")
# Skipped frames named in the summary (all of them are in frames.jsonl); the count is exact.
MAX_SKIPPED_LISTED = 100


def _stage_stats() -> dict[str, StreamingStats]:
    return {s: StreamingStats() for s in (*STAGES, "total")}


@dataclass
class RunSummary:
    """Counts, class shares and per-stage timing statistics of a run.

    ``resumed`` counts frames found already done in the output folder (``--resume``);
    they are included in every other figure. ``skipped`` lists at most
    ``MAX_SKIPPED_LISTED`` ``(frame, error)`` pairs; ``skipped_count`` is exact.
    """

    frames: int = 0
    classified: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_count: int = 0
    tiles: int = 0
    resumed: int = 0
    class_counts: Counter = field(default_factory=Counter)
    stage_ms: dict[str, StreamingStats] = field(default_factory=_stage_stats)
    outputs: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0

    def add(self, frame: dict[str, Any], labels: Counter) -> None:
        """Account for one frame record (frames.jsonl shape) and its tiles' label counts."""
        self.frames += 1
        if frame.get("error"):
            self.skipped_count += 1
            if len(self.skipped) < MAX_SKIPPED_LISTED:
                self.skipped.append((str(frame["frame"]), str(frame["error"])))
            return
        self.classified += 1
        self.tiles += int(frame.get("tiles") or 0)
        self.class_counts.update(labels)
        timings = frame.get("timings_ms") or {}
        for stage in STAGES:
            if timings.get(stage) is not None:
                self.stage_ms[stage].add(timings[stage])
        if timings:
            self.stage_ms["total"].add(sum(float(timings.get(s) or 0.0) for s in STAGES))

    @property
    def exit_code(self) -> int:
        """0 when every frame was classified, 2 when some were skipped for bad input."""
        return 2 if self.skipped_count else 0

    def report(self) -> dict[str, Any]:
        """Summary as a JSON-ready dict."""
        shares = {k: round(v / self.tiles, 4) for k, v in sorted(self.class_counts.items())} \
            if self.tiles else {}
        return {
            "frames": self.frames,
            "classified": self.classified,
            "resumed": self.resumed,
            "skipped_count": self.skipped_count,
            "skipped": [{"frame": f, "error": e} for f, e in self.skipped],
            "tiles": self.tiles,
            "class_shares": shares,
            "stage_ms": {s: v.summary() for s, v in self.stage_ms.items()},
            "wall_s": round(self.wall_s, 3),
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }
