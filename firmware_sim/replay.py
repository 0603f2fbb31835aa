"""Replay a frame stream at camera cadence through the edge runtime, on either clock.

Every frame really goes through :meth:`edge.classify.FrameClassifier.classify_ref` (decode,
preprocess, inference, postprocess: the code path of ``edge classify``) on this host. A
hardware profile (:class:`~firmware_sim.profiles.Emulation`) scales each stage's measured
time to the target's; a frame that raises :class:`edge.decode.FrameError` is an error
frame (the server was busy for the time it took to fail, scaled by the CPU factor).

Two clocks:

- **virtual** (default): every frame is measured once, in stream order, then the capture
  queue is replayed as a discrete-event simulation (:func:`~firmware_sim.capture_queue.
  replay_queue`) with the emulated service times. Nothing sleeps; the schedule is
  repeatable for given service times.
- **real**: the same queue simulation is driven live. When the emulated server starts a
  frame, the simulator first sleeps until that moment of the run's wall clock (so no
  frame is classified before its capture time), classifies it, and, when the target is
  slower than the host (factor > 1), sleeps out the difference so that the wall clock
  keeps pace with the emulated server. A target faster than the host cannot be shown in
  real time: its service is accounted on the emulated timeline and the wall clock lags;
  the lag is reported. Dropped frames are never decoded.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.classify import FrameClassifier
from edge.decode import FrameError
from edge.sources import FrameRef, SourceError
from firmware_sim.capture_queue import (
    POLICIES,
    QueuePolicy,
    QueueTrace,
    replay_queue,
    simulate_queue,
)
from firmware_sim.profiles import Emulation, HardwareProfile, derive_emulation
from firmware_sim.streams import StreamConfig, clock_schedule, fixed_rate_ms

try:  # POSIX only; elsewhere the peak memory is not reported
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

CLOCKS = ("virtual", "real")
DEFAULT_QUEUE_SIZE = 8


@dataclass(frozen=True)
class ReplayConfig:
    """How a stream is replayed.

    fps: camera cadence, frames per second (> 0; may be None with the clock timing, which
    takes the times from the frame names). deadline_ms: end-to-end budget per frame
    (capture to result), or None. threads: inference threads on this host. max_frames:
    stop after this many frames (None: all). warmup: frames classified once, untimed,
    before the replay (they are then replayed like the others). backend: the runner (see
    :mod:`edge.runners`). timing: "fixed" (``fps``) or "clock" (spacecraft clock in the
    names, divided by ``time_compression``). burst: frames captured together.
    queue_size: waiting slots of the capture queue (None: unbounded); queue_policy: see
    :mod:`firmware_sim.capture_queue`. clock: "virtual" or "real". max_miss_rate: the
    gate, a fraction in [0, 1] (needs ``deadline_ms``).
    """

    fps: float | None
    deadline_ms: float | None = None
    threads: int = 1
    max_frames: int | None = None
    warmup: int = 2
    backend: str = "onnxruntime"
    timing: str = "fixed"
    time_compression: float = 1.0
    burst: int = 1
    queue_size: int | None = DEFAULT_QUEUE_SIZE
    queue_policy: str = QueuePolicy.DROP_OLDEST.value
    clock: str = "virtual"
    max_miss_rate: float | None = None

    def __post_init__(self) -> None:
        if not (_positive(self.fps) or (self.fps is None and self.timing == "clock")):
            if self.fps is None:
                raise ValueError("--fps is required (frames per second), unless --timing clock "
                                 "takes the times from the frame names")
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
        if self.queue_size is not None and self.queue_size < 1:
            raise ValueError(f"--queue-size must be at least 1 (0 on the command line means "
                             f"unbounded), got {self.queue_size}")
        if self.queue_policy not in POLICIES:
            raise ValueError(f"--queue-policy must be one of {', '.join(POLICIES)}, "
                             f"got {self.queue_policy!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.max_miss_rate is not None:
            if not (isinstance(self.max_miss_rate, (int, float))
                    and 0.0 <= self.max_miss_rate <= 1.0):
                raise ValueError(f"--max-miss-rate must be a fraction between 0 and 1, "
                                 f"got {self.max_miss_rate}")
            if self.deadline_ms is None:
                raise ValueError("--max-miss-rate needs --deadline-ms (a miss is a frame "
                                 "finishing after the deadline)")
        self.stream  # noqa: B018 - validates timing, time_compression and burst

    @property
    def stream(self) -> StreamConfig:
        """The arrival schedule's configuration."""
        return StreamConfig(fps=self.fps or 1.0, timing=self.timing,
                            time_compression=self.time_compression, burst=self.burst)

    @property
    def period_ms(self) -> float | None:
        """Time between two camera frames, in ms (None for the clock timing without --fps)."""
        return 1e3 / self.fps if self.fps else None


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# --------------------------------------------------------------------------- queueing


