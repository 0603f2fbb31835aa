"""The report's PNG plots, drawn with OpenCV primitives (matplotlib is not a dependency).

Three plots of end-to-end latency on the emulated target: over capture time (dropped
frames marked on the time axis), a histogram, and the empirical CDF; each draws the
deadline when there is one. :class:`Canvas` is a minimal line/bar chart: axes, ticks at
1-2-5 steps with labels, a title and axis labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from firmware_sim.report import write_atomic

PLOT_FILES = {
    "latency_over_time": "latency_over_time.png",
    "latency_histogram": "latency_histogram.png",
    "latency_cdf": "latency_cdf.png",
}
WIDTH, HEIGHT = 900, 540
LEFT, RIGHT, TOP, BOTTOM = 90, 30, 56, 70
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, LIGHT = (20, 20, 20), (110, 110, 110), (228, 228, 228)
BLUE, RED, ORANGE = (180, 90, 20), (40, 40, 220), (0, 140, 255)  # BGR


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Tick values at 1, 2 or 5 x 10^k steps covering [lo, hi], about ``target`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


class Canvas:
    """A white chart area mapping data (x, y) in ``xlim`` x ``ylim`` to pixels."""

    def __init__(self, title: str, xlabel: str, ylabel: str,
                 xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
        self.img = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
        self.xlim = _widen(xlim)
        self.ylim = _widen(ylim)
        self.x0, self.x1 = LEFT, WIDTH - RIGHT
        self.y0, self.y1 = HEIGHT - BOTTOM, TOP  # pixel rows: y0 bottom, y1 top
        self._axes(title, xlabel, ylabel)

    def px(self, x: float, y: float) -> tuple[int, int]:
        """Pixel (column, row) of data point (x, y), clipped to the plot area."""
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        col = self.x0 + min(max(fx, 0.0), 1.0) * (self.x1 - self.x0)
        row = self.y0 - min(max(fy, 0.0), 1.0) * (self.y0 - self.y1)
        return int(round(col)), int(round(row))

    def _text(self, text: str, org: tuple[int, int], scale: float = 0.45,
              color: tuple[int, int, int] = BLACK, thickness: int = 1,
              align: str = "left") -> None:
        (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
        x, y = org
        if align == "center":
            x -= w // 2
        elif align == "right":
            x -= w
        cv2.putText(self.img, text, (x, y + h // 2), FONT, scale, color, thickness, cv2.LINE_AA)

    def _axes(self, title: str, xlabel: str, ylabel: str) -> None:
        for value in nice_ticks(*self.ylim):
            _, row = self.px(self.xlim[0], value)
            cv2.line(self.img, (self.x0, row), (self.x1, row), LIGHT, 1)
            cv2.line(self.img, (self.x0 - 5, row), (self.x0, row), BLACK, 1)
            self._text(_label(value), (self.x0 - 8, row), align="right")
        for value in nice_ticks(*self.xlim):
            col, _ = self.px(value, self.ylim[0])
            cv2.line(self.img, (col, self.y0), (col, self.y0 + 5), BLACK, 1)
            self._text(_label(value), (col, self.y0 + 16), align="center")
        cv2.rectangle(self.img, (self.x0, self.y1), (self.x1, self.y0), BLACK, 1)
        self._text(title, (WIDTH // 2, 24), scale=0.6, thickness=2, align="center")
        self._text(xlabel, ((self.x0 + self.x1) // 2, HEIGHT - 22), scale=0.5, align="center")
        (w, h), _ = cv2.getTextSize(ylabel, FONT, 0.5, 1)
        patch = np.full((h + 8, w + 4, 3), 255, np.uint8)
        cv2.putText(patch, ylabel, (2, h + 2), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
        patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
        top = max(0, (self.y0 + self.y1) // 2 - patch.shape[0] // 2)
        self.img[top:top + patch.shape[0], 6:6 + patch.shape[1]] = patch[:HEIGHT - top]

    def polyline(self, xs: Sequence[float], ys: Sequence[float],
                 color: tuple[int, int, int] = BLUE, dots: bool = False) -> None:
        """Connect the points (x, y) in order; optionally mark each one."""
        pts = np.array([self.px(x, y) for x, y in zip(xs, ys, strict=True)], np.int32)
        if len(pts) > 1:
            cv2.polylines(self.img, [pts.reshape(-1, 1, 2)], False, color, 1, cv2.LINE_AA)
        if dots or len(pts) == 1:
            for p in pts:
                cv2.circle(self.img, (int(p[0]), int(p[1])), 2, color, -1, cv2.LINE_AA)

    def bars(self, edges: Sequence[float], heights: Sequence[float],
             color: tuple[int, int, int] = BLUE) -> None:
        """One filled bar per bin: ``edges`` (K + 1,), ``heights`` (K,)."""
        for left, right, h in zip(edges[:-1], edges[1:], heights, strict=True):
            if h <= 0:
                continue
            a = self.px(left, h)
            b = self.px(right, self.ylim[0])
            cv2.rectangle(self.img, (a[0] + 1, a[1]), (max(a[0] + 1, b[0] - 1), b[1]), color, -1)

    def vline(self, x: float, label: str, color: tuple[int, int, int] = RED) -> None:
        """A dashed vertical line at data x, labelled at the top."""
        col, _ = self.px(x, self.ylim[0])
        _dashed(self.img, (col, self.y0), (col, self.y1), color)
        self._text(label, (min(col + 4, self.x1 - 4), self.y1 + 10), color=color,
                   align="left" if col + 4 < self.x1 - 150 else "right")

    def hline(self, y: float, label: str, color: tuple[int, int, int] = RED) -> None:
        """A dashed horizontal line at data y, labelled at the right end."""
        _, row = self.px(self.xlim[0], y)
        _dashed(self.img, (self.x0, row), (self.x1, row), color)
        self._text(label, (self.x1 - 4, row - 10), color=color, align="right")

    def note(self, text: str, line: int = 0, color: tuple[int, int, int] = GREY) -> None:
        """A line of text in the top-left corner of the plot area."""
        self._text(text, (self.x0 + 8, self.y1 + 14 + 18 * line), color=color)

    def png(self) -> bytes:
        """The chart encoded as PNG."""
        ok, buf = cv2.imencode(".png", self.img)
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
            raise RuntimeError("OpenCV could not encode the plot")
        return buf.tobytes()


def _widen(lim: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(lim[0]), float(lim[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def _dashed(img: np.ndarray, a: tuple[int, int], b: tuple[int, int],
            color: tuple[int, int, int], dash: int = 8) -> None:
    length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
    for s in range(0, length, 2 * dash):
        t0, t1 = s / max(length, 1), min(s + dash, length) / max(length, 1)
        p0 = (int(a[0] + (b[0] - a[0]) * t0), int(a[1] + (b[1] - a[1]) * t0))
        p1 = (int(a[0] + (b[0] - a[0]) * t1), int(a[1] + (b[1] - a[1]) * t1))
        cv2.line(img, p0, p1, color, 2, cv2.LINE_AA)


# --------------------------------------------------------------------------- the plots


def _series(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(capture s, latency ms) of classified frames, and capture s of dropped frames."""
    ok = [t for t in report["timeline"] if t["status"] in ("ok", "late")]
    t_ok = np.array([t["arrival_ms"] / 1e3 for t in ok], np.float64)
    lat = np.array([t["latency_ms"] for t in ok], np.float64)
    t_drop = np.array([t["arrival_ms"] / 1e3 for t in report["timeline"]
                       if t["status"] == "dropped"], np.float64)
    return t_ok, lat, t_drop


