"""Bundles that must be refused through the CLI: exit 1, a message naming the problem, nothing
written. (The library-level checks are in tests/edge/test_edge_bundle.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_data import make_bundle, tiny_model_bytes, write_frames
from reliability_scenarios import BUNDLE_DAMAGE, wrong_sha

from toolkit_cli.main import main


def _refused(tmp_path: Path, bundle_dir: Path, match: str, capsys) -> str:
    src = tmp_path / "frames"
    write_frames(src, 2)
    out = tmp_path / "out"
    code = main(["classify", str(src), "--out", str(out), "--model", str(bundle_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("error: ") and match in err, err
    assert "Traceback" not in err
    assert not out.exists()  # refused before anything is written
    return err.strip()


@pytest.mark.parametrize("case", sorted(BUNDLE_DAMAGE))
def test_damaged_bundle_refused(tmp_path, capsys, case):
    damage, match = BUNDLE_DAMAGE[case]
    bundle = make_bundle(tmp_path / "bundle")
    damage(bundle.path)
    _refused(tmp_path, bundle.path, match, capsys)


def test_class_count_not_matching_model_output(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "bundle", classes=["soil", "bedrock", "sand"], n_outputs=4)
    err = _refused(tmp_path, bundle.path, "3 classes", capsys)
    assert "outputs shape" in err


def test_onnx_file_that_does_not_load(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "bundle", model_bytes=b"not an onnx model at all")
    _refused(tmp_path, bundle.path, "cannot load the model", capsys)


def test_truncated_onnx_file_with_matching_hash(tmp_path, capsys):
    data = tiny_model_bytes()
    bundle = make_bundle(tmp_path / "bundle", model_bytes=data[: len(data) // 2])
    _refused(tmp_path, bundle.path, "cannot load the model", capsys)


def test_bundle_refused_by_sim_too(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "bundle")
    wrong_sha(bundle.path)
    src = tmp_path / "frames"
    write_frames(src, 2)
    code = main(["sim", str(src), "--fps", "2", "--model", str(bundle.path),
                 "--report", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 1 and "does not match the manifest" in err, err
    assert not (tmp_path / "rep" / "report.json").exists()
