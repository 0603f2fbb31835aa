"""``edge classify`` options beyond the contract: stride, min-confidence, CSV, progress, resume,
locking, cameras, pixel formats, resolution, robustness."""

import csv
import json

import cv2
import numpy as np
import pytest
from edge_camera import FakeCamera
from edge_images import synthetic_frame, write_frame
from image_headers import huge_png, huge_tiff
from tiny_model import CLASSES, make_tiny_bundle

from edge.rundir import locked
from edge.tiling import TilingSpec
from toolkit_cli.main import main


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _classify(source, out, bundle, *extra):
    return main(["classify", str(source), "--out", str(out), "--model", str(bundle.path), *extra])


# --- tiling -------------------------------------------------------------------------------


def test_stride_overlapping_tiles_in_original_pixels(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "-q", "--stride", "16") == 0
    frames = {f["frame"]: f for f in _jsonl(out / "frames.jsonl")}
    assert frames["a.png"]["tiles"] == frames["b.jpg"]["tiles"] == 15 * 15
    big = [t for t in _jsonl(out / "tiles.jsonl") if t["frame"] == "b.jpg"]
    assert {t["w"] for t in big} == {64}
    assert sorted({t["x"] for t in big}) == list(range(0, 449, 32))
    run = json.loads((out / "run.json").read_text())
    assert run["tiling"] == [256, 32, 16] and run["options"]["stride"] == 16


@pytest.mark.parametrize(("stride", "message"), [("0", "--stride"), ("33", "between 1 and")])
def test_bad_stride(frames_dir, tmp_path, tiny_bundle, capsys, stride, message):
    assert _classify(frames_dir, tmp_path / "out", tiny_bundle, "--stride", stride) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_small_frames_are_refused_per_frame(tmp_path, tiny_bundle):
    src = tmp_path / "src"
    write_frame(src / "wide.png", synthetic_frame(20, 400))  # 12 px high at reference width
    write_frame(src / "tiny.png", synthetic_frame(16, 16))  # upscaled: fine
    out = tmp_path / "out"
    assert _classify(src, out, tiny_bundle, "-q") == 2
    frames = {f["frame"]: f for f in _jsonl(out / "frames.jsonl")}
    assert "smaller than one tile" in frames["wide.png"]["error"]
    assert (frames["wide.png"]["width"], frames["wide.png"]["height"]) == (400, 20)
    assert frames["tiny.png"]["error"] is None and frames["tiny.png"]["tiles"] == 64


def test_same_terrain_at_256_and_1024_gives_the_same_map(tmp_path, tiny_bundle):
    big = synthetic_frame(1024, 1024, seed=3)
    small = cv2.resize(big, (256, 256), interpolation=cv2.INTER_AREA)
    src = tmp_path / "src"
    write_frame(src / "big.png", big)
    write_frame(src / "small.png", small)
    out = tmp_path / "out"
    assert _classify(src, out, tiny_bundle, "-q") == 0
    tiles = _jsonl(out / "tiles.jsonl")
    a = [t for t in tiles if t["frame"] == "small.png"]
    b = [t for t in tiles if t["frame"] == "big.png"]
    assert [(t["x"] * 4, t["y"] * 4, t["w"] * 4) for t in a] == [(t["x"], t["y"], t["w"])
                                                                  for t in b]
    agree = np.mean([s["label"] == t["label"] for s, t in zip(a, b, strict=True)])
    assert agree >= 0.95


# --- pixel formats ------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_every_pixel_format_gives_the_same_labels(tmp_path, channels):
    bundle = make_tiny_bundle(tmp_path / f"b{channels}", channels=channels)
    grey = synthetic_frame(256, 256, seed=5)
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    bgra = np.concatenate([bgr, np.full_like(grey, 255)[:, :, None]], axis=2)
    src = tmp_path / "src"
    variants = {"grey8.png": grey, "grey16.png": grey.astype(np.uint16) * 257,
                "grey8.tif": grey, "grey16.tif": grey.astype(np.uint16) * 257,
                "bgr8.png": bgr, "bgr16.tif": bgr.astype(np.uint16) * 257,
                "bgra8.png": bgra, "bgra8.tif": bgra, "bgra16.png": bgra.astype(np.uint16) * 257}
    for name, image in variants.items():
        write_frame(src / name, image)
    out = tmp_path / "out"
    assert _classify(src, out, bundle, "-q") == 0
    by_frame = {}
    for t in _jsonl(out / "tiles.jsonl"):
        by_frame.setdefault(t["frame"], []).append((t["class_id"], t["confidence"]))
    assert sorted(by_frame) == sorted(variants)
    reference = by_frame["grey8.png"]
    for name, tiles in by_frame.items():
        assert [c for c, _ in tiles] == [c for c, _ in reference], name
        np.testing.assert_allclose([p for _, p in tiles], [p for _, p in reference], atol=2e-4)


