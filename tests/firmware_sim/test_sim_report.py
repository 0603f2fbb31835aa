"""The simulator report: statistics, deadline misses, error frames, atomic writing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.latency import PERCENTILES
from firmware_sim.capture_queue import replay_queue
from firmware_sim.replay import (
    FrameTiming,
    ReplayConfig,
    ReplayResult,
    arrival_times_ms,
    fifo_queue,
)
from firmware_sim.report import (
    REPORT_FILE,
    SCHEMA_VERSION,
    build_report,
    format_summary,
    write_report,
)

STAT_ORDER = ["min", *[f"p{p}" for p in PERCENTILES], "max"]


def synthetic_result(service_ms, config, errors=()):
    """A ReplayResult from given service times; indices in ``errors`` are error frames."""
    frames = []
    for i, s in enumerate(service_ms):
        if i in errors:
            frames.append(FrameTiming(name=f"f{i}.png", service_ms=s, error=f"f{i}.png: corrupt"))
        else:
            stages = {"decode": s * 0.1, "preprocess": s * 0.2, "inference": s * 0.6,
                      "postprocess": s * 0.1}
            frames.append(FrameTiming(name=f"f{i}.png", service_ms=s, stage_ms=stages, tiles=4))
    trace = fifo_queue(arrival_times_ms(len(frames), config.fps), service_ms)
    return ReplayResult(config=config, frames=frames, trace=trace, wall_s=0.1)


def assert_monotone(stats):
    values = [stats[k] for k in STAT_ORDER]
    assert values == sorted(values), stats
    assert stats["min"] <= stats["mean"] <= stats["max"]


def test_percentiles_are_monotone(tiny_bundle):
    rng = np.random.default_rng(0)
    config = ReplayConfig(fps=10.0, deadline_ms=150.0)
    result = synthetic_result(rng.exponential(90.0, 200).tolist(), config)
    report = build_report(result, "synthetic", tiny_bundle)
    for key in ("latency_ms", "queue_delay_ms", "service_ms"):
        assert report[key]["count"] == 200
        assert_monotone(report[key])
    for stats in report["stage_ms"].values():
        assert_monotone(stats)
    assert list(report["stage_ms"]) == ["decode", "preprocess", "inference", "postprocess"]
    # End-to-end latency is never below the service time it contains.
    assert report["latency_ms"]["p50"] >= report["service_ms"]["p50"]


def test_deadline_misses_and_throughput_in_closed_form(tiny_bundle):
    # Period 100 ms, service 200 ms: latency (i + 2) * 100 ms for frame i.
    config = ReplayConfig(fps=10.0, deadline_ms=450.0)
    result = synthetic_result([200.0] * 5, config)
    report = build_report(result, "synthetic", tiny_bundle)
    assert [t["latency_ms"] for t in report["timeline"]] == [200, 300, 400, 500, 600]
    assert report["deadline_misses"] == 2
    assert report["miss_rate"] == pytest.approx(0.4)
    assert [t["missed"] for t in report["timeline"]] == [False, False, False, True, True]
    assert report["throughput_fps"] == pytest.approx(5.0)
    assert report["offered_fps"] == 10.0
    assert report["utilization"] == pytest.approx(2.0)
    assert report["busy_s"] == pytest.approx(1.0)
    assert report["makespan_s"] == pytest.approx(1.0)
    assert report["queue_delay_ms"]["max"] == pytest.approx(400.0)


def test_no_deadline_reports_no_misses(tiny_bundle):
    result = synthetic_result([10.0] * 3, ReplayConfig(fps=5.0))
    report = build_report(result, "synthetic", tiny_bundle)
    assert report["deadline_ms"] is None
    assert report["deadline_misses"] is None and report["miss_rate"] is None
    assert all(t["missed"] is None for t in report["timeline"])


def test_error_frames_are_listed_and_kept_out_of_latency(tiny_bundle):
    config = ReplayConfig(fps=10.0, deadline_ms=1000.0)
    result = synthetic_result([50.0, 300.0, 50.0, 50.0], config, errors={1})
    report = build_report(result, "synthetic", tiny_bundle)
    assert report["frames"] == {"replayed": 4, "classified": 3, "errors": 1, "dropped": 0,
                                "late": 0, "warmup": 0, "tiles": 12}
    assert report["error_frames"] == [{"frame": "f1.png", "error": "f1.png: corrupt"}]
    assert report["latency_ms"]["count"] == 3
    # The error frame still held the server: frame 2 waited behind it.
    assert report["timeline"][2]["queue_delay_ms"] == pytest.approx(200.0)
    assert report["busy_s"] == pytest.approx(0.45)
    assert report["deadline_misses"] == 0 and report["miss_rate"] == 0.0
    assert result.exit_code == 2


def test_a_dropped_bad_frame_is_a_miss_in_the_timeline_as_in_the_totals(tiny_bundle):
    """The virtual clock decodes every frame, so a dropped frame can carry its decode error.
    It was still dropped: a deadline miss in the timeline as in ``deadline_misses``."""
    config = ReplayConfig(fps=10.0, deadline_ms=10_000.0, queue_size=1,
                          queue_policy="drop-newest")
    result = synthetic_result([200.0] * 6, config, errors={3})
    # Period 100 ms, service 200 ms, one slot: frames 3 and 5 are dropped.
    result.trace = replay_queue(arrival_times_ms(6, config.fps), [200.0] * 6, capacity=1,
                                policy="drop-newest")
    report = build_report(result, "synthetic", tiny_bundle)
    assert [t["status"] for t in report["timeline"]][3] == "dropped"
    missed = [t["missed"] for t in report["timeline"]]
    assert missed == [False, False, False, True, False, True]
    assert report["deadline_misses"] == sum(missed) == 2


def test_report_identifies_model_and_config(tiny_bundle):
    config = ReplayConfig(fps=2.0, deadline_ms=400.0, threads=1, max_frames=3)
    report = build_report(synthetic_result([1.0], config), "src", tiny_bundle)
    assert report["schema_version"] == SCHEMA_VERSION == 2
    assert report["source"] == "src"
    assert report["model"]["sha256"] == tiny_bundle.manifest.sha256
    assert report["model"]["precision"] == "fp32"
    assert report["config"]["fps"] == 2.0 and report["config"]["max_frames"] == 3
    assert any("p50" in line and "p99" in line for line in format_summary(report))


def test_write_report_is_atomic_and_replaces(tmp_path, tiny_bundle):
    config = ReplayConfig(fps=2.0)
    first = build_report(synthetic_result([1.0, 2.0], config), "a", tiny_bundle)
    path = write_report(first, tmp_path / "sim")
    assert path == tmp_path / "sim" / REPORT_FILE
    second = build_report(synthetic_result([3.0], config), "b", tiny_bundle)
    write_report(second, tmp_path / "sim")
    assert json.loads(path.read_text())["source"] == "b"
    assert sorted(p.name for p in path.parent.iterdir()) == [REPORT_FILE]


def test_write_report_leaves_nothing_behind_on_failure(tmp_path, tiny_bundle, monkeypatch):
    config = ReplayConfig(fps=2.0)
    path = write_report(build_report(synthetic_result([1.0], config), "old", tiny_bundle),
                        tmp_path / "sim")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("firmware_sim.report.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(build_report(synthetic_result([2.0], config), "new", tiny_bundle),
                     tmp_path / "sim")
    assert sorted(p.name for p in path.parent.iterdir()) == [REPORT_FILE]
    assert json.loads(path.read_text())["source"] == "old"
