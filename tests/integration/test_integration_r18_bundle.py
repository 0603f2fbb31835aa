"""The opt-in ``terrain-r18`` bundle on the real AI4Mars frames: ``edge classify --model
terrain-r18`` works, and through edge's runtime it beats the default bundle on all three counts
its card claims (accuracy, mean per-class recall, big-rock recall) over every scored
validation tile, at the operating point its manifest records."""

from __future__ import annotations

import pytest
from integration_support import classify_val_frames, shipped_manifest

from edge.bundle import DEFAULT_MODEL, load_bundle
from export.model_card import predict
from train.datasets.ai4mars import load_ai4mars
from train.metrics import evaluate
from train.tiles import TileDataConfig, load_split_tiles

R18 = "terrain-r18"


@pytest.fixture()
def r18_manifest(mars_data) -> dict:
    """The shipped terrain-r18 manifest (the bundle verified); skips when not shipped."""
    return shipped_manifest(R18)


@pytest.mark.integration
def test_r18_manifest_records_its_lineage_and_operating_point(r18_manifest):
    assert r18_manifest["precision"] == "fp32"
    assert r18_manifest["classes"] == shipped_manifest(DEFAULT_MODEL)["classes"]
    prov = r18_manifest["provenance"]
    assert prov["operating_point"]["class"] == "big rock"
    assert prov["operating_point"]["offset"] == 4.0
    assert prov["teacher_lineage"]["pretrain_config"]["preset"] == "resnet18"
    assert prov["student"]["mflops_per_tile"] <= 20 and prov["student"]["parameters"] <= 1e6


@pytest.mark.integration
def test_r18_classifies_real_frames(r18_manifest, ai4mars_root, tmp_path):
    ids = load_ai4mars(ai4mars_root).splits()["val"][::150][:6]
    tiles = classify_val_frames(ai4mars_root, ids, tmp_path, model=R18)
    assert {t["label"] for t in tiles} <= set(r18_manifest["classes"])


@pytest.mark.integration
def test_r18_beats_the_default_on_accuracy_mean_recall_and_big_rock(r18_manifest, ai4mars_root):
    val = load_split_tiles(TileDataConfig(root=ai4mars_root), "val").scored()
    classes = r18_manifest["classes"]
    scores = {}
    for name in (R18, DEFAULT_MODEL):
        scores[name] = evaluate(predict(load_bundle(name), val.tiles), val.labels, classes)
    r18, default = scores[R18], scores[DEFAULT_MODEL]
    for key in ("accuracy", "mean_recall"):
        assert r18[key] > default[key], (key, r18[key], default[key])
    assert r18["per_class_recall"]["big rock"] > default["per_class_recall"]["big rock"]
    # The card's figures (all 43,841 scored val tiles), to the printed precision.
    assert r18["accuracy"] == pytest.approx(0.688, abs=5e-4)
    assert r18["mean_recall"] == pytest.approx(0.664, abs=5e-4)