# --- labelling ----------------------------------------------------------------------------


def test_min_confidence_labels_uncertain_and_keeps_best(frames_dir, tmp_path, tiny_bundle):
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    assert _classify(frames_dir, plain, tiny_bundle, "-q") == 0
    confidences = sorted(t["confidence"] for t in _jsonl(plain / "tiles.jsonl"))
    threshold = confidences[len(confidences) // 2]  # about half the tiles fall below
    assert _classify(frames_dir, marked, tiny_bundle, "-q", "--min-confidence",
                     str(threshold)) == 0
    before, after = _jsonl(plain / "tiles.jsonl"), _jsonl(marked / "tiles.jsonl")
    assert "best_label" not in before[0]
    assert list(after[0]) == ["frame", "x", "y", "w", "h", "label", "class_id", "confidence",
                              "best_label"]
    n_uncertain = 0
    for b, a in zip(before, after, strict=True):
        assert (a["class_id"], a["confidence"]) == (b["class_id"], b["confidence"])
        assert a["best_label"] == b["label"] == CLASSES[a["class_id"]]
        if a["label"] == "uncertain":
            n_uncertain += 1
            assert a["confidence"] <= threshold
        else:
            assert a["label"] == b["label"] and a["confidence"] >= threshold
    assert 0 < n_uncertain < len(after)
    shares = json.loads((marked / "run.json").read_text())["summary"]["class_shares"]
    assert shares["uncertain"] == pytest.approx(n_uncertain / len(after), abs=1e-4)


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "-0.2"])
def test_bad_min_confidence(frames_dir, tmp_path, tiny_bundle, capsys, value):
    assert _classify(frames_dir, tmp_path / "out", tiny_bundle, "--min-confidence", value) == 1
    assert "--min-confidence" in capsys.readouterr().err


# --- formats ------------------------------------------------------------------------------


def test_csv_format_same_content_as_jsonl(frames_dir, tmp_path, tiny_bundle):
    js, cs = tmp_path / "js", tmp_path / "cs"
    assert _classify(frames_dir, js, tiny_bundle, "-q") == 0
    (frames_dir / "z.png").write_bytes(b"")
    assert _classify(frames_dir, cs, tiny_bundle, "-q", "--format", "csv") == 2
    assert sorted(p.name for p in cs.iterdir()) == [".lock", "frames.csv", "run.json",
                                                    "tiles.csv"]
    tiles = list(csv.DictReader((cs / "tiles.csv").open()))
    expected = _jsonl(js / "tiles.jsonl")
    assert len(tiles) == len(expected)
    assert [{k: str(v) for k, v in t.items()} for t in expected] == tiles
    frames = list(csv.DictReader((cs / "frames.csv").open()))
    assert [f["frame"] for f in frames] == ["a.png", "b.jpg", "z.png"]
    assert float(frames[0]["timing_inference_ms"]) >= 0 and frames[0]["error"] == ""
    assert frames[2]["error"].startswith("z.png: ") and frames[2]["timing_decode_ms"] == ""


def test_both_formats(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "-q", "--format", "jsonl,csv") == 0
    assert {"tiles.jsonl", "frames.jsonl", "tiles.csv", "frames.csv"} <= {
        p.name for p in out.iterdir()}


def test_unknown_format(frames_dir, tmp_path, tiny_bundle, capsys):
    assert _classify(frames_dir, tmp_path / "out", tiny_bundle, "--format", "xml") == 1
    assert "--format" in capsys.readouterr().err


# --- progress and summary -----------------------------------------------------------------


def test_progress_only_when_asked_and_never_quiet(frames_dir, tmp_path, tiny_bundle, capsys):
    assert _classify(frames_dir, tmp_path / "o1", tiny_bundle) == 0
    first = capsys.readouterr()
    assert "\r" not in first.err  # stderr is not a terminal here
    assert "classified 2/2 frames" in first.out
    assert _classify(frames_dir, tmp_path / "o2", tiny_bundle, "--progress") == 0
    err = capsys.readouterr().err
    assert "\r" in err and "2/2 frames" in err and err.endswith("\n")
    assert _classify(frames_dir, tmp_path / "o3", tiny_bundle, "--progress", "--quiet") == 0
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""


def test_progress_line_text():
    from edge.progress import ProgressBar

    bar = ProgressBar(stream=None)
    bar.start(10)
    bar._start -= 2.0  # two seconds ago
    for i in range(4):
        bar.frame(f"f{i}", "bad" if i == 3 else None, resumed=i == 0)
    line = bar.line(bar._start + 2.0)
    assert "4/10 frames" in line and "1 already done" in line and "1 skipped" in line
    assert "1.5 frames/s" in line and "ETA 0:00:04" in line


# --- output folder: resume, overwrite, lock -----------------------------------------------


