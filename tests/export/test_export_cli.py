"""``edge export onnx`` and the exported bundle under ``edge classify``."""

from __future__ import annotations

import json

import pytest
from export_fixtures import write_frame

from edge.bundle import load_bundle
from toolkit_cli.main import main
from train.datasets.ai4mars import CLASSES


@pytest.fixture(scope="module")
def cli_bundle(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "bundle"
    code = main(["export", "onnx", "--checkpoint", str(trained["probe"]), "--out", str(out),
                 "--check-frames", "0"])
    assert code == 0
    return out


def test_export_onnx_with_random_check_tiles(cli_bundle):
    bundle = load_bundle(cli_bundle)
    assert bundle.manifest.name == "terrain"
    assert bundle.manifest.provenance["onnx"]["checked_tiles"] == 64
    assert bundle.manifest.provenance["command"].startswith("edge")


def test_export_onnx_prints_a_summary(trained, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", "onnx", "--checkpoint", str(trained["probe"]), "--out", str(out),
                 "--check-frames", "0", "--name", "mine"]) == 0
    printed = capsys.readouterr().out
    assert f"bundle {out}: sha256 " in printed
    assert "max |torch - onnxruntime|" in printed
    assert load_bundle(out).manifest.name == "mine"


def test_export_onnx_checks_on_val_frames(trained, ai4mars_dir, tmp_path):
    out = tmp_path / "b"
    assert main(["export", "onnx", "--checkpoint", str(trained["probe"]), "--out", str(out),
                 "--data", str(ai4mars_dir), "--check-frames", "1"]) == 0
    assert load_bundle(out).manifest.provenance["onnx"]["checked_tiles"] == 64


@pytest.mark.parametrize("which", ["missing", "encoder"])
def test_export_onnx_bad_checkpoint_exits_1(trained, tmp_path, capsys, which):
    checkpoint = tmp_path / "nope.pt" if which == "missing" else trained["encoder"]
    for frames in ("0", "2"):
        code = main(["export", "onnx", "--checkpoint", str(checkpoint),
                     "--out", str(tmp_path / "b"), "--check-frames", frames])
        assert code == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(checkpoint) in err
    assert not (tmp_path / "b").exists()


def test_export_onnx_missing_data_exits_1(trained, tmp_path, capsys):
    missing = tmp_path / "no-data"
    code = main(["export", "onnx", "--checkpoint", str(trained["probe"]),
                 "--out", str(tmp_path / "b"), "--data", str(missing), "--check-frames", "2"])
    assert code == 1
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_edge_classify_runs_the_exported_bundle(cli_bundle, tmp_path):
    frames = tmp_path / "frames"
    write_frame(frames / "a.jpg", seed=1)
    write_frame(frames / "b.png", seed=2, size=128)
    out = tmp_path / "out"
    assert main(["classify", str(frames), "--out", str(out), "--model", str(cli_bundle),
                 "-q"]) == 0
    tiles = [json.loads(line) for line in (out / "tiles.jsonl").read_text().splitlines()]
    assert len(tiles) == 2 * 64
    assert {t["frame"] for t in tiles} == {"a.jpg", "b.png"}
    assert {t["label"] for t in tiles} <= set(CLASSES)
    assert all(0.0 <= t["confidence"] <= 1.0 for t in tiles)
    frames_out = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [f["error"] for f in frames_out] == [None, None]
