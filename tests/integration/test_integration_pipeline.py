"""The whole path on real data, small: pretrain -> probe -> export -> classify -> sim, all
through ``toolkit_cli.main.main`` (the ``pipeline`` fixture in conftest runs the first three)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from integration_support import (
    AI4MARS_CLASSES,
    copy_frames,
    read_jsonl,
    rule_labels,
    write_truncated,
)

from edge.bundle import load_bundle
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec
from toolkit_cli.main import main
from train.datasets.ai4mars import load_ai4mars
from train.tiles import spread

torch = pytest.importorskip("torch", reason="the pipeline needs the [train] extra (torch, onnx)")
pytest.importorskip("onnx", reason="the pipeline needs the [train] extra (torch, onnx)")

from export.onnx_export import classifier_from_probe  # noqa: E402  (needs torch and onnx)
from train.checkpoint import load_checkpoint  # noqa: E402

N_GOOD = 8


@pytest.fixture(scope="module")
def stream(ai4mars_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A folder of 8 real val frames (spread over the val clock range) and one truncated copy."""
    folder = tmp_path_factory.mktemp("stream") / "frames"
    data = load_ai4mars(ai4mars_root)
    ids = data.splits()["val"][::150][:N_GOOD]
    assert len(ids) == N_GOOD
    good = copy_frames(ai4mars_root / "images", ids, folder)
    bad = write_truncated(ai4mars_root / "images" / good[0], folder / f"truncated_{good[0]}")
    return {"folder": folder, "ids": ids, "good": good, "bad": bad.name}


@pytest.mark.integration
@pytest.mark.slow
def test_pipeline_writes_checked_artifacts(pipeline, ai4mars_root):
    # pretrain: 24 frames x 64 tiles = 1536 tiles -> 24 steps of 64 in one epoch
    enc = load_checkpoint(pipeline.encoder, "encoder")
    assert [h["steps"] for h in enc["history"]] == [24]
    assert np.isfinite(enc["history"][0]["loss"])
    cfg = json.loads((pipeline.encoder.parent / "config.json").read_text())
    assert cfg["data"]["max_train_frames"] == 24 and cfg["batch_size"] == 64
    assert cfg["git_revision"]

    # probe: evaluated on the scored tiles of 24 val frames spread over the clock range
    # (train.tiles.spread), recounted here with the independent rule
    probe = load_checkpoint(pipeline.probe, "probe")
    m = probe["metrics"]
    data = load_ai4mars(ai4mars_root)
    val_ids = spread(data.splits()["val"], 24)
    expected = np.concatenate([rule_labels(data.read_mask(i)) for i in val_ids])
    assert m["tiles"] == int(np.count_nonzero(expected >= 0))
    assert m["support"] == {c: int(np.count_nonzero(expected == k))
                            for k, c in enumerate(AI4MARS_CLASSES)}
    assert m["val_frames"] == 24
    assert "validation" in m["split"]
    assert 0.0 <= m["accuracy"] <= 1.0
    assert sum(map(sum, m["confusion"])) == m["tiles"]

    # bundle: verified by the runtime, hash on disk, contract fields, torch-vs-ORT check
    bundle = load_bundle(pipeline.bundle)
    man = bundle.manifest
    model_bytes = bundle.model_path.read_bytes()
    assert man.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert man.classes == AI4MARS_CLASSES
    assert man.tiling == TilingSpec(256, 32, 32)
    assert man.input == InputSpec(32, 1, (0.5,), (0.25,))
    assert man.precision == "fp32"
    onnx_check = man.provenance["onnx"]
    assert onnx_check["checked_tiles"] == 2 * 64  # --check-frames 2 of 64 tiles each
    assert onnx_check["max_abs_diff_vs_torch"] <= 1e-4
    assert man.metrics["accuracy"] == m["accuracy"]
    assert "validation" in man.metrics["split"]


