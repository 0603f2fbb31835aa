"""The bounded capture queue: each policy against closed-form schedules."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.capture_queue import QueuePolicy, replay_queue, simulate_queue
from firmware_sim.replay import fifo_queue

POLICIES = [p.value for p in QueuePolicy]


def test_unbounded_queue_never_drops_and_is_the_fifo_queue():
    rng = np.random.default_rng(4)
    arrivals = np.sort(rng.uniform(0, 500, 40))
    service = rng.exponential(30, 40)
    for policy in POLICIES:
        trace = replay_queue(arrivals, service, capacity=None, policy=policy)
        assert not trace.dropped.any()
        np.testing.assert_allclose(trace.finish, fifo_queue(arrivals, service).finish)


@pytest.mark.parametrize("policy", POLICIES)
def test_no_policy_acts_while_the_server_keeps_up(policy):
    arrivals = np.arange(10) * 100.0
    trace = replay_queue(arrivals, [60.0] * 10, capacity=1, policy=policy)
    assert not trace.dropped.any()
    np.testing.assert_allclose(trace.start, arrivals)
    np.testing.assert_allclose(trace.latency, 60.0)
    np.testing.assert_allclose(trace.blocked, 0.0)


def test_drop_newest_keeps_the_queued_frames_of_a_burst():
    # N frames at once, capacity K: frame 0 is served, 1..K wait, the rest are dropped.
    n, k, s = 10, 3, 5.0
    trace = replay_queue(np.zeros(n), [s] * n, capacity=k, policy="drop-newest")
    assert list(np.flatnonzero(~trace.dropped)) == [0, 1, 2, 3]
    np.testing.assert_allclose(trace.start[:4], [0, 5, 10, 15])
    assert np.isnan(trace.start[4:]).all() and np.isnan(trace.latency[4:]).all()


def test_drop_oldest_keeps_the_freshest_frames_of_a_burst():
    n, k, s = 10, 3, 5.0
    trace = replay_queue(np.zeros(n), [s] * n, capacity=k, policy="drop-oldest")
    assert list(np.flatnonzero(~trace.dropped)) == [0, 7, 8, 9]
    np.testing.assert_allclose(trace.start[[0, 7, 8, 9]], [0, 5, 10, 15])


def test_overload_drop_newest_closed_form():
    # Period P, service 2P, one slot: frames 0, 1, then every even frame are served with a
    # steady latency of 4P; odd frames from 3 on are dropped.
    p, n = 10.0, 21
    trace = replay_queue(np.arange(n) * p, [2 * p] * n, capacity=1, policy="drop-newest")
    served = list(np.flatnonzero(~trace.dropped))
    assert served == [0, 1, *range(2, n, 2)]
    for i in range(2, n, 2):
        assert trace.start[i] == pytest.approx((i + 2) * p)
        assert trace.latency[i] == pytest.approx(4 * p)


def test_overload_drop_oldest_closed_form():
    # Same load: frames 0, 1, then every odd frame are served, each 3P after capture
    # (fresher than drop-newest); even frames from 2 on are dropped, except the last.
    p, n = 10.0, 21
    trace = replay_queue(np.arange(n) * p, [2 * p] * n, capacity=1, policy="drop-oldest")
    served = list(np.flatnonzero(~trace.dropped))
    assert served == [0, 1, *range(3, n, 2), n - 1]
    for i in range(3, n - 1, 2):
        assert trace.start[i] == pytest.approx((i + 1) * p)
        assert trace.latency[i] == pytest.approx(3 * p)


def test_block_serves_like_fifo_and_stalls_the_camera_in_closed_form():
    rng = np.random.default_rng(5)
    for k in (1, 2, 4):
        arrivals = np.sort(rng.uniform(0, 300, 50))
        service = rng.exponential(15, 50)
        trace = replay_queue(arrivals, service, capacity=k, policy="block")
        fifo = fifo_queue(arrivals, service)
        assert not trace.dropped.any()
        np.testing.assert_allclose(trace.start, fifo.start)
        np.testing.assert_allclose(trace.finish, fifo.finish)
        # A frame enters when the frame K places ahead of it starts service.
        expected = arrivals.copy()
        expected[k:] = np.maximum(arrivals[k:], fifo.start[:-k])
        np.testing.assert_allclose(trace.enqueue, expected)
        assert np.all(trace.blocked >= 0) and np.all(np.diff(trace.enqueue) >= 0)


def test_a_frame_arriving_as_the_server_frees_starts_at_once():
    trace = replay_queue([0.0, 10.0], [10.0, 1.0], capacity=1, policy="drop-newest")
    assert trace.start[1] == 10.0 and trace.queue_delay[1] == 0.0


@pytest.mark.parametrize("policy", POLICIES)
def test_service_is_asked_once_per_served_frame_in_order(policy):
    calls = []

    def service(i, start):
        calls.append((i, start))
        return 10.0

    trace = simulate_queue(np.zeros(6), service, capacity=2, policy=policy)
    served = list(np.flatnonzero(~trace.dropped))
    assert [i for i, _ in calls] == served
    assert [t for _, t in calls] == sorted(t for _, t in calls)
    assert len(served) == (6 if policy == "block" else 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 0}, "capacity"),
        ({"policy": "drop-random"}, "drop-random"),
    ],
)
def test_bad_queue_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        replay_queue([0.0], [1.0], **kwargs)


def test_a_negative_service_from_the_callable_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        simulate_queue([0.0], lambda i, t: -1.0)