def arrival_times_ms(count: int, fps: float) -> np.ndarray:
    """Arrival times (ms) of ``count`` frames at ``fps``: ``t_i = 1000 * i / fps``."""
    return fixed_rate_ms(count, fps)


def fifo_queue(arrivals_ms: Sequence[float], service_ms: Sequence[float]) -> QueueTrace:
    """An unbounded single-server first-in-first-out queue (nothing is ever dropped).

    arrivals_ms: (N,) non-decreasing arrival times; service_ms: (N,) non-negative service
    times. Returns the :class:`QueueTrace` (start, finish, latency, queue delay).
    """
    return replay_queue(arrivals_ms, service_ms, capacity=None)


# --------------------------------------------------------------------------- measuring


@dataclass
class FrameTiming:
    """One replayed frame.

    service_ms / stage_ms: emulated on the target (host times x the profile's factors);
    host_service_ms / host_stage_ms: as measured here (None: same as emulated). stage_ms is
    None for an error frame; measured is False for a frame the real-time replay dropped
    before classifying it; error: None, or why the frame could not be classified.
    """

    name: str
    service_ms: float
    stage_ms: dict[str, float] | None = None
    tiles: int = 0
    error: str | None = None
    host_service_ms: float | None = None
    host_stage_ms: dict[str, float] | None = None
    measured: bool = True


def measure_frame(classifier: FrameClassifier, ref: FrameRef,
                  emulation: Emulation | None = None) -> FrameTiming:
    """Classify one frame through ``classify_ref``; host timings and, scaled, the target's."""
    t0 = time.perf_counter()
    try:
        result = classifier.classify_ref(ref)
    except FrameError as exc:
        busy = (time.perf_counter() - t0) * 1e3
        if ref.decode_ms is not None:
            busy += ref.decode_ms
        factor = emulation.cpu_factor if emulation is not None else 1.0
        return FrameTiming(name=ref.name, service_ms=busy * factor, error=str(exc),
                           host_service_ms=busy)
    host = dict(result.timings_ms)
    stages = emulation.scale(host) if emulation is not None else dict(host)
    return FrameTiming(
        name=ref.name,
        service_ms=float(sum(stages.values())),
        stage_ms=stages,
        tiles=int(len(result.class_ids)),
        host_service_ms=float(sum(host.values())),
        host_stage_ms=host,
    )


@dataclass
class ResourceUsage:
    """Process resources over a replay. cpu_percent: process CPU time / wall time x 100
    (above 100 with several threads); peak_rss_mb: the process's peak resident set size
    since it started (``getrusage(RUSAGE_SELF).ru_maxrss``)."""

    wall_s: float
    cpu_s: float
    cpu_percent: float | None
    peak_rss_mb: float | None


def peak_rss_mb() -> float | None:
    """This process's peak resident set size so far, MiB (None where it cannot be told)."""
    if resource is None:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


