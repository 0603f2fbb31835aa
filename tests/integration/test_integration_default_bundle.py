"""The shipped default bundle (``edge/models/terrain``) on real frames: ``edge classify`` with no
``--model`` works, and the manifest carries validation metrics. Skipped until it is shipped."""

from __future__ import annotations

import numpy as np
import pytest
from integration_support import (
    check_resolution_invariance,
    classify_val_frames,
    shipped_manifest,
)

from edge.bundle import DEFAULT_MODEL
from train.datasets.ai4mars import load_ai4mars


@pytest.fixture()
def default_manifest(mars_data) -> dict:
    """The shipped default bundle's manifest (the bundle verified); skips when not shipped."""
    return shipped_manifest(DEFAULT_MODEL)


@pytest.mark.integration
def test_default_bundle_manifest_has_validation_metrics(default_manifest):
    metrics = default_manifest["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0, metrics
    assert 0.0 <= metrics["mean_recall"] <= 1.0, metrics
    assert "validation" in str(metrics["split"]).lower(), metrics["split"]
    assert default_manifest["classes"] == ["soil", "bedrock", "sand", "big rock"]


@pytest.mark.integration
def test_default_bundle_classifies_real_frames(default_manifest, ai4mars_root, tmp_path):
    ids = load_ai4mars(ai4mars_root).splits()["val"][::120][:10]
    tiles = classify_val_frames(ai4mars_root, ids, tmp_path)
    assert {t["label"] for t in tiles} <= set(default_manifest["classes"])


@pytest.mark.integration
def test_default_bundle_resolution_invariance(default_manifest, ai4mars_root, tmp_path):
    frame_id = load_ai4mars(ai4mars_root).splits()["val"][0]
    check_resolution_invariance(None, ai4mars_root / "images" / f"{frame_id}.jpg", tmp_path)


@pytest.mark.integration
def test_default_int8_bundle_passes_its_gate_against_the_shipped_fp32(default_manifest,
                                                                      ai4mars_root):
    """The INT8 default is the quantized ``terrain-fp32`` bundle (by sha256), and on every
    scored validation tile, through edge's runtime, it makes the fp32 bundle's decision on at
    least 99% of them: the export's accuracy gate, measured again on the shipped pair."""
    from edge.bundle import load_bundle
    from edge.runners import make_runner
    from train.tiles import TileDataConfig, load_split_tiles

    fp32 = shipped_manifest("terrain-fp32")
    assert default_manifest["precision"] == "int8" and fp32["precision"] == "fp32"
    assert default_manifest["provenance"]["float_bundle"]["sha256"] == fp32["sha256"]
    val = load_split_tiles(TileDataConfig(root=ai4mars_root), "val").scored()
    preds = {}
    for name in (DEFAULT_MODEL, "terrain-fp32"):
        runner = make_runner(load_bundle(name), threads=2)
        preds[name] = np.concatenate([runner.run(val.tiles[i:i + 4096]).argmax(1)
                                      for i in range(0, len(val.tiles), 4096)])
    agreement = float((preds[DEFAULT_MODEL] == preds["terrain-fp32"]).mean())
    assert agreement >= 0.99, f"{agreement:.5f} of {len(val.tiles)} scored val tiles agree"
    int8_accuracy = float((preds[DEFAULT_MODEL] == val.labels).mean())
    assert int8_accuracy == pytest.approx(default_manifest["metrics"]["accuracy"], abs=1e-3)