@pytest.mark.integration
@pytest.mark.slow
def test_classify_real_frames_with_a_truncated_one(pipeline, stream, tmp_path, ai4mars_root):
    out = tmp_path / "cls"
    code = main(["classify", str(stream["folder"]), "--model", str(pipeline.bundle),
                 "--out", str(out)])
    assert code == 2  # one frame skipped for bad input, the rest classified
    frames = read_jsonl(out / "frames.jsonl")
    tiles = read_jsonl(out / "tiles.jsonl")
    assert len(frames) == N_GOOD + 1
    errors = [f for f in frames if f["error"] is not None]
    assert len(errors) == 1, errors
    assert errors[0]["frame"] == stream["bad"]
    assert stream["bad"] in errors[0]["error"] and "truncated" in errors[0]["error"]
    assert errors[0]["tiles"] == 0
    good = [f for f in frames if f["error"] is None]
    assert sorted(f["frame"] for f in good) == sorted(stream["good"])
    for f in good:
        assert (f["width"], f["height"], f["tiles"]) == (256, 256, 64)
    assert len(tiles) == 64 * N_GOOD
    grid = {(x, y) for y in range(0, 256, 32) for x in range(0, 256, 32)}
    for name in stream["good"]:
        mine = [t for t in tiles if t["frame"] == name]
        assert len(mine) == 64
        assert {(t["x"], t["y"]) for t in mine} == grid
        assert all((t["w"], t["h"]) == (32, 32) for t in mine)
    for t in tiles:
        assert t["label"] in AI4MARS_CLASSES
        assert t["label"] == AI4MARS_CLASSES[t["class_id"]]
        assert 0.25 <= t["confidence"] <= 1.0
    assert not list(out.glob("*.partial"))

    # no train/runtime skew: the runtime's labels and confidences equal the torch model's on
    # the tiles that the training code cuts from the same frames
    ckpt = load_checkpoint(pipeline.probe, "probe")
    model = classifier_from_probe(ckpt)
    spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v
                        for k, v in ckpt["input"].items()})
    tileset = load_ai4mars(ai4mars_root).load_tiles(stream["ids"][:2], spec,
                                                    TilingSpec(**ckpt["tiling"]),
                                                    with_labels=False)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(tileset.tiles)), 1).numpy()
    for k, name in enumerate(stream["good"][:2]):
        mine = [t for t in tiles if t["frame"] == name]  # row-major, as written
        p = probs[tileset.frame == k]
        assert [t["class_id"] for t in mine] == p.argmax(1).tolist()
        np.testing.assert_allclose([t["confidence"] for t in mine], p.max(1), atol=2e-4)


@pytest.mark.integration
@pytest.mark.slow
def test_sim_replays_real_frames(pipeline, stream, tmp_path):
    report_dir = tmp_path / "sim"
    code = main(["sim", str(stream["folder"]), "--fps", "5", "--model", str(pipeline.bundle),
                 "--report", str(report_dir), "--deadline-ms", "1000", "--quiet"])
    assert code == 2  # the truncated frame is skipped and listed; the rest are replayed
    report = json.loads((report_dir / "report.json").read_text())
    assert report["kind"] == "firmware_sim.replay" and report["schema_version"] == 2
    assert report["frames"]["replayed"] == N_GOOD + 1
    assert report["frames"]["classified"] == N_GOOD
    assert report["frames"]["errors"] == 1
    assert report["frames"]["tiles"] == 64 * N_GOOD
    assert [e["frame"] for e in report["error_frames"]] == [stream["bad"]]
    assert report["offered_fps"] == 5.0
    assert report["model"]["sha256"] == load_bundle(pipeline.bundle).manifest.sha256
    timeline = report["timeline"]
    assert len(timeline) == N_GOOD + 1
    arrivals = [t["arrival_ms"] for t in timeline]
    np.testing.assert_allclose(np.diff(arrivals), 200.0, atol=1e-3)  # 5 fps
    for t in timeline:
        assert t["start_ms"] >= t["arrival_ms"] and t["finish_ms"] >= t["start_ms"]
        assert t["latency_ms"] == pytest.approx(t["finish_ms"] - t["arrival_ms"], abs=2e-3)
    ok = [t for t in timeline if t["error"] is None]
    late = sum(t["latency_ms"] > 1000 for t in ok)
    assert report["late_frames"] == late
    assert report["deadline_misses"] == late + report["frames"]["dropped"]
    assert report["latency_ms"]["max"] == pytest.approx(max(t["latency_ms"] for t in ok),
                                                        abs=2e-3)
