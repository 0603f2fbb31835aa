"""The shipped default bundle (``edge/models/terrain``) on real frames: ``edge classify`` with no
``--model`` works, and the manifest carries validation metrics. Skipped until it is shipped."""

from __future__ import annotations

import pytest
from integration_support import (
    check_resolution_invariance,
    copy_frames,
    read_jsonl,
    shipped_manifest,
)

from edge.bundle import DEFAULT_MODEL
from toolkit_cli.main import main
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
    names = copy_frames(ai4mars_root / "images", ids, tmp_path / "frames")
    out = tmp_path / "cls"
    assert main(["classify", str(tmp_path / "frames"), "--out", str(out), "--quiet"]) == 0
    frames = read_jsonl(out / "frames.jsonl")
    assert sorted(f["frame"] for f in frames) == sorted(names)
    assert all(f["error"] is None for f in frames)
    tiles = read_jsonl(out / "tiles.jsonl")
    assert len(tiles) == sum(f["tiles"] for f in frames) > 0
    assert {t["label"] for t in tiles} <= set(default_manifest["classes"])


@pytest.mark.integration
def test_default_bundle_resolution_invariance(default_manifest, ai4mars_root, tmp_path):
    frame_id = load_ai4mars(ai4mars_root).splits()["val"][0]
    check_resolution_invariance(None, ai4mars_root / "images" / f"{frame_id}.jpg", tmp_path)