def test_resume_adds_only_missing_frames(frames_dir, tmp_path, tiny_bundle, capsys):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "-q", "--max-frames", "1") == 0
    first = (out / "tiles.jsonl").read_text()
    assert _classify(frames_dir, out, tiny_bundle, "--resume") == 0
    assert "(1 from before --resume)" in capsys.readouterr().out
    frames = _jsonl(out / "frames.jsonl")
    assert [f["frame"] for f in frames] == ["a.png", "b.jpg"]
    assert (out / "tiles.jsonl").read_text().startswith(first)
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert (summary["frames"], summary["tiles"], summary["resumed"]) == (2, 128, 1)
    assert _classify(frames_dir, out, tiny_bundle, "-q", "--resume") == 0  # nothing to do
    assert len(_jsonl(out / "frames.jsonl")) == 2


def test_resume_with_other_settings_refused(frames_dir, tmp_path, tiny_bundle, capsys):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "-q") == 0
    assert _classify(frames_dir, out, tiny_bundle, "-q", "--resume", "--stride", "16") == 1
    assert "different settings" in capsys.readouterr().err
    assert _classify(frames_dir, out, tiny_bundle, "--resume", "--overwrite") == 1


def test_second_run_into_the_same_folder_refused(frames_dir, tmp_path, tiny_bundle, capsys):
    out = tmp_path / "out"
    with locked(out):
        assert _classify(frames_dir, out, tiny_bundle, "-q") == 1
    assert "another edge classify is writing" in capsys.readouterr().err
    assert not (out / "frames.jsonl").exists()


# --- sources and robustness ---------------------------------------------------------------


def test_camera_source(tmp_path, tiny_bundle, monkeypatch):
    import edge.sources

    monkeypatch.setattr(edge.sources.cv2, "VideoCapture", FakeCamera)
    monkeypatch.chdir(tmp_path)
    FakeCamera.opened, FakeCamera.frames, FakeCamera.works = [], 5, True
    out = tmp_path / "out"
    assert _classify("0", out, tiny_bundle, "-q", "--max-frames", "3") == 0
    assert [f["frame"] for f in _jsonl(out / "frames.jsonl")] == [
        "camera0#000000", "camera0#000001", "camera0#000002"]
    assert _classify("0", tmp_path / "o2", tiny_bundle, "-q", "--resume") == 1


def test_bad_inputs_recorded_and_the_rest_finished(tmp_path, tiny_bundle):
    src = tmp_path / "src"
    write_frame(src / "a_good.png", synthetic_frame(256, 256))
    (src / "b_empty.png").write_bytes(b"")
    (src / "c_text.jpg").write_text("not an image\n")
    (src / "d_bomb.png").write_bytes(huge_png(100_000, 100_000))
    (src / "e_bomb.tif").write_bytes(huge_tiff(70_000, 70_000))
    ok, data = cv2.imencode(".png", synthetic_frame(64, 64))
    (src / "f_cut.png").write_bytes(data.tobytes()[:200])
    write_frame(src / "g_good.tif", synthetic_frame(128, 128, 4, np.uint16))
    out = tmp_path / "out"
    assert _classify(src, out, tiny_bundle, "-q") == 2
    frames = {f["frame"]: f for f in _jsonl(out / "frames.jsonl")}
    assert len(frames) == 7
    assert [n for n, f in frames.items() if f["error"] is None] == ["a_good.png", "g_good.tif"]
    assert "empty" in frames["b_empty.png"]["error"]
    assert "not a readable image" in frames["c_text.jpg"]["error"]
    assert "100000x100000" in frames["d_bomb.png"]["error"]
    assert "70000x70000" in frames["e_bomb.tif"]["error"]
    assert "truncated PNG" in frames["f_cut.png"]["error"]


def test_unreadable_video_exit_2(tmp_path, tiny_bundle):
    video = tmp_path / "broken.avi"
    video.write_bytes(b"RIFF" + b"\x00" * 64)
    out = tmp_path / "out"
    assert _classify(video, out, tiny_bundle, "-q") == 2
    (frame,) = _jsonl(out / "frames.jsonl")
    assert frame["frame"] == "broken.avi" and "cannot be opened" in frame["error"]


def test_reference_tiling_used_for_boxes(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", tiling=TilingSpec(128, 32, 32))
    write_frame(tmp_path / "s" / "f.png", synthetic_frame(256, 512))
    out = tmp_path / "out"
    assert _classify(tmp_path / "s", out, bundle, "-q") == 0
    tiles = _jsonl(out / "tiles.jsonl")
    assert len(tiles) == 4 * 2 and {t["w"] for t in tiles} == {128}


def test_threads_budget_holds_opencv_too(frames_dir, tmp_path, tiny_bundle):
    try:
        assert _classify(frames_dir, tmp_path / "o1", tiny_bundle, "-q", "--threads", "1") == 0
        assert cv2.getNumThreads() == 1
        assert _classify(frames_dir, tmp_path / "o2", tiny_bundle, "-q", "--threads", "2") == 0
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(-1)
