"""Arrival schedules: fixed rate, bursts, and the spacecraft clock of AI4Mars ids."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.replay import ReplayConfig
from firmware_sim.streams import (
    ScheduleError,
    StreamConfig,
    clock_schedule,
    fixed_rate_ms,
    spacecraft_clock,
)


def test_fixed_rate():
    np.testing.assert_allclose(fixed_rate_ms(4, 2.0), [0, 500, 1000, 1500])
    assert fixed_rate_ms(0, 2.0).shape == (0,)


def test_bursts_arrive_together_at_the_same_mean_rate():
    arrivals = fixed_rate_ms(7, 4.0, burst=3)
    np.testing.assert_allclose(arrivals, [0, 0, 0, 750, 750, 750, 1500])
    # Mean offered rate over whole bursts is still 4 fps: 6 frames in 1.5 s.
    assert 6 / (arrivals[6] / 1e3) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("name", "clock"),
    [
        ("NLB_397681586EDR_F0020000AUT_04096M1.jpg", 397681586),
        ("NRA_626356326EDR_F0020000AUT_04096M1.png", 626356326),
        ("sol/0042/NLA_411875153EDR_x.jpg", 411875153),
        ("NLC_397681586EDR.jpg", None),  # compute element is A or B
        ("NL_397681586EDR.jpg", None),
        ("NLB_39768158EDR.jpg", None),  # 8 digits only
        ("f000.png", None),
        ("xNLB_397681586.jpg", None),
    ],
)
def test_spacecraft_clock_parsing(name, clock):
    assert spacecraft_clock(name) == clock


def test_clock_schedule_orders_by_clock_and_compresses_time():
    names = ["NRB_000000130EDR.png", "NLA_000000100EDR.png", "NLB_000000130EDR.png",
             "NLA_000000160EDR.png"]
    order, arrivals = clock_schedule(names, time_compression=10.0)
    # Stable: the two frames at clock 130 keep their listed order.
    assert order == [1, 0, 2, 3]
    np.testing.assert_allclose(arrivals, [0, 3000, 3000, 6000])  # (clock - 100) s / 10


def test_clock_schedule_names_the_frame_without_a_clock():
    with pytest.raises(ScheduleError, match="f001.png.*--timing fixed"):
        clock_schedule(["NLA_000000100EDR.png", "f001.png"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fps": 0.0}, "--fps"),
        ({"timing": "sol"}, "--timing"),
        ({"time_compression": 0.0}, "--time-compression"),
        ({"burst": 0}, "--burst"),
        ({"timing": "clock", "burst": 2}, "--burst"),
    ],
)
def test_stream_config_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamConfig(**kwargs)


def test_replay_config_needs_fps_only_for_fixed_timing():
    assert ReplayConfig(fps=None, timing="clock").period_ms is None
    with pytest.raises(ValueError, match="--fps is required"):
        ReplayConfig(fps=None)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"queue_size": 0}, "--queue-size"),
        ({"queue_policy": "lifo"}, "--queue-policy"),
        ({"clock": "sidereal"}, "--clock"),
        ({"max_miss_rate": 0.1}, "needs --deadline-ms"),
        ({"max_miss_rate": 1.5, "deadline_ms": 10.0}, "--max-miss-rate"),
    ],
)
def test_replay_config_refuses_bad_queue_clock_and_gate(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplayConfig(fps=2.0, **kwargs)
