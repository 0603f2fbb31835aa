"""``edge classify`` end to end through ``toolkit_cli.main.main``: the DESIGN.md output contract."""

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from edge_images import synthetic_frame, write_frame
from tiny_model import CLASSES, make_tiny_bundle

from edge.bundle import MODEL_FILE
from edge.cpu_info import cpu_info
from edge.preprocess import frame_to_tiles
from edge.runners import make_runner
from toolkit_cli.main import main

TILE_FIELDS = ["frame", "x", "y", "w", "h", "label", "class_id", "confidence"]
FRAME_FIELDS = ["frame", "width", "height", "tiles", "timings_ms", "error"]
STAGES = ["decode", "preprocess", "inference", "postprocess", "write"]


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _classify(source, out, bundle, *extra):
    return main(["classify", str(source), "--out", str(out), "--model", str(bundle.path), *extra])


def test_all_good_exit_0_and_exact_fields(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "--quiet") == 0
    frames = _jsonl(out / "frames.jsonl")
    tiles = _jsonl(out / "tiles.jsonl")
    assert [f["frame"] for f in frames] == ["a.png", "b.jpg"]
    for f in frames:
        assert list(f) == FRAME_FIELDS
        assert f["error"] is None
        assert list(f["timings_ms"]) == STAGES
        assert all(isinstance(v, float) and v >= 0 for v in f["timings_ms"].values())
        assert f["tiles"] == 64
    assert (frames[0]["width"], frames[0]["height"]) == (256, 256)
    assert (frames[1]["width"], frames[1]["height"]) == (512, 512)
    assert len(tiles) == sum(f["tiles"] for f in frames)
    for t in tiles:
        assert list(t) == TILE_FIELDS
        assert all(isinstance(t[k], int) for k in ("x", "y", "w", "h", "class_id"))
        assert t["label"] == CLASSES[t["class_id"]]
        assert 1 / len(CLASSES) <= t["confidence"] <= 1.0
    assert not list(out.glob("*.partial"))
    assert sorted(p.name for p in out.iterdir()) == [".lock", "frames.jsonl", "run.json",
                                                     "tiles.jsonl"]
    run = json.loads((out / "run.json").read_text())
    manifest = json.loads((tiny_bundle.path / "manifest.json").read_text())
    assert run["model"]["sha256"] == manifest["sha256"]
    assert run["summary"]["classified"] == 2 and run["summary"]["skipped"] == []
    assert run["host"]["cpu"] == cpu_info().to_json() and run["host"]["cpus"] >= 1


def test_boxes_in_original_pixels_for_512_frame(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    assert _classify(frames_dir / "b.jpg", out, tiny_bundle, "-q") == 0
    tiles = _jsonl(out / "tiles.jsonl")
    assert {t["frame"] for t in tiles} == {"b.jpg"}
    boxes = np.array([[t["x"], t["y"], t["w"], t["h"]] for t in tiles])
    assert len(boxes) == 64
    assert set(boxes[:, 2]) == {64} and set(boxes[:, 3]) == {64}
    assert sorted(set(boxes[:, 0])) == list(range(0, 512, 64))
    assert (boxes[:, 0] + boxes[:, 2]).max() == 512 and (boxes[:, 1] + boxes[:, 3]).max() == 512


def test_results_match_direct_inference(frames_dir, tmp_path, tiny_bundle):
    from edge.decode import read_image

    out = tmp_path / "out"
    assert _classify(frames_dir / "b.jpg", out, tiny_bundle, "-q") == 0
    tiles = _jsonl(out / "tiles.jsonl")
    m = tiny_bundle.manifest
    tiled = frame_to_tiles(read_image(frames_dir / "b.jpg"), m.input, m.tiling)
    logits = make_runner(tiny_bundle).run(tiled.tiles)
    assert [t["class_id"] for t in tiles] == logits.argmax(axis=1).tolist()
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    conf = (exp / exp.sum(axis=1, keepdims=True)).max(axis=1)
    np.testing.assert_allclose([t["confidence"] for t in tiles], conf, atol=1e-4)


def test_bad_frames_among_good_exit_2(frames_dir, tmp_path, tiny_bundle, capsys):
    (frames_dir / "c.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (frames_dir / "d.png").write_bytes(b"")
    write_frame(frames_dir / "e.png", synthetic_frame(20, 256))  # smaller than a tile
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle) == 2
    frames = {f["frame"]: f for f in _jsonl(out / "frames.jsonl")}
    assert list(frames) == ["a.png", "b.jpg", "c.jpg", "d.png", "e.png"]
    for name in ("c.jpg", "d.png", "e.png"):
        record = frames[name]
        assert list(record) == FRAME_FIELDS
        assert isinstance(record["error"], str) and record["error"].startswith(f"{name}: ")
        assert record["tiles"] == 0 and record["timings_ms"] is None
    assert "smaller than one tile" in frames["e.png"]["error"]
    for name in ("a.png", "b.jpg"):
        assert frames[name]["error"] is None and frames[name]["tiles"] == 64
    tiles = _jsonl(out / "tiles.jsonl")
    assert {t["frame"] for t in tiles} == {"a.png", "b.jpg"} and len(tiles) == 128
    assert not list(out.glob("*.partial"))
    err = capsys.readouterr().err
    assert "skipped c.jpg: " in err and "c.jpg: c.jpg" not in err  # the name is said once
    assert "skipped e.png: " in err


def test_nonexistent_source_exit_1(tmp_path, tiny_bundle, capsys):
    out = tmp_path / "out"
    assert _classify(tmp_path / "missing", out, tiny_bundle) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_tampered_model_exit_1(frames_dir, tmp_path, capsys):
    bundle = make_tiny_bundle(tmp_path / "bundle")
    model = bundle.path / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert _classify(frames_dir, out, bundle) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sha256" in err and "Traceback" not in err
    assert not out.exists()


def test_model_that_does_not_load_exit_1(frames_dir, tmp_path, capsys):
    from tiny_model import tiny_manifest

    from edge.bundle import write_bundle

    bundle = write_bundle(tmp_path / "bundle", b"garbage", tiny_manifest())
    assert _classify(frames_dir, tmp_path / "out", bundle) == 1
    assert "cannot load the model" in capsys.readouterr().err


def test_absent_default_model_exit_1(frames_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["classify", str(frames_dir), "--out", str(tmp_path / "o"),
                 "--model", "no-such-model"]) == 1
    assert "neither a bundle folder nor a shipped model" in capsys.readouterr().err


def test_unknown_option_exit_1(frames_dir, tmp_path, tiny_bundle, capsys):
    assert _classify(frames_dir, tmp_path / "out", tiny_bundle, "--frobnicate") == 1
    assert "--frobnicate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["classify"], ["classify", "x", "--threads", "0"],
                                  ["classify", "x", "--max-frames", "zero"]])
