"""The bounded capture queue between camera and classifier, as a discrete-event simulation.

One server (the classifier) takes frames first in, first out. Frames that arrive while it
is busy wait in a queue of ``capacity`` slots (the frame in service holds no slot). When a
frame arrives and every slot is taken, the policy decides:

- ``drop-oldest``: the oldest waiting frame is discarded and the new one queued (the
  classifier always works on the freshest terrain);
- ``drop-newest``: the arriving frame is discarded (what is queued is kept);
- ``block``: the camera stalls until a slot frees (when the head of the queue starts
  service); nothing is dropped, the frame enters late and its latency still counts from
  its scheduled capture. Later frames cannot overtake it (the camera hands frames over in
  order).

Ties are resolved in this order: a service that ends at time ``t`` frees the server before
a frame arriving at ``t`` is handled, so such a frame starts at once.

:func:`simulate_queue` is pure when its ``service`` callable is (an array lookup): the
virtual clock. The real-time replay calls it with a callable that really classifies the
frame when the emulated server starts it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np


class QueuePolicy(str, Enum):
    """What happens to a frame that finds the capture queue full."""

    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"
    BLOCK = "block"


POLICIES = tuple(p.value for p in QueuePolicy)


@dataclass
class QueueTrace:
    """One replayed schedule; float64 arrays (N,) in ms on the emulated clock.

    arrival: scheduled capture time; enqueue: when the frame entered the queue (later
    than arrival only when a blocking camera stalled); start/finish: service on the
    classifier (NaN for dropped frames); service: emulated service time (NaN when
    dropped); dropped: bool (N,).
    """

    arrival: np.ndarray
    service: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    enqueue: np.ndarray | None = None
    dropped: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.enqueue is None:
            self.enqueue = self.arrival.copy()
        if self.dropped is None:
            self.dropped = np.zeros(self.arrival.shape, dtype=bool)

    @property
    def served(self) -> np.ndarray:
        """Boolean mask (N,): frames the classifier worked on."""
        return ~self.dropped

    @property
    def latency(self) -> np.ndarray:
        """End-to-end latency (ms), capture to result; NaN for dropped frames."""
        return self.finish - self.arrival

    @property
    def queue_delay(self) -> np.ndarray:
        """Capture to start of service (ms), camera stall included; NaN for dropped frames."""
        return self.start - self.arrival

    @property
    def blocked(self) -> np.ndarray:
        """Time (ms) the camera stalled before the frame entered the queue (block policy)."""
        return self.enqueue - self.arrival


def _check_arrivals(arrivals_ms: Sequence[float]) -> np.ndarray:
    arrival = np.asarray(arrivals_ms, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arrival)):
        raise ValueError("arrival times must be finite")
    if np.any(np.diff(arrival) < 0):
        raise ValueError("arrival times must be non-decreasing")
    return arrival


def simulate_queue(
    arrivals_ms: Sequence[float],
    service: Callable[[int, float], float],
    capacity: int | None = None,
    policy: QueuePolicy | str = QueuePolicy.DROP_OLDEST,
) -> QueueTrace:
    """Replay a single-server queue with ``capacity`` waiting slots (None: unbounded).

    arrivals_ms: (N,) non-decreasing capture times. ``service(i, start_ms)`` returns the
    service time (ms, >= 0) of frame ``i`` when the server starts it at ``start_ms``; it is
    called once per served frame, in service order (increasing ``i``), never for a
    dropped frame.
    """
    arrival = _check_arrivals(arrivals_ms)
    policy = QueuePolicy(policy)
    if capacity is not None and capacity < 1:
        raise ValueError(f"queue capacity must be at least 1 (or None), got {capacity}")
    n = arrival.size
    enqueue = arrival.copy()
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    svc = np.full(n, np.nan)
    dropped = np.zeros(n, dtype=bool)
    waiting: deque[int] = deque()
    free_at = -math.inf

    def begin(j: int, at: float) -> None:
        nonlocal free_at
        s = float(service(j, at))
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"service time of frame {j} must be finite and non-negative, got {s}")
        start[j], svc[j] = at, s
        finish[j] = free_at = at + s

    def serve_until(t: float) -> None:
        # Start every waiting frame whose turn comes at or before t.
        while waiting and free_at <= t:
            j = waiting.popleft()
            begin(j, max(free_at, enqueue[j]))

    handed_over = -math.inf  # a blocking camera hands frames over in order
    for i in range(n):
        t = max(arrival[i], handed_over) if policy is QueuePolicy.BLOCK else arrival[i]
        serve_until(t)
        if free_at <= t and not waiting:
            enqueue[i] = t
            begin(i, t)
            handed_over = t
            continue
        if capacity is None or len(waiting) < capacity:
            enqueue[i] = t
            waiting.append(i)
        elif policy is QueuePolicy.DROP_NEWEST:
            dropped[i] = True
        elif policy is QueuePolicy.DROP_OLDEST:
            dropped[waiting.popleft()] = True
            enqueue[i] = t
            waiting.append(i)
        else:  # block: the camera waits for the head of the queue to start service
            j = waiting.popleft()
            begin(j, max(free_at, enqueue[j]))
            enqueue[i] = start[j]
            waiting.append(i)
        handed_over = enqueue[i]
    serve_until(math.inf)
    return QueueTrace(arrival=arrival, service=svc, start=start, finish=finish,
                      enqueue=enqueue, dropped=dropped)


def replay_queue(
    arrivals_ms: Sequence[float],
    service_ms: Sequence[float],
    capacity: int | None = None,
    policy: QueuePolicy | str = QueuePolicy.DROP_OLDEST,
) -> QueueTrace:
    """:func:`simulate_queue` with service times known in advance: (N,) ms, non-negative."""
    arrival = _check_arrivals(arrivals_ms)
    service = np.asarray(service_ms, dtype=np.float64).reshape(-1)
    if arrival.shape != service.shape:
        raise ValueError(f"{arrival.size} arrival times but {service.size} service times")
    if not np.all(np.isfinite(service)):
        raise ValueError("service times must be finite")
    if np.any(service < 0):
        raise ValueError("service times must be non-negative")
    return simulate_queue(arrival, lambda i, _t: float(service[i]), capacity, policy)
