"""Recovering interrupted outputs, and what a run finds in its output folder."""

import json

import pytest

from edge.csv_output import CsvCodec
from edge.outputs import PARTIAL, JsonlCodec, RunWriter, complete_lines
from edge.resume import recover_outputs
from edge.rundir import (
    LOCK_FILE,
    RUN_PARTIAL,
    RunDirError,
    finish,
    folder_state,
    locked,
    prepare,
)

JSONL = [JsonlCodec("tiles"), JsonlCodec("frames")]
BOTH = [*JSONL, CsvCodec("tiles"), CsvCodec("frames")]
KEY = {"source": "/data/frames", "model_sha256": "abc", "tiling": [256, 32, 32]}


def _tiles(frame, n, label="soil"):
    return [{"frame": frame, "x": 32 * i, "y": 0, "w": 32, "h": 32, "label": label,
             "class_id": 0, "confidence": 0.9} for i in range(n)]


def _frame(frame, n, error=None):
    return {"frame": frame, "width": 256, "height": 256, "tiles": n,
            "timings_ms": None if error else {"decode": 1.0, "preprocess": 1.0,
                                               "inference": 2.0, "postprocess": 0.5,
                                               "write": 0.5},
            "error": error}


def _write_run(out, codecs, frames):
    """Frames as (name, tiles, error); returns the writer, left open (an interrupted run)."""
    writer = RunWriter(out, codecs)
    for name, n, error in frames:
        writer.write_tiles(_tiles(name, n))
        writer.write_frame(_frame(name, n, error))
    return writer


def _records(path, codec):
    return [r for r, _ in codec.decode(complete_lines(path))]


def test_clean_interrupted_run_keeps_everything(tmp_path):
    _write_run(tmp_path, JSONL, [("a", 3, None), ("b", 0, "b: corrupt"), ("c", 2, None)]).close()
    rec = recover_outputs(tmp_path, JSONL)
    assert rec.done == {"a", "b", "c"}
    s = rec.summary
    assert (s.frames, s.classified, s.skipped_count, s.tiles, s.resumed) == (3, 2, 1, 5, 3)
    assert s.class_counts == {"soil": 5}
    assert s.stage_ms["inference"].count == 2
    assert (rec.dropped_frames, rec.dropped_tiles) == (0, 0)


def test_torn_line_and_orphan_tiles_are_dropped(tmp_path):
    writer = _write_run(tmp_path, JSONL, [("a", 3, None), ("b", 2, None)])
    writer.write_tiles(_tiles("c", 4))  # c's tiles written, then killed before its frame line
    writer.close()
    tiles = tmp_path / ("tiles.jsonl" + PARTIAL)
    with open(tiles, "a") as fh:
        fh.write('{"frame":"c","x":128,"y":0,"w"')  # torn mid-line
    frames = tmp_path / ("frames.jsonl" + PARTIAL)
    with open(frames, "a") as fh:
        fh.write('{"frame":"c","width":256,"hei')
    rec = recover_outputs(tmp_path, JSONL)
    assert rec.done == {"a", "b"}
    # complete lines dropped (c's four tiles); the torn last lines are cut besides
    assert rec.dropped_tiles == 4 and rec.dropped_frames == 0
    assert [t["frame"] for t in _records(tiles, JSONL[0])] == ["a"] * 3 + ["b"] * 2
    assert tiles.read_text().endswith("\n") and frames.read_text().endswith("\n")
    assert [f["frame"] for f in _records(frames, JSONL[1])] == ["a", "b"]


def test_frame_with_missing_tiles_is_not_done(tmp_path):
    writer = _write_run(tmp_path, JSONL, [("a", 3, None)])
    writer.write_tiles(_tiles("b", 1))
    writer.write_frame(_frame("b", 4))  # claims 4 tiles, only 1 reached the file
    writer.close()
    rec = recover_outputs(tmp_path, JSONL)
    assert rec.done == {"a"}
    assert [f["frame"] for f in _records(tmp_path / ("frames.jsonl" + PARTIAL), JSONL[1])] == ["a"]


def test_two_formats_keep_only_frames_recorded_in_both(tmp_path):
    writer = _write_run(tmp_path, BOTH, [("a", 2, None)])
    # killed between the JSONL and the CSV frame line of b
    writer.write_tiles(_tiles("b", 2))
    writer._files[1][1].write(JsonlCodec("frames").encode([_frame("b", 2)]))
    writer.close()
    rec = recover_outputs(tmp_path, BOTH)
    assert rec.done == {"a"}
    for codec in BOTH:
        names = {r["frame"] for r in _records(tmp_path / (codec.file_name + PARTIAL), codec)}
        assert names == {"a"}, codec.file_name
    assert (tmp_path / ("tiles.csv" + PARTIAL)).read_text().startswith("frame,x,y")