def _subtitle(report: dict[str, Any]) -> str:
    emulation = report.get("emulation") or {}
    profile = (emulation.get("profile") or {}).get("key", "host")
    fps = report.get("offered_fps")
    rate = "clock-timed" if fps is None else f"{fps:.4g} fps"
    return f"profile {profile}, {rate}, {report.get('clock', 'virtual')} clock"


def latency_over_time(report: dict[str, Any]) -> bytes:
    """PNG: end-to-end latency (ms) of each classified frame against its capture time (s)."""
    t_ok, lat, t_drop = _series(report)
    deadline = report.get("deadline_ms")
    times = np.concatenate([t_ok, t_drop])
    ymax = max([float(lat.max()) if lat.size else 1.0, deadline or 0.0]) * 1.08
    xmax = float(times.max()) if times.size else 1.0
    canvas = Canvas(f"End-to-end latency over time ({_subtitle(report)})",
                    "capture time (s)", "latency (ms)", (0.0, xmax or 1.0), (0.0, ymax))
    if lat.size:
        canvas.polyline(t_ok, lat, BLUE, dots=lat.size <= 400)
    else:
        canvas.note("no classified frames", color=RED)
    for t in t_drop:
        col, _ = canvas.px(float(t), 0.0)
        cv2.line(canvas.img, (col, canvas.y0 - 7), (col, canvas.y0), ORANGE, 2)
    if t_drop.size:
        canvas.note(f"orange ticks: {t_drop.size} dropped frames", line=0, color=ORANGE)
    if deadline:
        canvas.hline(deadline, f"deadline {deadline:g} ms")
    return canvas.png()


