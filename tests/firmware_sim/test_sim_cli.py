"""``edge sim`` end to end: tiny frames, a tiny ONNX bundle, the real classify_ref path."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from sim_fixtures import GOOD_FRAMES

from edge.classify import FrameClassifier
from firmware_sim.report import REPORT_FILE, SCHEMA_VERSION
from toolkit_cli.main import main


def run_sim(*args):
    return main(["sim", *map(str, args)])


def read_report(folder):
    return json.loads((folder / REPORT_FILE).read_text())


def test_sim_default_command_replays_every_frame(frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sim"
    code = run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out)
    assert code == 0
    report = read_report(out)
    assert report["schema_version"] == SCHEMA_VERSION == 2
    assert report["frames"]["replayed"] == GOOD_FRAMES
    assert report["frames"]["classified"] == GOOD_FRAMES
    assert report["frames"]["tiles"] == GOOD_FRAMES * 4  # 64x48: 2x2 tiles (last row edge-aligned)
    assert report["error_frames"] == []
    assert report["offered_fps"] == 5.0
    assert report["model"]["sha256"] == tiny_bundle.manifest.sha256
    assert set(report["stage_ms"]) == {"decode", "preprocess", "inference", "postprocess"}
    assert [t["arrival_ms"] for t in report["timeline"]] == [0, 200, 400, 600]
    assert report["latency_ms"]["count"] == GOOD_FRAMES
    text = capsys.readouterr().out
    assert "p50" in text and "p99" in text and str(out / REPORT_FILE) in text


def test_sim_run_subcommand_is_the_same_command(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    code = run_sim("run", frames_dir, "--fps", "5", "--model", tiny_bundle.path,
                   "--report", out, "--quiet", "--max-frames", "3")
    assert code == 0
    assert read_report(out)["frames"]["replayed"] == 3


def test_options_may_come_before_the_source(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    code = run_sim("--fps", "5", frames_dir, "--model", tiny_bundle.path, "--report", out, "-q")
    assert code == 0
    assert read_report(out)["frames"]["replayed"] == GOOD_FRAMES


def test_corrupt_frame_is_reported_and_the_replay_goes_on(
    frames_with_corrupt, tiny_bundle, tmp_path, capsys
):
    out = tmp_path / "sim"
    code = run_sim(frames_with_corrupt, "--fps", "5", "--model", tiny_bundle.path,
                   "--report", out, "--deadline-ms", "10000")
    assert code == 2
    report = read_report(out)
    assert report["frames"]["replayed"] == GOOD_FRAMES + 1
    assert report["frames"]["classified"] == GOOD_FRAMES
    assert report["frames"]["errors"] == 1
    (bad,) = report["error_frames"]
    assert bad["frame"] == "f001_corrupt.png"
    assert "f001_corrupt.png" in bad["error"]
    assert report["timeline"][2]["error"] == bad["error"]
    assert report["deadline_misses"] == 0
    assert "skipped f001_corrupt.png" in capsys.readouterr().err


def test_every_frame_misses_an_impossible_deadline(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    code = run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--deadline-ms", "0.000001", "-q")
    assert code == 0  # misses are a result, not a failure
    report = read_report(out)
    assert report["deadline_misses"] == GOOD_FRAMES
    assert report["miss_rate"] == 1.0


def test_high_fps_builds_a_queue(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", "1e6", "--model", tiny_bundle.path, "--report", out,
                   "-q") == 0
    delays = [t["queue_delay_ms"] for t in read_report(out)["timeline"]]
    assert delays[0] == 0 and delays == sorted(delays) and delays[-1] > 0


@pytest.mark.parametrize("fps", ["0", "-1", "nan"])
def test_non_positive_fps_is_refused(fps, frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sim"
    code = run_sim(frames_dir, "--fps", fps, "--model", tiny_bundle.path, "--report", out)
    assert code == 1
    assert "error: --fps must be a positive number" in capsys.readouterr().err
    assert not out.exists()


def test_missing_source_is_refused(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sim"
    code = run_sim(tmp_path / "nope", "--fps", "2", "--model", tiny_bundle.path, "--report", out)
    assert code == 1
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_empty_source_is_refused(tiny_bundle, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run_sim(empty, "--fps", "2", "--model", tiny_bundle.path, "--report", tmp_path / "s")
    assert code == 1
    assert "error:" in capsys.readouterr().err


def test_bad_bundle_is_refused(frames_dir, tmp_path, capsys):
    code = run_sim(frames_dir, "--fps", "2", "--model", tmp_path / "no_bundle",
                   "--report", tmp_path / "s")
    assert code == 1
    assert "error:" in capsys.readouterr().err


def test_missing_fps_is_a_usage_error(frames_dir, tiny_bundle, tmp_path):
    assert run_sim(frames_dir, "--model", tiny_bundle.path, "--report", tmp_path / "s") == 1


def test_the_simulator_measures_through_classify_ref(
    frames_dir, tiny_bundle, tmp_path, monkeypatch
):
    calls = []
    original = FrameClassifier.classify_ref

    def spy(self, ref):
        calls.append(ref.name)
        return original(self, ref)

    monkeypatch.setattr(FrameClassifier, "classify_ref", spy)
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--warmup", "1", "-q") == 0
    # One untimed warm-up call, then every frame once.
    assert calls == ["f000.png"] + [f"f{i:03d}.png" for i in range(GOOD_FRAMES)]


def test_video_source(tiny_bundle, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV in this environment cannot write MJPG video")
    rng = np.random.default_rng(2)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "sim"
    assert run_sim(video, "--fps", "5", "--model", tiny_bundle.path, "--report", out, "-q") == 0
    report = read_report(out)
    assert report["frames"]["classified"] == 3
    assert report["timeline"][0]["frame"] == "clip.avi#000000"


@pytest.mark.parametrize("argv", [["sim", "--help"], ["sim", "run", "--help"]])
def test_help_has_an_example(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Example: edge sim" in out
    if argv[-2] == "run":
        assert "2 some frames skipped" in out


def test_sim_group_lists_run(capsys):
    main(["sim", "--help"])
    assert "run" in capsys.readouterr().out