def test_final_files_of_a_cut_commit_are_taken_back(tmp_path):
    writer = _write_run(tmp_path, JSONL, [("a", 1, None)])
    writer.commit()  # renamed, but run.json never written
    rec = recover_outputs(tmp_path, JSONL)
    assert rec.done == {"a"}
    assert (tmp_path / ("tiles.jsonl" + PARTIAL)).exists()
    assert not (tmp_path / "tiles.jsonl").exists()


def test_missing_files_are_an_empty_run(tmp_path):
    assert recover_outputs(tmp_path, BOTH).done == set()
    assert (tmp_path / ("frames.csv" + PARTIAL)).read_text().startswith("frame,width")


# --- the output folder -------------------------------------------------------------------


def test_folder_states(tmp_path):
    assert folder_state(tmp_path) == "empty"
    (tmp_path / "notes.txt").write_text("unrelated files do not make a run")
    assert folder_state(tmp_path) == "empty"
    prepare(tmp_path, KEY, {}, JSONL, resume=False, overwrite=False)
    assert folder_state(tmp_path) == "incomplete"
    _write_run(tmp_path, JSONL, [("a", 1, None)]).commit()
    assert folder_state(tmp_path) == "incomplete"  # run.json.partial still there
    finish(tmp_path, {"resume_key": KEY})
    assert folder_state(tmp_path) == "complete"
    assert not (tmp_path / RUN_PARTIAL).exists()


def test_incomplete_run_refused_without_resume(tmp_path):
    prepare(tmp_path, KEY, {}, JSONL, resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="interrupted run.*--resume.*--out"):
        prepare(tmp_path, KEY, {}, JSONL, resume=False, overwrite=False)


def test_resume_with_other_settings_refused(tmp_path):
    prepare(tmp_path, KEY, {}, JSONL, resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="different settings.*model_sha256"):
        prepare(tmp_path, {**KEY, "model_sha256": "def"}, {}, JSONL, resume=True,
                overwrite=False)


def test_resume_without_saved_key_refused(tmp_path):
    (tmp_path / ("frames.jsonl" + PARTIAL)).write_text("")
    with pytest.raises(RunDirError, match="cannot resume.*--overwrite"):
        prepare(tmp_path, KEY, {}, JSONL, resume=True, overwrite=False)


def test_overwrite_clears_only_run_outputs(tmp_path):
    _write_run(tmp_path, JSONL, [("a", 1, None)]).commit()
    finish(tmp_path, {"resume_key": KEY})
    (tmp_path / "overlays").mkdir()
    (tmp_path / "overlays" / "a.png.png").write_bytes(b"png")
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="completed run.*--overwrite"):
        prepare(tmp_path, KEY, {}, JSONL, resume=False, overwrite=False)
    assert prepare(tmp_path, KEY, {"x": 1}, JSONL, resume=False, overwrite=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", RUN_PARTIAL]
    assert json.loads((tmp_path / RUN_PARTIAL).read_text()) == {"x": 1, "resume_key": KEY}


def test_resume_of_completed_run_reopens_it(tmp_path):
    prepare(tmp_path, KEY, {}, JSONL, resume=False, overwrite=False)
    _write_run(tmp_path, JSONL, [("a", 1, None)]).commit()
    finish(tmp_path, {"resume_key": KEY})
    rec = prepare(tmp_path, KEY, {}, JSONL, resume=True, overwrite=False)
    assert rec.done == {"a"}
    assert folder_state(tmp_path) == "incomplete" and not (tmp_path / "run.json").exists()


def test_resume_into_empty_folder_is_a_fresh_run(tmp_path):
    assert prepare(tmp_path, KEY, {}, JSONL, resume=True, overwrite=False) is None


def test_second_writer_is_locked_out(tmp_path):
    with locked(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
        with pytest.raises(RunDirError, match="another edge classify is writing"):
            with locked(tmp_path):
                pass
    with locked(tmp_path):  # released at exit
        pass


def test_the_resume_key_names_a_crop(tmp_path):
    from tiny_model import make_tiny_bundle

    from edge.classify import FrameClassifier
    from edge.options import ClassifyOptions
    from edge.run import resume_key
    from edge.runners import make_runner
    from edge.tiling import TilingSpec

    keys = {}
    for crop in ("none", "centre-square"):
        bundle = make_tiny_bundle(tmp_path / crop, tiling=TilingSpec(256, 32, 32, crop=crop))
        classifier = FrameClassifier(bundle, make_runner(bundle, "onnxruntime", 1))
        keys[crop] = resume_key(ClassifyOptions("frames", out_dir=tmp_path), classifier)
    assert keys["none"]["tiling"] == [256, 32, 32]  # as before crops existed: old runs resume
    assert keys["centre-square"]["tiling"] == [256, 32, 32, "centre-square"]

