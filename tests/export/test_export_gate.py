"""The INT8 accuracy gate and its per-layer failure report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from export.accuracy_gate import GateError, check_gate, layer_errors
from export.quantize import QuantizeConfig, QuantVariant, quantize_bundle, quantize_model
from toolkit_cli.main import main
from train.datasets.ai4mars import CLASSES

logging.getLogger().setLevel(logging.ERROR)


def test_gate_passes_identical_predictions():
    labels = np.arange(400) % 4
    gate = check_gate(labels.copy(), labels.copy(), labels, CLASSES)
    assert gate.passed and gate.agreement == 1.0 and gate.accuracy_drop == 0


def test_gate_fails_on_low_agreement_even_without_accuracy_loss():
    labels = np.arange(400) % 4
    float_pred = labels.copy()
    float_pred[:40] = (labels[:40] + 1) % 4          # float: 90% right
    int8_pred = labels.copy()
    int8_pred[40:80] = (labels[40:80] + 1) % 4       # int8: 90% right, other tiles wrong
    gate = check_gate(float_pred, int8_pred, labels, CLASSES)
    assert gate.accuracy_drop == pytest.approx(0)
    assert gate.agreement == pytest.approx(0.8)
    assert not gate.passed and "agreement" in gate.failures[0]


def test_agreement_one_tile_short_names_the_counts():
    labels = np.arange(43841) % 4
    int8 = labels.copy()
    int8[:438] = (labels[:438] + 1) % 4               # 438 of 43,841 differ: 99.0009%
    assert check_gate(labels, int8, labels, CLASSES, max_accuracy_drop=1.0).passed
    int8[:439] = (labels[:439] + 1) % 4               # 439: 98.99865%, "0.9900" at 4 places
    gate = check_gate(labels, int8, labels, CLASSES, max_accuracy_drop=1.0)
    assert gate.failures == ["agreement with the float model 0.98998 < 0.99 (439 of 43841 "
                             "tiles differ, at most 438 may)"]


def test_gate_fails_on_accuracy_drop_and_passes_at_the_limit():
    labels = np.arange(1000) % 4
    int8 = labels.copy()
    int8[:5] = (labels[:5] + 1) % 4                  # 0.5 points lost, 99.5% agreement
    assert check_gate(labels, int8, labels, CLASSES).passed
    int8[:6] = (labels[:6] + 1) % 4                  # 0.6 points
    gate = check_gate(labels, int8, labels, CLASSES)
    assert not gate.passed and "accuracy drop" in gate.failures[0]


def test_layer_errors_are_small_for_int8_and_zero_for_itself(student, tmp_path):
    from edge.bundle import load_bundle

    src = load_bundle(student["bundle"]).model_path
    tiles = np.random.default_rng(1).normal(size=(64, 1, 32, 32)).astype(np.float32)
    q = quantize_model(src, tmp_path / "q.onnx", QuantVariant(), tiles, "tiles")
    rows = layer_errors(src, q, tiles)
    assert rows and all(r["cosine"] > 0.9 for r in rows)
    same = layer_errors(src, src, tiles)
    assert all(r["relative_error"] == 0 for r in same)


def test_a_failed_gate_leaves_no_bundle_and_writes_the_report(student, ai4mars_dir, tmp_path):
    out = tmp_path / "int8"
    cfg = QuantizeConfig(bundle=str(student["bundle"]), out=str(out), trt_out=None,
                         data=str(ai4mars_dir), calib_frames=2, repeats=1, threads=(1,),
                         min_agreement=1.01, variants=["qoperator-u8-pt-minmax"])
    with pytest.raises(GateError) as info:
        quantize_bundle(cfg, log=lambda *_: None)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    report = json.loads(info.value.report.read_text())
    assert report["gate"]["passed"] is False and report["layers"]
    assert "QDQ twin" in report["note"]
    assert report["kernel_check"]["tiles"] > 0
    assert 0 <= report["kernel_check"]["fused_vs_reference"] <= report["kernel_check"]["tiles"]
    assert "fused INT8 kernels" in info.value.report.with_suffix(".md").read_text()
    assert report["error_sources"] is None     # per-tensor weights: no split is computed


def test_cli_gate_failure_exits_1_naming_the_report(student, ai4mars_dir, tmp_path, capsys,
                                                    monkeypatch):
    import export.quantize as quantize_module

    real = quantize_module.check_gate

    def strict(float_pred, int8_pred, labels, classes, *_):
        return real(float_pred, int8_pred, labels, classes, 1.01, 0.0)

    monkeypatch.setattr(quantize_module, "check_gate", strict)
    code = main(["export", "quantize", str(student["bundle"]), "--out", str(tmp_path / "q"),
                 "--data", str(ai4mars_dir), "--calib-frames", "2", "--repeats", "1",
                 "--threads", "1", "--variants", "qdq-u8-pt-minmax"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no INT8 variant passes" in err and "gate-report.json" in err
    assert not (tmp_path / "q").exists()
    assert (tmp_path / "q.gate-report.md").is_file()


def test_largest_sqnr_step_names_where_error_is_added():
    from export.accuracy_gate import largest_sqnr_step

    rows = [{"tensor": t, "op": "Conv", "sqnr_db": v}
            for t, v in [("a", None), ("b", 40.0), ("c", 38.0), ("d", 30.0), ("e", 31.0)]]
    assert largest_sqnr_step(rows) == {"tensor": "d", "op": "Conv", "drop_db": 8.0}
    assert largest_sqnr_step(rows[:2]) is None