def latency_histogram(report: dict[str, Any], bins: int | None = None) -> bytes:
    """PNG: histogram of end-to-end latency (ms) of the classified frames."""
    _, lat, _ = _series(report)
    deadline = report.get("deadline_ms")
    hi = max(float(lat.max()) if lat.size else 1.0, deadline or 0.0)
    lo = min(float(lat.min()) if lat.size else 0.0, deadline or math.inf)
    if hi <= lo:
        lo, hi = _widen((lo, hi))
    bins = bins or int(min(60, max(8, math.ceil(math.sqrt(max(lat.size, 1))))))
    counts, edges = np.histogram(lat, bins=bins, range=(lo, hi))
    canvas = Canvas(f"Latency histogram ({_subtitle(report)})", "end-to-end latency (ms)",
                    "frames", (lo, hi), (0.0, max(1.0, float(counts.max(initial=0)) * 1.1)))
    canvas.bars(edges, counts)
    if not lat.size:
        canvas.note("no classified frames", color=RED)
    if deadline:
        canvas.vline(deadline, f"deadline {deadline:g} ms")
    return canvas.png()


def latency_cdf(report: dict[str, Any]) -> bytes:
    """PNG: empirical CDF of end-to-end latency (fraction of classified frames <= x ms)."""
    _, lat, _ = _series(report)
    deadline = report.get("deadline_ms")
    values = np.sort(lat)
    hi = max(float(values[-1]) if values.size else 1.0, deadline or 0.0) * 1.05
    canvas = Canvas(f"Latency CDF ({_subtitle(report)})", "end-to-end latency (ms)",
                    "fraction of frames", (0.0, hi), (0.0, 1.0))
    if values.size:
        frac = np.arange(1, values.size + 1) / values.size
        xs = np.repeat(values, 2)[1:]
        ys = np.repeat(frac, 2)[:-1]
        canvas.polyline(np.concatenate([[values[0]], xs]), np.concatenate([[0.0], ys]), BLUE)
    else:
        canvas.note("no classified frames", color=RED)
    if deadline:
        met = float(np.mean(values <= deadline)) if values.size else 0.0
        canvas.vline(deadline, f"deadline {deadline:g} ms ({met:.1%} within)")
    return canvas.png()


def write_plots(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the three PNG plots into ``out_dir``; returns {plot name: path}."""
    out = Path(out_dir)
    makers = {"latency_over_time": latency_over_time, "latency_histogram": latency_histogram,
              "latency_cdf": latency_cdf}
    return {name: write_atomic(out / PLOT_FILES[name], make(report))
            for name, make in makers.items()}
