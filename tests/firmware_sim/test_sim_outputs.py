"""What a run leaves behind: report.md, the PNG plots, the exit-3 gate, and `edge sim compare`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from sim_fixtures import GOOD_FRAMES

from firmware_sim.capture_queue import replay_queue
from firmware_sim.plots import HEIGHT, PLOT_FILES, WIDTH, nice_ticks
from firmware_sim.replay import FrameTiming, ReplayConfig, ReplayResult
from firmware_sim.report import REPORT_FILE, build_report
from firmware_sim.report_md import REPORT_MD
from toolkit_cli.main import main


def run_sim(*args):
    return main(["sim", *map(str, args)])


def read_report(folder):
    return json.loads((folder / REPORT_FILE).read_text())


def fixed_profile(tmp_path, factor, **extra):
    path = tmp_path / f"x{factor}.json"
    path.write_text(json.dumps({"profiles": {f"x{factor:g}": {
        "title": f"{factor}x slower", "speed_factor": factor, **extra}}}))
    return path, f"x{factor:g}"


def test_a_run_writes_markdown_and_three_readable_plots(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--deadline-ms", "50", "-q") == 0
    names = {p.name for p in out.iterdir()}
    assert names == {REPORT_FILE, REPORT_MD, *PLOT_FILES.values()}
    for file in PLOT_FILES.values():
        image = cv2.imread(str(out / file))
        assert image is not None and image.shape == (HEIGHT, WIDTH, 3)
        # Something was drawn: blue data and the red deadline line, not just a frame.
        blue = (image[:, :, 0] > 150) & (image[:, :, 2] < 80)
        red = (image[:, :, 2] > 180) & (image[:, :, 0] < 90)
        assert blue.sum() > 20 and red.sum() > 50, file
    md = (out / REPORT_MD).read_text()
    assert "Emulation, not cycle-accurate" in md
    assert "| p99 | p99.9 | max | cv |" in md
    assert "**end to end**" in md and "Deadline 50 ms" in md
    assert "too few for p90" in md
    for file in PLOT_FILES.values():
        assert f"]({file})" in md


def test_no_plots_removes_an_earlier_runs_plots_and_says_so(frames_dir, tiny_bundle,
                                                             tmp_path):
    """A second run into the same folder with --no-plots: the first run's PNGs would be read
    as this run's, so they are removed and report.md links none."""
    out = tmp_path / "sim"
    args = (frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out, "-q")
    assert run_sim(*args) == 0
    assert all((out / file).exists() for file in PLOT_FILES.values())
    assert run_sim(*args, "--no-plots") == 0
    assert {p.name for p in out.iterdir()} == {REPORT_FILE, REPORT_MD}
    md = (out / REPORT_MD).read_text()
    assert "Not drawn for this run (`--no-plots`)." in md
    assert not any(f"]({file})" in md for file in PLOT_FILES.values())


def test_plots_and_markdown_survive_a_run_without_classified_frames(tiny_bundle, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"b{i}.png").write_bytes(b"broken")
    out = tmp_path / "sim"
    assert run_sim(bad, "--fps", "5", "--model", tiny_bundle.path, "--report", out, "-q") == 2
    report = read_report(out)
    assert report["frames"]["classified"] == 0 and report["latency_ms"]["count"] == 0
    for file in PLOT_FILES.values():
        assert cv2.imread(str(out / file)) is not None
    assert "## Error frames" in (out / REPORT_MD).read_text()


def test_nice_ticks():
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0, 1000, 5) == [0, 200, 400, 600, 800, 1000]
    assert nice_ticks(0.13, 0.61)[0] == pytest.approx(0.2)