class UsageMeter:
    """Measures wall time, CPU time and peak memory between construction and :meth:`stop`."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> ResourceUsage:
        """The usage since construction."""
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        return ResourceUsage(wall_s=wall, cpu_s=cpu,
                             cpu_percent=100.0 * cpu / wall if wall > 0 else None,
                             peak_rss_mb=peak_rss_mb())


# --------------------------------------------------------------------------- results


@dataclass
class ReplayResult:
    """Replayed frames (in replay order) and their schedule on the emulated clock."""

    config: ReplayConfig
    frames: list[FrameTiming]
    trace: QueueTrace
    wall_s: float = 0.0
    warmed_up: int = 0
    emulation: Emulation | None = None
    usage: ResourceUsage | None = None
    lag_ms: np.ndarray | None = None
    reordered: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> np.ndarray:
        """Boolean mask (N,): frames the capture queue dropped."""
        return np.asarray(self.trace.dropped, dtype=bool)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask (N,) of frames that were classified."""
        failed = np.array([f.error is not None for f in self.frames], dtype=bool)
        return ~self.dropped & ~failed

    @property
    def errors(self) -> list[FrameTiming]:
        """The error frames the classifier met, in replay order."""
        return [f for f, d in zip(self.frames, self.dropped, strict=True)
                if f.error is not None and not d]

    @property
    def late(self) -> np.ndarray:
        """Boolean mask (N,): classified frames whose latency exceeds the deadline."""
        if self.config.deadline_ms is None:
            return np.zeros(len(self.frames), dtype=bool)
        with np.errstate(invalid="ignore"):
            return self.ok & (self.trace.latency > self.config.deadline_ms)

    @property
    def misses(self) -> np.ndarray:
        """Boolean mask (N,): frames that missed the deadline (late, or dropped)."""
        if self.config.deadline_ms is None:
            return np.zeros(len(self.frames), dtype=bool)
        return self.late | self.dropped

    @property
    def miss_rate(self) -> float | None:
        """Misses / (classified + dropped) frames; None without a deadline or such frames."""
        if self.config.deadline_ms is None:
            return None
        judged = int(np.count_nonzero(self.ok | self.dropped))
        return float(np.count_nonzero(self.misses)) / judged if judged else None

    @property
    def gate_failed(self) -> bool:
        """True when the miss rate exceeds ``config.max_miss_rate``."""
        limit = self.config.max_miss_rate
        rate = self.miss_rate
        return limit is not None and rate is not None and rate > limit

    @property
    def exit_code(self) -> int:
        """3 gate failed (miss rate above --max-miss-rate), 2 some error frames, else 0."""
        if self.gate_failed:
            return 3
        return 2 if self.errors else 0


# --------------------------------------------------------------------------- replaying


def identity_emulation(threads: int = 1) -> Emulation:
    """The ``host`` profile's emulation: every factor 1."""
    profile = HardwareProfile(key="host", title="This host, as it is (no scaling)",
                              speed_factor=1.0, origin="built-in")
    return derive_emulation(profile, threads)


def _warm_up(classifier: FrameClassifier, refs: Iterable[FrameRef]) -> None:
    for ref in refs:
        try:
            classifier.classify_ref(ref)
        except FrameError:
            pass


