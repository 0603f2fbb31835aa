import json
import os
import stat

import numpy as np
import pytest
from tiny_model import CLASSES, make_tiny_bundle, tiny_manifest, tiny_model_bytes

from edge import bundle as bundle_mod
from edge.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    BundleError,
    load_bundle,
    sha256_file,
    write_bundle,
)
from edge.preprocess import InputSpec
from edge.runners import BACKENDS, make_runner
from edge.tiling import TilingSpec


def _edit_manifest(path, **changes):
    data = json.loads((path / MANIFEST_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (path / MANIFEST_FILE).write_text(json.dumps(data))


def test_round_trip(tmp_path):
    tiling = TilingSpec(reference_width=512, tile=64, stride=48)
    written = make_tiny_bundle(tmp_path / "b", channels=3, tile_pixels=24, tiling=tiling)
    loaded = load_bundle(tmp_path / "b")
    m = loaded.manifest
    assert m == written.manifest
    assert m.classes == CLASSES
    assert m.input == InputSpec(tile_pixels=24, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert m.tiling == tiling
    assert m.precision == "fp32" and m.schema_version == SCHEMA_VERSION
    assert m.provenance["data"] == "synthetic"
    assert m.sha256 == sha256_file(loaded.model_path)
    assert loaded.model_path == tmp_path / "b" / MODEL_FILE
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [MANIFEST_FILE, MODEL_FILE]


def test_manifest_is_plain_json_with_contract_fields(tmp_path):
    make_tiny_bundle(tmp_path / "b")
    data = json.loads((tmp_path / "b" / MANIFEST_FILE).read_text())
    for key in ("name", "classes", "input", "tiling", "precision", "sha256", "provenance",
                "metrics", "schema_version"):
        assert key in data
    assert set(data["input"]) >= {"tile_pixels", "channels", "mean", "std"}
    assert set(data["tiling"]) == {"reference_width", "tile", "stride", "crop"}


def test_non_finite_figures_are_written_as_null(tmp_path):
    """A mean recall with no class of 10 scored tiles is NaN; manifest.json stays strict
    JSON (no bare NaN) for every reader."""
    manifest = tiny_manifest(CLASSES, 1, 32, None)
    manifest.metrics = {"mean_recall": float("nan"), "per_class": [float("inf"), 0.5],
                        "gate": {"drop": (float("-inf"), 1.0)}}
    write_bundle(tmp_path / "b", tiny_model_bytes(), manifest)

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    data = json.loads((tmp_path / "b" / MANIFEST_FILE).read_text(), parse_constant=refuse)
    assert data["metrics"] == {"mean_recall": None, "per_class": [None, 0.5],
                               "gate": {"drop": [None, 1.0]}}


def test_manifest_without_crop_reads_as_whole_frame(tmp_path):
    make_tiny_bundle(tmp_path / "b")
    _edit_manifest(tmp_path / "b", tiling={"reference_width": 256, "tile": 32, "stride": 32})
    assert load_bundle(tmp_path / "b").manifest.tiling.crop == "none"


def test_centre_square_crop_round_trips(tmp_path):
    tiling = TilingSpec(227, 227, 227, crop="centre-square")
    make_tiny_bundle(tmp_path / "b", tiling=tiling)
    assert load_bundle(tmp_path / "b").manifest.tiling == tiling


def test_write_replaces_existing_bundle_and_leaves_no_temporaries(tmp_path):
    make_tiny_bundle(tmp_path / "b", classes=["a", "b", "c", "d"])
    make_tiny_bundle(tmp_path / "b")
    assert load_bundle(tmp_path / "b").manifest.classes == CLASSES
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_bundle_is_readable_by_others(tmp_path):
    mask = os.umask(0o022)
    try:
        make_tiny_bundle(tmp_path / "b")
    finally:
        os.umask(mask)
    mode = stat.S_IMODE((tmp_path / "b").stat().st_mode)
    assert mode == 0o755, oct(mode)


def test_sha256_mismatch_refused(tmp_path):
    make_tiny_bundle(tmp_path / "b")
    model = tmp_path / "b" / MODEL_FILE
    model.write_bytes(model.read_bytes() + b"\x00")
    with pytest.raises(BundleError, match="sha256.*does not match"):
        load_bundle(tmp_path / "b")


def test_missing_model_file(tmp_path):
    make_tiny_bundle(tmp_path / "b")
    (tmp_path / "b" / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("field", ["name", "classes", "input", "tiling", "precision", "sha256"])
def test_missing_manifest_field(tmp_path, field):
    make_tiny_bundle(tmp_path / "b")
    _edit_manifest(tmp_path / "b", **{field: None})
    with pytest.raises(BundleError, match=f"lacks required field.*{field}"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"classes": []}, "classes"),
        ({"classes": "soil"}, "classes"),
        ({"classes": [1, 2]}, "classes"),
        ({"input": {"tile_pixels": 32}}, "input"),
        ({"input": {"tile_pixels": 32, "channels": 2, "mean": [0, 0], "std": [1, 1]}}, "input"),
        ({"tiling": {"reference_width": 256, "tile": 32}}, "tiling"),
        ({"tiling": {"reference_width": 16, "tile": 32, "stride": 32}}, "tiling"),
        ({"tiling": "256/32"}, "tiling"),
        ({"tiling": {"reference_width": 256, "tile": 32, "stride": 32, "crop": "left"}}, "crop"),
        ({"provenance": "made by hand"}, "provenance"),
        ({"metrics": [0.9]}, "metrics"),
    ],
)
def test_malformed_manifest_sections(tmp_path, changes, match):
    make_tiny_bundle(tmp_path / "b")
    _edit_manifest(tmp_path / "b", **changes)
    with pytest.raises(BundleError, match=match):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None])
