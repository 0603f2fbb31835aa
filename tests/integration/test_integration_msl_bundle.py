"""The shipped whole-image MSL bundle (``edge/models/msl``) on the real MSL v2.1 validation
images: ``edge classify --model msl`` gives one record per image, and the runtime path
reproduces the validation accuracy its manifest states. Skipped until it is shipped."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from integration_support import read_jsonl, shipped_manifest

from edge.bundle import load_bundle
from edge.classify import FrameClassifier
from edge.decode import read_image
from edge.runners import make_runner
from toolkit_cli.main import main
from train.datasets.msl import load_msl


@pytest.fixture()
def msl_manifest(mars_data) -> dict:
    """The shipped MSL bundle's manifest (the bundle verified); skips when not shipped."""
    return shipped_manifest("msl")


@pytest.mark.integration
def test_msl_bundle_classifies_whole_images(msl_manifest, mars_data, tmp_path):
    msl = load_msl(mars_data / "msl-v2.1")
    items = msl.splits["val"][::30]
    src = tmp_path / "images"
    src.mkdir()
    for it in items:
        shutil.copyfile(msl.image_path(it), src / msl.image_path(it).name)
    out = tmp_path / "cls"
    assert main(["classify", str(src), "--out", str(out), "--model", "msl", "--quiet"]) == 0
    tiles = read_jsonl(out / "tiles.jsonl")
    assert len(tiles) == len(items)
    assert {t["label"] for t in tiles} <= set(msl_manifest["classes"])
    frames = {f["frame"]: f for f in read_jsonl(out / "frames.jsonl")}
    for t in tiles:
        f = frames[t["frame"]]
        side = min(f["width"], f["height"])
        assert (t["w"], t["h"]) == (side, side)


@pytest.mark.integration
def test_runtime_reproduces_the_manifest_validation_accuracy(msl_manifest, mars_data):
    msl = load_msl(mars_data / "msl-v2.1")
    bundle = load_bundle("msl")
    classifier = FrameClassifier(bundle, make_runner(bundle, "onnxruntime", 1))
    items = msl.splits["val"]
    pred = np.array([classifier.classify(read_image(msl.image_path(it))).class_ids[0]
                     for it in items])
    labels = np.array([it.label for it in items])
    assert msl_manifest["metrics"]["tiles"] == len(items)
    # The probe was scored in torch on the same inputs; allow one near-tie flipping.
    assert abs(int((pred == labels).sum()) - round(msl_manifest["metrics"]["accuracy"]
                                                   * len(items))) <= 1
