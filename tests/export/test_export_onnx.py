"""export.onnx_export: probe checkpoint -> verified ONNX bundle, or nothing at all."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

import export.onnx_export
from edge.bundle import load_bundle
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec
from export.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    OnnxExportConfig,
    classifier_from_probe,
    export_bundle,
)
from train.checkpoint import CheckpointError, load_checkpoint, save_atomic
from train.datasets.ai4mars import CLASSES
from train.datasets.digest import folder_digest
from train.tiles import TileDataConfig, load_split_tiles


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "terrain"
    return export_bundle(OnnxExportConfig(checkpoint=str(trained["probe"]), out_dir=str(out),
                                          name="terrain-test"))


def _reject_constant(name: str) -> None:
    raise ValueError(f"manifest.json holds {name}, which is not JSON")


def test_bundle_is_accepted_by_the_edge_runtime(bundle):
    loaded = load_bundle(bundle.path)
    assert loaded.manifest == bundle.manifest
    assert sorted(p.name for p in bundle.path.iterdir()) == ["manifest.json", "model.onnx"]
    assert [p.name for p in bundle.path.parent.iterdir()] == ["terrain"]  # no staging left


def test_manifest_contents(bundle, trained):
    ckpt = load_checkpoint(trained["probe"], "probe")
    m = bundle.manifest
    assert m.name == "terrain-test"
    assert m.classes == CLASSES
    assert m.input == InputSpec(tile_pixels=32, channels=1, mean=(0.5,), std=(0.25,))
    assert m.tiling == TilingSpec(reference_width=256, tile=32, stride=32)
    assert m.precision == "fp32"
    assert m.sha256 == hashlib.sha256(bundle.model_path.read_bytes()).hexdigest()
    prov = m.provenance
    for key in ("created", "git_revision", "training_git_revision", "torch", "data", "encoder",
                "pretrain_config", "probe_config", "onnx", "data_digests"):
        assert key in prov, key
    assert prov["onnx"]["opset"] == 17
    assert prov["onnx"]["checked_tiles"] == 64
    assert 0 <= prov["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert prov["encoder"]["width"] == 16
    assert prov["encoder"]["parameters"] == sum(
        p.numel() for p in classifier_from_probe(ckpt).parameters())
    assert prov["probe_config"]["label_fraction"] == 0.5
    assert "50%" in prov["data"]["labels"]
    assert prov["data_digests"]["ai4mars"] == folder_digest(ckpt["pretrain_config"]["data"]["root"])
    for key in ("accuracy", "mean_recall", "confusion", "tiles"):
        assert m.metrics[key] == ckpt["metrics"][key]
    # Strict JSON: no NaN or Infinity that other readers would refuse.
    json.loads((bundle.path / "manifest.json").read_text(), parse_constant=_reject_constant)


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_onnx_logits_match_torch(bundle, trained, batch):
    model = classifier_from_probe(load_checkpoint(trained["probe"], "probe"))
    tiles = np.random.default_rng(batch).normal(size=(batch, 1, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: tiles})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(tiles)).numpy()
    assert got.shape == (batch, len(CLASSES))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_exported_model_reproduces_the_probe_accuracy(bundle, trained, ai4mars_dir):
    ckpt = load_checkpoint(trained["probe"], "probe")
    val = load_split_tiles(TileDataConfig(root=str(ai4mars_dir)), "val").scored()
    session = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    pred = session.run([OUTPUT_NAME], {INPUT_NAME: val.tiles})[0].argmax(1)
    # Equal up to one tile whose two best logits tie within the ONNX/torch tolerance.
    assert float((pred == val.labels).mean()) == pytest.approx(ckpt["metrics"]["accuracy"],
                                                                 abs=1.5 / len(val.labels))
    assert len(val.labels) == ckpt["metrics"]["tiles"]


def test_real_check_tiles_are_used(trained, ai4mars_dir, tmp_path):
    tiles = load_split_tiles(TileDataConfig(root=str(ai4mars_dir)), "val",
                             with_labels=False).tiles
    b = export_bundle(OnnxExportConfig(checkpoint=str(trained["probe"]),
                                       out_dir=str(tmp_path / "b")), tiles)
    assert b.manifest.provenance["onnx"]["checked_tiles"] == len(tiles) == 128


def test_encoder_checkpoint_is_refused(trained, tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match="expected a 'probe' checkpoint, found 'encoder'"):
        export_bundle(OnnxExportConfig(checkpoint=str(trained["encoder"]), out_dir=str(out)))
    assert not out.exists()


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_bundle(OnnxExportConfig(checkpoint=str(tmp_path / "nope.pt"),
                                       out_dir=str(tmp_path / "bundle")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["encoder_config"].update(width=8), "do not fit the recorded architecture"),
    (lambda c: c.update(classes=CLASSES + ["ice"]), "do not fit the recorded architecture"),
    (lambda c: c["encoder_state"].pop("stem.0.weight"), "do not fit the recorded architecture"),
    (lambda c: c.pop("head_state"), "head_state"),
])
def test_checkpoint_that_does_not_fit_is_refused(trained, tmp_path, change, message):
    ckpt = load_checkpoint(trained["probe"], "probe")
    change(ckpt)
    path = save_atomic(ckpt, tmp_path / "bad.pt")
    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match=message) as err:
        export_bundle(OnnxExportConfig(checkpoint=str(path), out_dir=str(out)))
    assert str(path) in str(err.value)
    assert not out.exists()


def test_tolerance_failure_writes_nothing(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(export.onnx_export, "compare_with_torch", lambda *a: 1.0)
    out = tmp_path / "runs" / "bundle"
    with pytest.raises(ExportError, match="differ from torch by 1.00e\\+00") as err:
        export_bundle(OnnxExportConfig(checkpoint=str(trained["probe"]), out_dir=str(out)))
    assert "no bundle written" in str(err.value)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no staging model left behind


def test_nan_difference_is_a_failure_and_keeps_the_old_bundle(trained, bundle, tmp_path,
                                                             monkeypatch):
    out = tmp_path / "bundle"
    first = export_bundle(OnnxExportConfig(checkpoint=str(trained["probe"]), out_dir=str(out)))
    monkeypatch.setattr(export.onnx_export, "compare_with_torch", lambda *a: float("nan"))
    with pytest.raises(ExportError):
        export_bundle(OnnxExportConfig(checkpoint=str(trained["probe"]), out_dir=str(out),
                                       name="other"))
    kept = load_bundle(out)
    assert kept.manifest.name == first.manifest.name == "terrain"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_tolerance_is_configurable(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(export.onnx_export, "compare_with_torch", lambda *a: 5e-4)
    b = export_bundle(OnnxExportConfig(checkpoint=str(trained["probe"]),
                                       out_dir=str(tmp_path / "b"), tolerance=1e-3))
    assert b.manifest.provenance["onnx"]["max_abs_diff_vs_torch"] == 5e-4


def test_non_finite_metrics_become_null_in_the_manifest(trained, tmp_path):
    ckpt = load_checkpoint(trained["probe"], "probe")
    ckpt["metrics"]["mean_recall"] = float("nan")
    path = save_atomic(ckpt, tmp_path / "probe.pt")
    b = export_bundle(OnnxExportConfig(checkpoint=str(path), out_dir=str(tmp_path / "b")))
    data = json.loads((b.path / "manifest.json").read_text(), parse_constant=_reject_constant)
    assert data["metrics"]["mean_recall"] is None
    assert data["metrics"]["accuracy"] == ckpt["metrics"]["accuracy"]
    assert not math.isnan(load_bundle(b.path).manifest.metrics["accuracy"])
