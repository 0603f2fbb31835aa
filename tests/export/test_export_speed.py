"""``edge export bench``: teacher (torch), fp32 and INT8 students side by side."""

from __future__ import annotations

import json

import numpy as np
from export_fixtures import write_frame

from edge.bundle import load_bundle
from edge.cpu_info import cpu_info
from toolkit_cli.main import main


def test_three_way_bench_reports_every_model_and_thread_count(trained, student, tmp_path,
                                                              capsys):
    frames = tmp_path / "frames"
    for k in range(3):
        write_frame(frames / f"f{k}.png", seed=k)
    out = tmp_path / "rows.json"
    code = main(["export", "bench", str(frames), "--teacher", str(trained["probe"]),
                 "--student", str(student["bundle"]), "--int8", str(student["bundle"]),
                 "--threads", "1,2", "--repeats", "1", "--rounds", "2", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [(r["model"], r["threads"]) for r in rows] == [
        (m, t) for t in (1, 2) for m in ("teacher", "student fp32", "student int8")]
    assert all(r["frames"] == 3 * 2 and r["rounds"] == 2 and r["tiles_per_s"] > 0
               for r in rows)
    assert rows[0]["backend"] == "torch eager" and rows[0]["x_teacher"] == 1.0
    assert all(r["cpu"] == cpu_info().describe() for r in rows)
    assert rows[1]["x_fp32"] == 1.0 and rows[2]["x_fp32"] > 0  # per-round ratios, medians
    assert "| teacher | torch eager | 1 |" in capsys.readouterr().out


def test_three_way_bench_refuses_an_onnx_file(trained, student, tmp_path, capsys):
    onnx_file = load_bundle(student["bundle"]).model_path
    code = main(["export", "bench", str(tmp_path), "--teacher", str(trained["probe"]),
                 "--student", str(student["bundle"]), "--int8", str(onnx_file)])
    err = capsys.readouterr().err
    assert code == 1 and str(onnx_file) in err


def test_the_teacher_is_timed_on_tiles_of_its_own_size(student):
    """A 64-px teacher of a 32-px student runs on 64-px tiles of the same tiling."""
    from edge.preprocess import frame_to_tiles
    from export.speed import teacher_bundle_view

    bundle = load_bundle(student["bundle"])
    same = teacher_bundle_view(bundle, {"tile_pixels": bundle.manifest.input.tile_pixels,
                                        "channels": 1, "mean": [0.5], "std": [0.25]})
    assert same is bundle
    view = teacher_bundle_view(bundle, {"tile_pixels": 64, "channels": 1, "mean": [0.5],
                                        "std": [0.25]})
    assert view.manifest.input.tile_pixels == 64
    assert view.manifest.tiling == bundle.manifest.tiling
    assert bundle.manifest.input.tile_pixels == 32  # the student's bundle is left as it was
    tiles = frame_to_tiles(np.zeros((256, 256), np.uint8), view.manifest.input,
                           view.manifest.tiling).tiles
    assert tiles.shape[1:] == (1, 64, 64)