def test_unsupported_schema_version(tmp_path, version):
    make_tiny_bundle(tmp_path / "b")
    data = json.loads((tmp_path / "b" / MANIFEST_FILE).read_text())
    data["schema_version"] = version
    if version is None:
        del data["schema_version"]
    (tmp_path / "b" / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="schema_version.*not supported"):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_unreadable_manifest(tmp_path, text):
    make_tiny_bundle(tmp_path / "b")
    (tmp_path / "b" / MANIFEST_FILE).write_text(text)
    with pytest.raises(BundleError, match=MANIFEST_FILE):
        load_bundle(tmp_path / "b")


def test_not_a_bundle_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path / "empty")


def test_model_file_given_instead_of_folder(tmp_path):
    make_tiny_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="bundle folder"):
        load_bundle(tmp_path / "b" / MODEL_FILE)


def test_unknown_shipped_name_is_explained(tmp_path, monkeypatch):
    shipped = tmp_path / "models"
    make_tiny_bundle(shipped / "terrain-v1")
    monkeypatch.setattr(bundle_mod, "MODELS_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError) as info:
        load_bundle("terrain")
    message = str(info.value)
    assert "'terrain'" in message and "shipped: terrain-v1" in message
    assert "bundle folder" in message
    # and a shipped name that exists resolves without a path
    assert load_bundle("terrain-v1").path == shipped / "terrain-v1"


def test_default_model_name_absent_gives_helpful_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError, match="neither a bundle folder nor a shipped model"):
        load_bundle(bundle_mod.DEFAULT_MODEL + "-does-not-exist")


def test_missing_path_with_slash(tmp_path):
    with pytest.raises(BundleError, match="neither a bundle folder"):
        load_bundle(tmp_path / "nowhere" / "bundle")


# --- runners: the bundle checked against what the model really does -----------------------


def test_runner_outputs_logits(tiny_bundle):
    runner = make_runner(tiny_bundle, threads=1)
    tiles = np.random.default_rng(0).normal(size=(5, 1, 32, 32)).astype(np.float32)
    logits = runner.run(tiles)
    assert logits.shape == (5, 4) and logits.dtype == np.float32
    np.testing.assert_array_equal(logits, runner.run(tiles))  # deterministic
    assert runner.name in BACKENDS


def test_class_count_not_matching_model_output(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", classes=["soil", "bedrock", "sand"], n_outputs=4)
    with pytest.raises(BundleError, match="outputs shape .*4.* 3 classes"):
        make_runner(bundle)


def test_input_spec_not_matching_model(tmp_path):
    # The manifest says 3 channels, the model takes 1: the probe run catches it.
    model = tiny_model_bytes(channels=1)
    bundle = write_bundle(tmp_path / "b", model, tiny_manifest(channels=3))
    with pytest.raises(BundleError, match="model fails"):
        make_runner(bundle)


def test_wrong_input_name(tmp_path):
    model = tiny_model_bytes(input_name="images")
    bundle = write_bundle(tmp_path / "b", model, tiny_manifest())
    with pytest.raises(BundleError, match="no input named 'tiles'"):
        make_runner(bundle)


def test_onnx_file_that_does_not_load(tmp_path):
    bundle = write_bundle(tmp_path / "b", b"this is not an onnx model", tiny_manifest())
    with pytest.raises(BundleError, match="cannot load the model"):
        make_runner(bundle)


def test_unknown_backend(tiny_bundle):
    with pytest.raises(BundleError, match="backend 'tensorrt-x' is not available"):
        make_runner(tiny_bundle, backend="tensorrt-x")