def test_exit_3_when_the_miss_rate_exceeds_the_gate(frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sim"
    code = run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--deadline-ms", "0.000001", "--max-miss-rate", "0.5", "-q")
    assert code == 3
    report = read_report(out)
    assert report["gate"] == "fail" and report["miss_rate"] == 1.0 and report["exit_code"] == 3
    assert "gate failed" in capsys.readouterr().err
    assert (out / REPORT_MD).is_file()


def test_the_gate_passes_at_or_under_the_limit(frames_dir, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    assert run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--deadline-ms", "0.000001", "--max-miss-rate", "1", "-q") == 0
    assert read_report(out)["gate"] == "pass"
    assert run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report", out,
                   "--deadline-ms", "60000", "--max-miss-rate", "0", "-q") == 0


def test_the_gate_takes_precedence_over_bad_frames(frames_with_corrupt, tiny_bundle, tmp_path):
    out = tmp_path / "sim"
    assert run_sim(frames_with_corrupt, "--fps", "5", "--model", tiny_bundle.path, "--report",
                   out, "--deadline-ms", "0.000001", "--max-miss-rate", "0.2", "-q") == 3
    assert read_report(out)["frames"]["errors"] == 1


def test_a_gate_without_a_deadline_is_refused(frames_dir, tiny_bundle, tmp_path, capsys):
    code = run_sim(frames_dir, "--fps", "5", "--model", tiny_bundle.path, "--report",
                   tmp_path / "sim", "--max-miss-rate", "0.1")
    assert code == 1 and "--max-miss-rate needs --deadline-ms" in capsys.readouterr().err


def test_dropped_frames_count_as_misses(tiny_bundle):
    # Six frames at once, service 10 ms, one slot, drop-newest: 0 and 1 are served
    # (latency 10 and 20 ms), 2..5 dropped. Deadline 15 ms: 1 late + 4 dropped of 6.
    config = ReplayConfig(fps=1.0, deadline_ms=15.0, queue_size=1, queue_policy="drop-newest",
                          max_miss_rate=0.5)
    frames = [FrameTiming(name=f"f{i}.png", service_ms=10.0,
                          stage_ms={"decode": 1.0, "preprocess": 2.0, "inference": 6.0,
                                    "postprocess": 1.0}, tiles=4) for i in range(6)]
    trace = replay_queue(np.zeros(6), [10.0] * 6, capacity=1, policy="drop-newest")
    result = ReplayResult(config=config, frames=frames, trace=trace)
    report = build_report(result, "synthetic", tiny_bundle)
    assert report["frames"]["dropped"] == 4 and report["frames"]["late"] == 1
    assert report["dropped_frames"] == ["f2.png", "f3.png", "f4.png", "f5.png"]
    assert report["deadline_misses"] == 5 and report["miss_rate"] == pytest.approx(5 / 6, abs=1e-4)
    assert [t["status"] for t in report["timeline"]] == ["ok", "late"] + ["dropped"] * 4
    assert report["latency_ms"]["count"] == 2 and report["latency_ms"]["max"] == 20.0
    assert report["gate"] == "fail" and result.exit_code == 3


def test_compare_two_profiles_side_by_side(frames_dir, tiny_bundle, tmp_path, capsys):
    profiles, name = fixed_profile(tmp_path, 10.0)
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--fps", "5", "--model", tiny_bundle.path, "--deadline-ms", "1000", "-q",
              "--no-plots"]
    assert run_sim(frames_dir, *common, "--report", a) == 0
    assert run_sim(frames_dir, *common, "--report", b, "--profiles", profiles,
                   "--profile", name) == 0
    capsys.readouterr()
    table_file = tmp_path / "cmp.md"
    assert run_sim("compare", a / REPORT_FILE, b, "--out", table_file) == 0
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in table.splitlines()[2:]}
    assert rows["profile"][:2] == ["host", name]
    assert rows["inference factor"] == ["1", "10", "10x"]
    assert rows["frames replayed"] == [str(GOOD_FRAMES), str(GOOD_FRAMES), "1x"]
    a_p50, b_p50 = (float(v) for v in rows["latency p50 (ms)"][:2])
    assert b_p50 > a_p50
    assert "latency p99.9 (ms)" in rows and "miss rate" in rows
    assert table_file.read_text().strip() == table.strip()


@pytest.mark.parametrize("content", [None, "{}", '{"kind": "firmware_sim.replay", '
                                                  '"schema_version": 1}'])
def test_compare_refuses_what_is_not_a_current_report(tmp_path, capsys, content):
    a = tmp_path / "a.json"
    if content is not None:
        a.write_text(content)
    assert run_sim("compare", a, a) == 1
    assert "error:" in capsys.readouterr().err
