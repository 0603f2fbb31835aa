"""Replay a frame stream at camera cadence through the edge runtime.

Two steps, kept apart so that each can be tested and, later, swapped:

1. **Measure**: every frame really goes through
   :meth:`edge.classify.FrameClassifier.classify_ref` (decode, preprocess,
   inference, postprocess) on this host; its service time is the sum of those
   stage timings. A frame that raises :class:`edge.decode.FrameError` is an
   error frame: its name and message are kept, and the server was busy for the
   time it took to fail.
2. **Queue**: frames arrive on a virtual clock at ``t_i = i / fps`` and are
   served one at a time, first in first out (:func:`fifo_queue`, a pure
   function). Nothing sleeps; the replay runs as fast as the host measures.

A later hardware profile can rescale the measured service times between the
two steps without touching either.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.classify import FrameClassifier
from edge.decode import FrameError
from edge.sources import FrameRef, SourceError


@dataclass(frozen=True)
class ReplayConfig:
    """How a stream is replayed.

    fps: camera cadence, frames per second (> 0). deadline_ms: end-to-end budget
    per frame (arrival to result), or None for no deadline. threads: inference
    threads. max_frames: stop after this many frames (None: the whole stream).
    warmup: frames classified once, untimed, before the replay (they are then
    replayed like the others). backend: the runner (see :mod:`edge.runners`).
    """

    fps: float
    deadline_ms: float | None = None
    threads: int = 1
    max_frames: int | None = None
    warmup: int = 2
    backend: str = "onnxruntime"

    def __post_init__(self) -> None:
        if not _positive(self.fps):
            raise ValueError(f"--fps must be a positive number of frames per second, "
                             f"got {self.fps}")
        if self.deadline_ms is not None and not _positive(self.deadline_ms):
            raise ValueError(f"--deadline-ms must be a positive number of ms, "
                             f"got {self.deadline_ms}")
        if self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max-frames must be at least 1, got {self.max_frames}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be 0 or more, got {self.warmup}")

    @property
    def period_ms(self) -> float:
        """Time between two camera frames, in ms."""
        return 1e3 / self.fps


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# --------------------------------------------------------------------------- queueing


@dataclass
class QueueTrace:
    """Single-server FIFO schedule, all float64 arrays (N,) in ms on the virtual clock.

    ``start[i] = max(arrival[i], finish[i-1])``, ``finish[i] = start[i] + service[i]``,
    ``latency[i] = finish[i] - arrival[i]``, ``queue_delay[i] = start[i] - arrival[i]``.
    """

    arrival: np.ndarray
    service: np.ndarray
    start: np.ndarray
    finish: np.ndarray

    @property
    def latency(self) -> np.ndarray:
        """End-to-end latency (ms): arrival to result."""
        return self.finish - self.arrival

    @property
    def queue_delay(self) -> np.ndarray:
        """Time spent waiting for the server (ms)."""
        return self.start - self.arrival


def arrival_times_ms(count: int, fps: float) -> np.ndarray:
    """Arrival times (ms) of ``count`` frames at ``fps``: ``t_i = 1000 * i / fps``."""
    return np.arange(count, dtype=np.float64) * (1e3 / fps)


def fifo_queue(arrivals_ms: Sequence[float], service_ms: Sequence[float]) -> QueueTrace:
    """Replay a single-server first-in-first-out queue.

    arrivals_ms: (N,) non-decreasing arrival times; service_ms: (N,) non-negative
    service times. Returns the :class:`QueueTrace` (start, finish, latency, queue delay).
    """
    arrival = np.asarray(arrivals_ms, dtype=np.float64).reshape(-1)
    service = np.asarray(service_ms, dtype=np.float64).reshape(-1)
    if arrival.shape != service.shape:
        raise ValueError(f"{arrival.size} arrival times but {service.size} service times")
    if not (np.all(np.isfinite(arrival)) and np.all(np.isfinite(service))):
        raise ValueError("arrival and service times must be finite")
    if np.any(service < 0):
        raise ValueError("service times must be non-negative")
    if np.any(np.diff(arrival) < 0):
        raise ValueError("arrival times must be non-decreasing")
    start = np.empty_like(arrival)
    finish = np.empty_like(arrival)
    free_at = -math.inf
    for i in range(arrival.size):
        start[i] = max(arrival[i], free_at)
        finish[i] = free_at = start[i] + service[i]
    return QueueTrace(arrival=arrival, service=service, start=start, finish=finish)


# --------------------------------------------------------------------------- measuring


@dataclass
class FrameTiming:
    """One replayed frame as measured on the host.

    stage_ms: decode/preprocess/inference/postprocess timings (None for an error
    frame); service_ms: time the server was busy with it; error: None, or why the
    frame could not be classified.
    """

    name: str
    service_ms: float
    stage_ms: dict[str, float] | None = None
    tiles: int = 0
    error: str | None = None


def measure_frame(classifier: FrameClassifier, ref: FrameRef) -> FrameTiming:
    """Classify one frame through ``classify_ref`` and return its timings."""
    t0 = time.perf_counter()
    try:
        result = classifier.classify_ref(ref)
    except FrameError as exc:
        busy = (time.perf_counter() - t0) * 1e3
        if ref.decode_ms is not None:
            busy += ref.decode_ms
        return FrameTiming(name=ref.name, service_ms=busy, error=str(exc))
    stages = dict(result.timings_ms)
    return FrameTiming(
        name=ref.name,
        service_ms=float(sum(stages.values())),
        stage_ms=stages,
        tiles=int(len(result.class_ids)),
    )


@dataclass
class ReplayResult:
    """Measured frames and their replayed schedule."""

    config: ReplayConfig
    frames: list[FrameTiming]
    trace: QueueTrace
    wall_s: float = 0.0
    warmed_up: int = 0

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask (N,) of frames that were classified."""
        return np.array([f.error is None for f in self.frames], dtype=bool)

    @property
    def errors(self) -> list[FrameTiming]:
        """The error frames, in stream order."""
        return [f for f in self.frames if f.error is not None]

    @property
    def misses(self) -> np.ndarray:
        """Boolean mask (N,): classified frames whose latency exceeds the deadline."""
        if self.config.deadline_ms is None:
            return np.zeros(len(self.frames), dtype=bool)
        return self.ok & (self.trace.latency > self.config.deadline_ms)

    @property
    def exit_code(self) -> int:
        """0 when every frame was classified, 2 when some were error frames."""
        return 2 if self.errors else 0


def replay(
    frames: Iterable[FrameRef],
    classifier: FrameClassifier,
    config: ReplayConfig,
    on_frame: Callable[[FrameTiming], None] | None = None,
) -> ReplayResult:
    """Measure every frame of ``frames`` on this host, then replay the FIFO queue at ``config.fps``.

    Raises SourceError when the stream yields no frame.
    """
    stream = iter(frames)
    if config.max_frames is not None:
        stream = itertools.islice(stream, config.max_frames)
    warm = list(itertools.islice(stream, config.warmup))
    for ref in warm:
        try:
            classifier.classify_ref(ref)
        except FrameError:
            pass
    timings: list[FrameTiming] = []
    start = time.perf_counter()
    for ref in itertools.chain(warm, stream):
        timing = measure_frame(classifier, ref)
        timings.append(timing)
        if on_frame is not None:
            on_frame(timing)
    wall_s = time.perf_counter() - start
    if not timings:
        raise SourceError("the source yielded no frames to replay")
    trace = fifo_queue(
        arrival_times_ms(len(timings), config.fps), [t.service_ms for t in timings]
    )
    return ReplayResult(config=config, frames=timings, trace=trace, wall_s=wall_s,
                        warmed_up=len(warm))
