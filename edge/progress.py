"""What a person sees while and after a run: a progress line on stderr and a summary."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class RunObserver(Protocol):
    """Told about a run as it goes (the library never prints by itself)."""

    def start(self, total: int | None) -> None:  # pragma: no cover - protocol
        """The run starts; ``total`` frames in the source when known."""
        ...

    def frame(self, name: str, error: str | None, resumed: bool) -> None:  # pragma: no cover
        """One source frame was handled (``resumed``: already done, not classified again)."""
        ...

    def finish(self) -> None:  # pragma: no cover - protocol
        """The run is over (or stopped)."""
        ...


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """One line on ``stream``, rewritten with ``\\r`` at most ``per_s`` times a second:
    ``[#####-----]  120/500 frames  2 skipped  31.2 frames/s  ETA 0:00:12``."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None, per_s: float = 8.0):
        self.stream = stream if stream is not None else sys.stderr
        self.interval = 1.0 / per_s
        self.total: int | None = None
        self.seen = self.done_before = self.skipped = 0
        self._start = self._last = 0.0
        self._shown = False

    def start(self, total: int | None) -> None:
        """Remember the total and the start time."""
        self.total = total
        self._start = time.perf_counter()
        self._last = 0.0

    def frame(self, name: str, error: str | None, resumed: bool) -> None:
        """Count the frame; redraw when the last draw is old enough."""
        self.seen += 1
        self.done_before += int(resumed)
        self.skipped += int(error is not None)
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def line(self, now: float) -> str:
        """The progress line (without ``\\r``)."""
        new = self.seen - self.done_before
        elapsed = now - self._start
        rate = new / elapsed if elapsed > 0 else 0.0
        parts = []
        if self.total:
            filled = int(self.WIDTH * min(1.0, self.seen / self.total))
            parts.append("[" + "#" * filled + "-" * (self.WIDTH - filled) + "]")
            parts.append(f"{self.seen}/{self.total} frames")
        else:
            parts.append(f"{self.seen} frames")
        if self.done_before:
            parts.append(f"{self.done_before} already done")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        parts.append(f"{rate:.1f} frames/s")
        if self.total and rate > 0 and self.seen < self.total:
            parts.append(f"ETA {_clock((self.total - self.seen) / rate)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.seen or self._shown:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()


def summary_lines(report: dict[str, Any], out: str) -> list[str]:
    """The end-of-run summary: frames, tiles, class shares, timing per stage, skipped."""
    resumed = f" ({report['resumed']} from before --resume)" if report.get("resumed") else ""
    lines = [
        f"classified {report['classified']}/{report['frames']} frames{resumed}, "
        f"{report['tiles']} tiles in {report['wall_s']:.1f} s -> {out}"
    ]
    shares = ", ".join(f"{k} {v:.1%}" for k, v in report["class_shares"].items())
    if shares:
        lines.append(f"class shares: {shares}")
    stages = [(s, v) for s, v in report["stage_ms"].items() if v["mean"] is not None]
    if stages:
        lines.append("ms per frame (mean/p99): " + ", ".join(
            f"{s} {v['mean']:.2f}/{v['p99']:.2f}" for s, v in stages))
    if report["skipped_count"]:
        lines.append(f"skipped {report['skipped_count']} frame(s) for bad input "
                     "(error records in frames.jsonl)")
    return lines


def skipped_lines(report: dict[str, Any], limit: int = 20) -> list[str]:
    """``skipped NAME: why`` for the first ``limit`` skipped frames (the error begins with
    the frame's name), then how many more."""
    items = report["skipped"][:limit]
    lines = [f"skipped {item['error']}" for item in items]
    more = report["skipped_count"] - len(items)
    if more > 0:
        lines.append(f"... and {more} more skipped frame(s)")
    return lines