def replay(
    frames: Iterable[FrameRef],
    classifier: FrameClassifier,
    config: ReplayConfig,
    on_frame: Callable[[FrameTiming], None] | None = None,
    emulation: Emulation | None = None,
) -> ReplayResult:
    """Replay ``frames`` through ``classifier`` under ``emulation`` (None: the host as it is).

    Raises SourceError when the stream yields no frame, ScheduleError (a ValueError) when
    ``config.timing == "clock"`` and a frame name carries no spacecraft clock.
    """
    emulation = emulation or identity_emulation(config.threads)
    stream: Iterable[FrameRef] = iter(frames)
    if config.max_frames is not None:
        stream = itertools.islice(stream, config.max_frames)
    order: list[int] | None = None
    arrivals: np.ndarray | None = None
    if config.timing == "clock" or config.clock == "real":
        refs = list(stream)
        if not refs:
            raise SourceError("the source yielded no frames to replay")
        if config.timing == "clock":
            order, arrivals = clock_schedule([r.name for r in refs], config.time_compression)
            refs = [refs[i] for i in order]
        stream = iter(refs)
    warm = list(itertools.islice(stream, config.warmup))
    _warm_up(classifier, warm)
    stream = itertools.chain(warm, stream)
    notes = []
    reordered = order is not None and order != sorted(order)
    if reordered:
        notes.append("frames were replayed in spacecraft-clock order, not in the order the "
                     "source lists them")
    if config.clock == "real":
        result = _replay_real(list(stream), classifier, config, emulation, arrivals, on_frame)
    else:
        result = _replay_virtual(stream, classifier, config, emulation, arrivals, on_frame)
    result.warmed_up = len(warm)
    result.reordered = reordered
    result.notes.extend(notes)
    return result


def _arrivals(count: int, config: ReplayConfig, clock_arrivals: np.ndarray | None) -> np.ndarray:
    if clock_arrivals is not None:
        return clock_arrivals[:count]
    return fixed_rate_ms(count, config.fps, config.burst)


def _replay_virtual(
    stream: Iterable[FrameRef],
    classifier: FrameClassifier,
    config: ReplayConfig,
    emulation: Emulation,
    clock_arrivals: np.ndarray | None,
    on_frame: Callable[[FrameTiming], None] | None,
) -> ReplayResult:
    timings: list[FrameTiming] = []
    meter = UsageMeter()
    for ref in stream:
        timing = measure_frame(classifier, ref, emulation)
        timings.append(timing)
        if on_frame is not None:
            on_frame(timing)
    usage = meter.stop()
    if not timings:
        raise SourceError("the source yielded no frames to replay")
    trace = replay_queue(_arrivals(len(timings), config, clock_arrivals),
                         [t.service_ms for t in timings],
                         capacity=config.queue_size, policy=config.queue_policy)
    return ReplayResult(config=config, frames=timings, trace=trace, wall_s=usage.wall_s,
                        emulation=emulation, usage=usage)


def _sleep_until(deadline: float) -> None:
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def _replay_real(
    refs: list[FrameRef],
    classifier: FrameClassifier,
    config: ReplayConfig,
    emulation: Emulation,
    clock_arrivals: np.ndarray | None,
    on_frame: Callable[[FrameTiming], None] | None,
) -> ReplayResult:
    if not refs:
        raise SourceError("the source yielded no frames to replay")
    n = len(refs)
    timings: list[FrameTiming | None] = [None] * n
    lag = np.full(n, np.nan)
    meter = UsageMeter()
    t0 = time.perf_counter()

    def serve(i: int, start_ms: float) -> float:
        _sleep_until(t0 + start_ms / 1e3)
        began = time.perf_counter()
        lag[i] = (began - t0) * 1e3 - start_ms
        timing = measure_frame(classifier, refs[i], emulation)
        if timing.service_ms > (time.perf_counter() - began) * 1e3:
            _sleep_until(began + timing.service_ms / 1e3)  # wait out the slower target
        timings[i] = timing
        if on_frame is not None:
            on_frame(timing)
        return timing.service_ms

    trace = simulate_queue(_arrivals(n, config, clock_arrivals), serve,
                           capacity=config.queue_size, policy=config.queue_policy)
    usage = meter.stop()
    frames = [t if t is not None else FrameTiming(name=refs[i].name, service_ms=math.nan,
                                                  measured=False)
              for i, t in enumerate(timings)]
    return ReplayResult(config=config, frames=frames, trace=trace, wall_s=usage.wall_s,
                        emulation=emulation, usage=usage, lag_ms=lag)
