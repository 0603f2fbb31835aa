"""Operating point: the offset sweep's figures, the choice, the exact bias shift, and the
command on a tiny distilled student (synthetic frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.bundle import load_bundle
from export.distill import scored_val, student_from_checkpoint, student_logits
from export.operating_point import (
    OperatingPointConfig,
    choose_offset,
    offset_sweep,
    operating_point,
    shift_head_bias,
)
from export.student import Student, StudentConfig
from toolkit_cli.main import main
from train.checkpoint import load_checkpoint
from train.tiles import TileDataConfig

CLASSES = ["a", "b", "c"]


def test_sweep_figures_by_hand():
    # 4 tiles; class c (k=2) is never the argmax unshifted
    logits = np.array([[2.0, 0.0, 1.0],     # label a; c wins from offset > 1
                       [0.0, 2.0, 0.5],     # label b; c wins from offset > 1.5
                       [1.0, 0.0, 0.0],     # label c; c wins from offset > 1
                       [0.0, 3.0, 0.0]],    # label c; c wins from offset > 3
                      dtype=np.float32)
    labels = np.array([0, 1, 2, 2])
    logits, labels = np.tile(logits, (10, 1)), np.tile(labels, 10)  # supports 10, 10, 20
    rows = offset_sweep(logits, labels, 2, [0.0, 1.25, 2.0, 4.0], CLASSES)
    assert [r["offset"] for r in rows] == [0.0, 1.25, 2.0, 4.0]
    assert [r["accuracy"] for r in rows] == [0.5, 0.5, 0.25, 0.5]
    assert [r["per_class_recall"]["c"] for r in rows] == [0.0, 0.5, 0.5, 1.0]
    assert [r["per_class_recall"]["a"] for r in rows] == [1.0, 0.0, 0.0, 0.0]
    assert [r["mean_recall"] for r in rows] == pytest.approx([2 / 3, 0.5, 1 / 6, 1 / 3])
    assert [r["predicted"]["c"] for r in rows] == [0, 20, 30, 40]
    # the input logits are not modified
    assert logits[2, 2] == 0.0


def test_choose_offset_takes_the_best_and_breaks_ties_toward_zero():
    rows = [{"offset": 0.0, "mean_recall": 0.5, "accuracy": 0.9},
            {"offset": 1.0, "mean_recall": 0.7, "accuracy": 0.8},
            {"offset": 2.0, "mean_recall": 0.7, "accuracy": 0.7},
            {"offset": -1.0, "mean_recall": 0.6, "accuracy": 0.95}]
    assert choose_offset(rows) == 1.0
    assert choose_offset(rows, "accuracy") == -1.0
    # a flat top: within the tolerance, the offset nearest zero wins
    assert choose_offset(rows, tolerance=0.1) == -1.0
    assert choose_offset(rows, tolerance=0.09) == 1.0
    assert choose_offset(rows, "accuracy", tolerance=0.05) == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        choose_offset(rows, tolerance=-0.1)
    with pytest.raises(ValueError, match="criterion"):
        choose_offset(rows, "f1")
    with pytest.raises(ValueError, match="no sweep"):
        choose_offset([])
    # mean recall is NaN where no class has 10 scored tiles: such rows are never chosen
    nan = float("nan")
    assert choose_offset([{"offset": 0.0, "mean_recall": nan}, *rows[1:]]) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        choose_offset([{"offset": 0.0, "mean_recall": nan}, {"offset": 1.0, "mean_recall": nan}])
    with pytest.raises(ValueError, match="criterion"):
        OperatingPointConfig(student="s", out="o", criterion="f1")


def test_shift_moves_one_logit_exactly_and_nothing_else():
    torch.manual_seed(0)
    model = Student(StudentConfig(widths=(8, 8, 16)), 4).eval()
    shifted = shift_head_bias(model, 3, 2.5)
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        diff = shifted(x) - model(x)
    torch.testing.assert_close(diff[:, 3], torch.full((8,), 2.5))
    assert torch.equal(diff[:, :3], torch.zeros(8, 3))
    before, after = model.state_dict(), shifted.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["head.bias"]


def test_operating_point_writes_the_shifted_student(student, ai4mars_dir, tmp_path):
    out = tmp_path / "op.pt"
    record = operating_point(OperatingPointConfig(
        student=str(student["checkpoint"]), out=str(out), class_name="big rock",
        offsets=(0.0, 0.5, 1.0, 3.0), threads=1), log=lambda *_: None)
    src = load_checkpoint(student["checkpoint"], "student")
    ckpt = load_checkpoint(out, "student")
    k = src["classes"].index("big rock")
    # the chosen offset is the sweep's best mean recall, and it is what the head carries
    assert record["offset"] == choose_offset(record["sweep"], tolerance=0.002)
    assert ckpt["operating_point"]["offset"] == record["offset"]
    data = TileDataConfig(**src["distill_config"]["data"])
    tiles, labels, _ = scored_val(data)
    before = student_logits(student_from_checkpoint(src), tiles)
    after = student_logits(student_from_checkpoint(ckpt), tiles)
    np.testing.assert_allclose(after[:, k] - before[:, k], record["offset"], atol=1e-5)
    np.testing.assert_allclose(np.delete(after, k, 1), np.delete(before, k, 1), atol=1e-6)
    # the sweep row of the chosen offset is the shifted student's own accuracy on these tiles
    row = next(r for r in record["sweep"] if r["offset"] == record["offset"])
    assert row["accuracy"] == pytest.approx(float((after.argmax(1) == labels).mean()))
    assert ckpt["metrics"]["student"]["accuracy"] == pytest.approx(row["accuracy"])
    assert "agreement" in ckpt["metrics"] and ckpt["distill_config"] == src["distill_config"]
    assert json.loads((tmp_path / "op.pt.sweep.json").read_text())["offset"] == record["offset"]


def test_command_with_a_given_offset_exports_a_bundle(student, tmp_path, capsys):
    out, bundle = tmp_path / "op.pt", tmp_path / "b"
    code = main(["export", "operating-point", "--student", str(student["checkpoint"]),
                 "--out", str(out), "--bundle", str(bundle), "--offsets", "0,1",
                 "--offset", "0.75", "--threads", "1"])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "+0.75 (given" in text.out and "<-" in text.out
    rec = load_checkpoint(out, "student")["operating_point"]
    assert [r["offset"] for r in rec["sweep"]] == [0.0, 1.0, 0.75]
    made = load_bundle(bundle)
    assert made.manifest.precision == "fp32"
    assert made.manifest.provenance["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    op = made.manifest.provenance["operating_point"]
    assert (op["class"], op["offset"], op["previous"]) == ("big rock", 0.75, None)
    assert "sweep" not in op
    # shifting the shifted student again keeps the first shift on record
    again = tmp_path / "op2.pt"
    assert main(["export", "operating-point", "--student", str(out), "--out", str(again),
                 "--class", "sand", "--offset", "-0.5", "--offsets", "0", "--threads", "1"]) == 0
    rec2 = load_checkpoint(again, "student")["operating_point"]
    assert rec2["previous"]["offset"] == 0.75 and rec2["previous"]["class"] == "big rock"
    # a student never shifted carries no record into its manifest
    assert "operating_point" not in load_bundle(student["bundle"]).manifest.provenance


def test_too_few_val_tiles_for_mean_recall_exit_1_and_write_nothing(student, tmp_path, capsys,
                                                                   monkeypatch):
    import export.operating_point as op

    def no_recall(*args, **kwargs):
        return [dict(r, mean_recall=float("nan")) for r in offset_sweep(*args, **kwargs)]

    monkeypatch.setattr(op, "offset_sweep", no_recall)
    out = tmp_path / "op.pt"
    code = main(["export", "operating-point", "--student", str(student["checkpoint"]),
                 "--out", str(out), "--offsets", "0,1"])
    err = capsys.readouterr().err
    assert code == 1 and "mean_recall undefined (no class has 10 tiles)" in err
    assert not out.exists() and not (tmp_path / "op.pt.sweep.json").exists()


def test_bad_class_or_offsets_exit_1_and_write_nothing(student, trained, tmp_path, capsys):
    out = tmp_path / "op.pt"
    code = main(["export", "operating-point", "--student", str(student["checkpoint"]),
                 "--out", str(out), "--class", "boulder"])
    err = capsys.readouterr().err
    assert code == 1 and "no class 'boulder'" in err and str(student["checkpoint"]) in err
    code = main(["export", "operating-point", "--student", str(student["checkpoint"]),
                 "--out", str(out), "--offsets", "1,x"])
    assert code == 1 and "--offsets" in capsys.readouterr().err
    code = main(["export", "operating-point", "--student", str(trained["probe"]),
                 "--out", str(out)])
    assert code == 1 and "'student'" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "op.pt.sweep.json").exists()
