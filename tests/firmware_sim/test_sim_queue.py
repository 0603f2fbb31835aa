"""The pure FIFO queue replay and the replay configuration: closed-form cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware_sim.replay import ReplayConfig, arrival_times_ms, fifo_queue


def reference_finish(arrivals: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Closed form of the single-server FIFO recurrence (Lindley):
    finish_i = S_i + max_{j <= i} (a_j - S_{j-1}), S the cumulative service."""
    cum = np.cumsum(service)
    before = np.concatenate([[0.0], cum[:-1]])
    return cum + np.maximum.accumulate(arrivals - before)


def test_arrival_times_follow_the_camera_cadence():
    np.testing.assert_allclose(arrival_times_ms(5, 4.0), [0, 250, 500, 750, 1000])
    assert arrival_times_ms(0, 2.0).shape == (0,)


def test_service_shorter_than_period_never_queues():
    period, service = 100.0, 30.0
    arrivals = arrival_times_ms(20, 1e3 / period)
    trace = fifo_queue(arrivals, [service] * 20)
    np.testing.assert_array_equal(trace.queue_delay, np.zeros(20))
    np.testing.assert_allclose(trace.start, arrivals)
    np.testing.assert_allclose(trace.latency, np.full(20, service))


def test_service_equal_to_period_is_the_boundary_without_queueing():
    trace = fifo_queue([0.0, 50.0, 100.0, 150.0], [50.0] * 4)
    np.testing.assert_allclose(trace.queue_delay, 0.0)
    np.testing.assert_allclose(trace.latency, 50.0)


def test_service_twice_the_period_grows_queue_delay_linearly():
    period, n = 40.0, 12
    arrivals = np.arange(n) * period
    trace = fifo_queue(arrivals, [2 * period] * n)
    i = np.arange(n)
    np.testing.assert_allclose(trace.queue_delay, i * period)
    np.testing.assert_allclose(trace.start, 2 * period * i)
    np.testing.assert_allclose(trace.latency, (i + 2) * period)
    assert np.all(np.diff(trace.queue_delay) == pytest.approx(period))


def test_burst_arrivals_are_served_one_after_another():
    service, n = 7.0, 6
    trace = fifo_queue(np.zeros(n), [service] * n)
    i = np.arange(n)
    np.testing.assert_allclose(trace.start, i * service)
    np.testing.assert_allclose(trace.queue_delay, i * service)
    np.testing.assert_allclose(trace.latency, (i + 1) * service)


def test_queue_drains_during_an_idle_gap():
    trace = fifo_queue([0.0, 0.0, 0.0, 100.0], [10.0, 10.0, 10.0, 10.0])
    np.testing.assert_allclose(trace.start, [0, 10, 20, 100])
    np.testing.assert_allclose(trace.finish, [10, 20, 30, 110])
    np.testing.assert_allclose(trace.queue_delay, [0, 10, 20, 0])


def test_matches_the_closed_form_on_random_streams():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        arrivals = np.sort(rng.uniform(0, 1000, n))
        service = rng.exponential(20, n)
        trace = fifo_queue(arrivals, service)
        np.testing.assert_allclose(trace.finish, reference_finish(arrivals, service))
        assert np.all(trace.queue_delay >= 0)
        assert np.all(np.diff(trace.finish) > 0) or n == 1
        np.testing.assert_allclose(trace.latency, trace.queue_delay + service)


def test_empty_stream_gives_an_empty_trace():
    trace = fifo_queue([], [])
    assert trace.latency.shape == (0,)


@pytest.mark.parametrize(
    ("arrivals", "service", "match"),
    [
        ([0.0, 1.0], [1.0], "arrival times but"),
        ([0.0, 1.0], [1.0, -1.0], "non-negative"),
        ([1.0, 0.0], [1.0, 1.0], "non-decreasing"),
        ([0.0, math.nan], [1.0, 1.0], "finite"),
    ],
)
def test_bad_inputs_are_refused(arrivals, service, match):
    with pytest.raises(ValueError, match=match):
        fifo_queue(arrivals, service)


@pytest.mark.parametrize("fps", [0, -1.0, math.nan, math.inf])
def test_config_refuses_non_positive_fps(fps):
    with pytest.raises(ValueError, match="--fps"):
        ReplayConfig(fps=fps)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"deadline_ms": 0.0}, "--deadline-ms"),
        ({"threads": 0}, "--threads"),
        ({"max_frames": 0}, "--max-frames"),
        ({"warmup": -1}, "--warmup"),
    ],
)
def test_config_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplayConfig(fps=2.0, **kwargs)


def test_config_period():
    assert ReplayConfig(fps=4.0).period_ms == pytest.approx(250.0)
