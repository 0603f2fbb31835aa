"""When each frame of a stream reaches the capture queue: arrival schedules.

Three schedules, all in ms from the first frame's capture:

- fixed rate: frame ``i`` at ``1000 * i / fps``;
- bursts: groups of ``burst`` frames captured at once, one group every ``burst / fps``
  seconds, so the mean offered rate is still ``fps`` (a queue sees the same load, bunched);
- spacecraft clock: the time each AI4Mars frame id encodes (``N[LR][AB]_<9-digit clock>...``,
  Navcam left/right, rover compute element A/B, then the spacecraft clock in seconds),
  relative to the earliest frame and divided by a time-compression factor. Frames are
  replayed in clock order, whatever order the source lists them in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

TIMINGS = ("fixed", "clock")

# Re-implemented here (firmware_sim does not import train): Navcam camera (L/R), rover
# compute element (A/B), underscore, 9-digit spacecraft clock (seconds).
_SCLK = re.compile(r"^N[LR][AB]_(\d{9})")


class ScheduleError(ValueError):
    """The stream cannot be scheduled as asked (e.g. a frame name without a clock)."""


@dataclass(frozen=True)
class StreamConfig:
    """How frames arrive.

    fps: offered rate, frames per second (> 0), for the fixed and burst schedules.
    timing: "fixed" (cadence from fps) or "clock" (spacecraft clock in the frame names).
    time_compression: clock schedule only; 60 replays a minute of spacecraft time per
    second. burst: frames captured together (1: no bursts; fixed timing only).
    """

    fps: float = 1.0
    timing: str = "fixed"
    time_compression: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        if self.timing not in TIMINGS:
            raise ValueError(f"--timing must be one of {', '.join(TIMINGS)}, got {self.timing!r}")
        if not _positive(self.fps):
            raise ValueError(f"--fps must be a positive number of frames per second, "
                             f"got {self.fps}")
        if not _positive(self.time_compression):
            raise ValueError(f"--time-compression must be a positive factor, "
                             f"got {self.time_compression}")
        if not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"--burst must be a whole number of frames >= 1, got {self.burst}")
        if self.timing == "clock" and self.burst != 1:
            raise ValueError("--burst applies to --timing fixed; the clock schedule "
                             "takes its bursts from the frame times")


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def spacecraft_clock(name: str) -> int | None:
    """The spacecraft clock (s) an AI4Mars Navcam id encodes, or None.

    ``NLB_397681586EDR_F0020000AUT_04096M1.jpg`` -> 397681586. Only the file name counts
    (folders in ``name`` are ignored).
    """
    match = _SCLK.match(PurePath(name).name)
    return int(match.group(1)) if match else None


def fixed_rate_ms(count: int, fps: float, burst: int = 1) -> np.ndarray:
    """Arrival times (ms) of ``count`` frames at ``fps``, in groups of ``burst``.

    Frame ``i`` arrives at ``1000 * (i // burst) * burst / fps``; burst=1 is a steady cadence.
    """
    index = np.arange(count, dtype=np.int64)
    return (index // burst).astype(np.float64) * (1e3 * burst / fps)


def clock_schedule(names: Sequence[str],
                   time_compression: float = 1.0) -> tuple[list[int], np.ndarray]:
    """``(order, arrivals_ms)`` for frames whose names carry the spacecraft clock.

    order: indices into ``names`` sorted by clock (stable, so simultaneous frames keep
    their listed order); arrivals_ms: (N,) ``1000 * (clock - first clock) / time_compression``
    in that order. Raises ScheduleError naming the first frame without a clock.
    """
    if not _positive(time_compression):
        raise ScheduleError(f"time compression must be positive, got {time_compression}")
    clocks = []
    for name in names:
        clock = spacecraft_clock(name)
        if clock is None:
            raise ScheduleError(
                f"frame '{name}' has no spacecraft clock in its name (expected an AI4Mars "
                "id such as NLB_397681586EDR_...); use --timing fixed with --fps"
            )
        clocks.append(clock)
    order = sorted(range(len(names)), key=lambda i: clocks[i])
    if not order:
        return [], np.zeros(0)
    first = clocks[order[0]]
    arrivals = np.array([(clocks[i] - first) for i in order], dtype=np.float64)
    return order, arrivals * (1e3 / time_compression)
