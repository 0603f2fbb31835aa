"""Replays through the real runtime: both clocks, clock-timed and bursty streams, profiles,
resources and bad input."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from sim_fixtures import GOOD_FRAMES, write_frames

from edge.classify import FrameClassifier
from edge.runners import make_runner
from edge.sources import FrameRef, open_source
from firmware_sim.profiles import HardwareProfile, derive_emulation
from firmware_sim.replay import ReplayConfig, measure_frame, replay
from firmware_sim.report import REPORT_FILE
from firmware_sim.report_md import REPORT_MD
from toolkit_cli.main import main

CLOCK_NAMES = {  # listed (sorted) order differs from clock order
    "NLA_000001000EDR_X.png": 1000,
    "NLB_000000990EDR_X.png": 990,
    "NRA_000000995EDR_X.png": 995,
    "NRB_000001010EDR_X.png": 1010,
}


def run_sim(*args):
    return main(["sim", *map(str, args)])


def read_report(folder):
    return json.loads((folder / REPORT_FILE).read_text())


def fixed_emulation(factor, memory_cap_mb=None):
    profile = HardwareProfile(key=f"x{factor:g}", title="test", speed_factor=factor,
                              memory_cap_mb=memory_cap_mb)
    return derive_emulation(profile, 1)


@pytest.fixture
def classifier(tiny_bundle):
    return FrameClassifier(tiny_bundle, make_runner(tiny_bundle))


@pytest.fixture
def clock_frames(tmp_path):
    folder = tmp_path / "navcam"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in CLOCK_NAMES:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (48, 64), dtype=np.uint8))
    return folder


def test_profile_scales_every_stage(classifier, frames_dir):
    ref = next(iter(open_source(frames_dir)))
    timing = measure_frame(classifier, ref, fixed_emulation(25.0))
    assert set(timing.stage_ms) == {"decode", "preprocess", "inference", "postprocess"}
    for stage, host in timing.host_stage_ms.items():
        assert timing.stage_ms[stage] == pytest.approx(25.0 * host)
    assert timing.service_ms == pytest.approx(25.0 * timing.host_service_ms)


def test_error_frames_are_scaled_by_the_cpu_factor(classifier):
    def broken():
        from edge.decode import FrameError

        time.sleep(0.002)
        raise FrameError("b.png: corrupt")

    timing = measure_frame(classifier, FrameRef("b.png", broken), fixed_emulation(10.0))
    assert timing.error == "b.png: corrupt"
    assert timing.service_ms == pytest.approx(10.0 * timing.host_service_ms)
    assert timing.host_service_ms >= 2.0


def test_real_clock_waits_for_arrivals_and_for_the_slower_target(classifier, frames_dir):
    config = ReplayConfig(fps=20.0, clock="real", warmup=0, deadline_ms=1000.0)
    t0 = time.perf_counter()
    result = replay(open_source(frames_dir), classifier, config, emulation=fixed_emulation(30.0))
    wall = time.perf_counter() - t0
    trace = result.trace
    # The last frame arrives at 150 ms and the run lasts at least until its emulated finish.
    assert trace.arrival[-1] == pytest.approx(150.0)
    assert wall * 1e3 >= np.nanmax(trace.finish) - 1.0
    assert np.all(result.lag_ms >= 0)
    assert all(f.measured for f in result.frames)
    for f, service in zip(result.frames, trace.service, strict=True):
        assert service == pytest.approx(f.service_ms) == pytest.approx(30 * f.host_service_ms)


def test_real_clock_never_decodes_dropped_frames(classifier, tmp_path, monkeypatch):
    frames = write_frames(tmp_path / "six", count=6)
    calls = []
    original = FrameClassifier.classify_ref

    def spy(self, ref):
        calls.append(ref.name)
        return original(self, ref)

    monkeypatch.setattr(FrameClassifier, "classify_ref", spy)
    # All six frames in one burst, one slot, drop-newest: only 0 and 1 are ever classified.
    config = ReplayConfig(fps=1.0, burst=6, clock="real", warmup=0, queue_size=1,
                          queue_policy="drop-newest")
    result = replay(open_source(frames), classifier, config)
    assert calls == ["f000.png", "f001.png"]
    assert list(result.dropped) == [False, False, True, True, True, True]
    assert [f.measured for f in result.frames] == [True, True, False, False, False, False]


def test_virtual_clock_is_repeatable_for_given_service_times(classifier, frames_dir):
    config = ReplayConfig(fps=1e4, warmup=0, queue_size=1, queue_policy="drop-oldest")
    a = replay(open_source(frames_dir), classifier, config)
    from firmware_sim.capture_queue import replay_queue

    again = replay_queue(a.trace.arrival, [f.service_ms for f in a.frames], 1, "drop-oldest")
    np.testing.assert_array_equal(again.dropped, a.trace.dropped)
    np.testing.assert_allclose(again.finish, a.trace.finish, equal_nan=True)


def test_clock_timing_replays_in_clock_order_with_compression(clock_frames, tiny_bundle,
                                                              tmp_path):
    out = tmp_path / "sim"
    assert run_sim(clock_frames, "--timing", "clock", "--time-compression", "5", "--model",
                   tiny_bundle.path, "--report", out, "-q") == 0
    report = read_report(out)
    ordered = sorted(CLOCK_NAMES, key=CLOCK_NAMES.get)
    assert [t["frame"] for t in report["timeline"]] == ordered
    first = min(CLOCK_NAMES.values())
    expected = [(CLOCK_NAMES[n] - first) * 1000 / 5 for n in ordered]
    assert [t["arrival_ms"] for t in report["timeline"]] == pytest.approx(expected)
    assert report["offered_fps"] == pytest.approx(3 / 4.0)  # 3 gaps over 20 s / 5
    assert any("clock order" in w for w in report["warnings"])


def test_clock_timing_refuses_names_without_a_clock(frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--timing", "clock", "--model", tiny_bundle.path,
                   "--report", out) == 1
    assert "error: frame 'f000.png' has no spacecraft clock" in capsys.readouterr().err
    assert not out.exists()


def test_burst_stream_through_the_cli(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", "4", "--burst", "2", "--model", tiny_bundle.path,
                   "--report", out, "-q", "--queue-size", "0") == 0
    timeline = read_report(out)["timeline"]
    assert [t["arrival_ms"] for t in timeline] == [0, 0, 500, 500]
    assert timeline[1]["queue_delay_ms"] > 0 and timeline[0]["queue_delay_ms"] == 0


def test_report_records_profile_factors_resources_and_config(frames_dir, tiny_bundle, tmp_path):
    profiles = tmp_path / "p.json"
    profiles.write_text(json.dumps({"profiles": {"tiny-ram": {
        "title": "1 MB of RAM", "speed_factor": 3, "memory_cap_mb": 1}}}))
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--profiles", profiles, "--profile", "tiny-ram", "--queue-policy", "block",
                   "--queue-size", "2", "-q") == 0
    report = read_report(out)
    assert report["emulation"]["profile"]["key"] == "tiny-ram"
    assert report["emulation"]["stage_factors"]["inference"] == 3.0
    res = report["resources"]
    assert res["peak_rss_mb"] > 1 and res["over_memory_cap"] is True and res["cpu_s"] > 0
    assert any("exceeds the profile's memory cap" in w for w in report["warnings"])
    assert report["config"]["queue_policy"] == "block" and report["config"]["queue_size"] == 2
    assert report["stage_ms"]["inference"]["p50"] == pytest.approx(
        3 * report["host_stage_ms"]["inference"]["p50"], abs=0.005)  # both rounded to 1 us


def test_a_corrupt_frame_mid_stream_still_gives_every_output(frames_with_corrupt, tiny_bundle,
                                                             tmp_path, capsys):
    out = tmp_path / "sim"
    assert run_sim(frames_with_corrupt, "--fps", "5", "--model", tiny_bundle.path,
                   "--report", out, "--profile", "rad750", "--deadline-ms", "60000") == 2
    report = read_report(out)
    assert report["frames"] == {"replayed": GOOD_FRAMES + 1, "classified": GOOD_FRAMES,
                                "errors": 1, "dropped": 0, "late": 0, "warmup": 2,
                                "tiles": GOOD_FRAMES * 4}
    assert report["timeline"][2]["status"] == "error"  # sorted after f001.png
    assert (out / REPORT_MD).is_file() and (out / "latency_cdf.png").is_file()
    assert "skipped f001_corrupt.png" in capsys.readouterr().err


@pytest.mark.parametrize("fps", ["0", "-2"])
def test_non_positive_fps_is_refused_before_anything_runs(fps, frames_dir, tiny_bundle,
                                                          tmp_path, capsys):
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", fps, "--model", tiny_bundle.path, "--report", out,
                   "--profile", "rad750") == 1
    assert "error: --fps must be a positive number" in capsys.readouterr().err
    assert not out.exists()


def test_empty_stream_is_refused_on_the_real_clock_too(tiny_bundle, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_sim(empty, "--fps", "5", "--clock", "real", "--model", tiny_bundle.path,
                   "--report", tmp_path / "sim") == 1
    assert "holds no image files" in capsys.readouterr().err