def test_bad_usage_exit_1(args):
    assert main(args) == 1


def test_out_is_a_file_exit_1(frames_dir, tmp_path, tiny_bundle, capsys):
    target = tmp_path / "taken"
    target.write_text("already here")
    assert _classify(frames_dir, target, tiny_bundle) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "taken" in err


def test_max_frames(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "-q", "--max-frames", "1") == 0
    assert [f["frame"] for f in _jsonl(out / "frames.jsonl")] == ["a.png"]


def test_rerun_into_completed_run_needs_overwrite(frames_dir, tmp_path, tiny_bundle, capsys):
    out = tmp_path / "out"
    assert _classify(frames_dir, out, tiny_bundle, "-q") == 0
    before = (out / "tiles.jsonl").read_bytes()
    capsys.readouterr()
    assert _classify(frames_dir / "a.png", out, tiny_bundle, "-q") == 1
    err = capsys.readouterr().err
    assert "already holds a completed run" in err and "--overwrite" in err and "--out" in err
    assert (out / "tiles.jsonl").read_bytes() == before  # untouched
    assert _classify(frames_dir / "a.png", out, tiny_bundle, "-q", "--overwrite") == 0
    assert [f["frame"] for f in _jsonl(out / "frames.jsonl")] == ["a.png"]
    assert len(_jsonl(out / "tiles.jsonl")) == 64


def test_video_source(tmp_path, tiny_bundle):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    assert writer.isOpened()
    for i in range(2):
        writer.write(synthetic_frame(240, 320, 3, seed=i))
    writer.release()
    out = tmp_path / "out"
    assert _classify(path, out, tiny_bundle, "-q") == 0
    frames = _jsonl(out / "frames.jsonl")
    assert [f["frame"] for f in frames] == ["clip.avi#000000", "clip.avi#000001"]
    assert all((f["width"], f["height"], f["tiles"]) == (320, 240, 48) for f in frames)


def test_summary_printed(frames_dir, tmp_path, tiny_bundle, capsys):
    assert _classify(frames_dir, tmp_path / "out", tiny_bundle) == 0
    text = capsys.readouterr().out
    assert "classified 2/2 frames, 128 tiles" in text and "ms per frame (mean/p99)" in text
    assert "class shares: " in text and "inference " in text


def test_classify_works_without_torch(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        from toolkit_cli.main import main
        code = main(["classify", {str(frames_dir)!r}, "--out", {str(out)!r},
                     "--model", {str(tiny_bundle.path)!r}, "--quiet"])
        assert "torch" not in [m for m, v in sys.modules.items() if v is not None]
        sys.exit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(_jsonl(out / "frames.jsonl")) == 2
    assert len(_jsonl(out / "tiles.jsonl")) == 128


def test_whole_image_bundle_gives_one_tile_per_frame_with_overlay_and_csv(tmp_path):
    from edge.tiling import TilingSpec

    bundle = make_tiny_bundle(tmp_path / "msl", tiling=TilingSpec(227, 227, 227,
                                                                  crop="centre-square"))
    src = tmp_path / "frames"
    write_frame(src / "wide.png", synthetic_frame(120, 300, 3))
    write_frame(src / "tall.jpg", synthetic_frame(400, 160))
    out = tmp_path / "out"
    assert _classify(src, out, bundle, "--quiet", "--overlay", "--format", "jsonl,csv") == 0
    tiles = {t["frame"]: t for t in _jsonl(out / "tiles.jsonl")}
    assert [(t["x"], t["y"], t["w"], t["h"]) for t in (tiles["wide.png"], tiles["tall.jpg"])] == [
        (90, 0, 120, 120), (0, 120, 160, 160)]
    assert [f["tiles"] for f in _jsonl(out / "frames.jsonl")] == [1, 1]
    assert len((out / "tiles.csv").read_text().splitlines()) == 3
    assert len(list((out / "overlays").glob("*.png"))) == 2
    # The overlay tints only the centre square that was classified (x 90-210 of 300, shown
    # at 512 px wide: x 154-358); the sides are the frame darkened to a third, untinted.
    frame = synthetic_frame(120, 300, 3)
    shown = cv2.resize(frame, (512, 205), interpolation=cv2.INTER_NEAREST)
    picture = cv2.imread(str(out / "overlays" / "wide.png.png"))
    np.testing.assert_array_equal(picture[:205, :150], shown[:, :150] // 3)
    np.testing.assert_array_equal(picture[:205, 362:], shown[:, 362:] // 3)
    assert np.abs(picture[:205, 160:350].astype(int) - shown[:, 160:350]).mean() > 10
