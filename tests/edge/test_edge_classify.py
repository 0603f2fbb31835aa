import json

import numpy as np
import pytest
from edge_images import synthetic_frame

from edge.classify import FrameClassifier, softmax, tile_records
from edge.decode import FrameError
from edge.options import ClassifyOptions
from edge.outputs import FRAMES_FILE, PARTIAL, TILES_FILE, RunWriter
from edge.run import classify_frames
from edge.runners import make_runner
from edge.sources import FrameRef
from edge.summary import RunSummary


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    return FrameClassifier(tiny_bundle, make_runner(tiny_bundle))


def test_softmax_rows_and_stability():
    logits = np.array([[0.0, 0.0], [1000.0, 0.0], [-5.0, 5.0]], np.float32)
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0], [0.5, 0.5])
    assert np.isfinite(probs).all() and probs[1, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(probs[2], [np.exp(-10) / (1 + np.exp(-10)), 1 / (1 + np.exp(-10))],
                               rtol=1e-5)


def test_classify_matches_runner(classifier, tiny_bundle):
    image = synthetic_frame(480, 640, 3)
    result = classifier.classify(image)
    assert (result.width, result.height) == (640, 480)
    assert result.boxes.shape == (48, 4)
    assert result.class_ids.shape == (48,) and result.confidences.shape == (48,)
    assert set(result.timings_ms) == {"preprocess", "inference", "postprocess"}
    from edge.preprocess import frame_to_tiles

    m = tiny_bundle.manifest
    logits = classifier.runner.run(frame_to_tiles(image, m.input, m.tiling).tiles)
    np.testing.assert_array_equal(result.class_ids, logits.argmax(axis=1))
    np.testing.assert_allclose(result.confidences, softmax(logits).max(axis=1), rtol=1e-6)


def test_classify_ref_timings_and_untileable_frame_named(classifier):
    ok = classifier.classify_ref(FrameRef("good.png", lambda: synthetic_frame(256, 256), 1.5))
    assert list(ok.timings_ms) == ["decode", "preprocess", "inference", "postprocess"]
    assert ok.timings_ms["decode"] == 1.5
    small = FrameRef("cam/small.png", lambda: synthetic_frame(10, 300))
    with pytest.raises(FrameError, match=r"^cam/small\.png: .*smaller than one tile"):
        classifier.classify_ref(small)
    odd = FrameRef("odd.tif", lambda: np.zeros((64, 64), np.int32))
    with pytest.raises(FrameError, match=r"^odd\.tif: .*int32"):
        classifier.classify_ref(odd)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_frame_with_non_finite_pixels_is_refused_by_name(classifier, bad):
    """NaN survives clipping and would reach the network: the frame is skipped instead of
    getting a made-up label (and a bare NaN confidence in tiles.jsonl)."""
    image = synthetic_frame(256, 256).astype(np.float32) / 255.0
    image[5, 5] = bad
    ref = FrameRef("dem/missing.tif", lambda: image)
    match = r"^dem/missing\.tif: 1 of its 65536 pixel values are NaN or inf"
    with pytest.raises(FrameError, match=match):
        classifier.classify_ref(ref)


def test_out_of_memory_on_one_frame_is_a_frame_error(classifier, monkeypatch):
    import edge.classify as classify_mod

    def no_memory(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(classify_mod, "frame_to_tiles", no_memory)
    ref = FrameRef("cam/huge.png", lambda: synthetic_frame(300, 400))
    with pytest.raises(FrameError, match=r"^cam/huge\.png: not enough memory to classify "
                                         r"this 400x300 frame$"):
        classifier.classify_ref(ref)


class _NanRunner:
    """A runner whose model output is NaN for the second tile of every batch."""

    def __init__(self, runner):
        self.runner = runner

    def run(self, tiles: np.ndarray) -> np.ndarray:
        logits = self.runner.run(tiles).copy()
        logits[1, 0] = np.nan
        return logits


def test_non_finite_logits_are_a_frame_error(tiny_bundle):
    broken = FrameClassifier(tiny_bundle, _NanRunner(make_runner(tiny_bundle)))
    ref = FrameRef("good.png", lambda: synthetic_frame(256, 256))
    with pytest.raises(FrameError, match=r"^good\.png: the model gave NaN or infinite logits "
                                         r"for 1 of the frame's 64 tiles"):
        broken.classify_ref(ref)


def test_tile_records_contract(classifier):
    result = classifier.classify(synthetic_frame(256, 256))
    records = tile_records("f.png", result, ["s", "b", "d", "r"])
    assert len(records) == 64
    first = records[0]
    assert list(first) == ["frame", "x", "y", "w", "h", "label", "class_id", "confidence"]
    assert (first["x"], first["y"], first["w"], first["h"]) == (0, 0, 32, 32)
    assert json.loads(json.dumps(records)) == records  # plain JSON types


def _refs(*names):
    def ref(name):
        if name.startswith("bad"):
            def load():
                raise FrameError(f"{name}: corrupt")
            return FrameRef(name, load)
        return FrameRef(name, lambda: synthetic_frame(256, 256))
    return [ref(n) for n in names]


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, total):
        self.events.append(("start", total))

    def frame(self, name, error, resumed):
        self.events.append((name, error, resumed))

    def finish(self):
        self.events.append(("finish",))


def test_classify_frames_summary(classifier, tmp_path):
    seen = Recorder()
    summary = classify_frames(_refs("a", "bad1", "b"), classifier,
                              ClassifyOptions("gen", out_dir=tmp_path), observer=seen)
    assert (summary.frames, summary.classified, summary.tiles) == (3, 2, 128)
    assert summary.skipped == [("bad1", "bad1: corrupt")] and summary.exit_code == 2
    assert seen.events == [("start", None), ("a", None, False), ("bad1", "bad1: corrupt", False),
                           ("b", None, False), ("finish",)]
    report = summary.report()
    json.dumps(report)
    assert report["stage_ms"]["inference"]["count"] == 2
    assert report["stage_ms"]["total"]["count"] == 2
    assert sum(report["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(report["outputs"]) == {TILES_FILE, FRAMES_FILE}


def test_exit_code_zero_when_nothing_skipped():
    assert RunSummary().exit_code == 0


def test_crash_mid_run_publishes_nothing(classifier, tmp_path):
    def explode():
        raise RuntimeError("camera bus fault")

    refs = _refs("a") + [FrameRef("boom", explode)]
    with pytest.raises(RuntimeError):
        classify_frames(refs, classifier, ClassifyOptions("gen", out_dir=tmp_path))
    assert not (tmp_path / TILES_FILE).exists() and not (tmp_path / FRAMES_FILE).exists()
    # what was written so far stays in the partial files, marked as incomplete
    assert (tmp_path / (FRAMES_FILE + PARTIAL)).read_text().count("\n") == 1


def test_run_writer_commit_and_close(tmp_path):
    writer = RunWriter(tmp_path / "o")
    writer.write_tiles([{"frame": "a", "x": 0}])
    writer.write_frame({"frame": "a"})
    assert (tmp_path / "o" / (TILES_FILE + PARTIAL)).read_text() == '{"frame":"a","x":0}\n'
    final = writer.commit()
    writer.close()  # harmless after commit
    assert final[TILES_FILE].read_text() == '{"frame":"a","x":0}\n'
    assert final[FRAMES_FILE].read_text() == '{"frame":"a"}\n'
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [FRAMES_FILE, TILES_FILE]

    aborted = RunWriter(tmp_path / "p")
    aborted.write_frame({"frame": "x"})
    aborted.close()
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        FRAMES_FILE + PARTIAL, TILES_FILE + PARTIAL]
