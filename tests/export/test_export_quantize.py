"""``edge export quantize``: variants, the TensorRT variant and bad inputs."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge.bundle import load_bundle
from edge.cpu_info import cpu_info
from export.accuracy_gate import GateError
from export.quantize import (
    TRT_VARIANT,
    QuantizeConfig,
    QuantizeError,
    QuantVariant,
    error_sources,
    kernel_check,
    quantize_bundle,
    quantize_model,
    snap_weights,
    variant_grid,
)
from export.student import count_onnx_graph
from toolkit_cli.main import main

logging.getLogger().setLevel(logging.ERROR)


def _ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(0).normal(size=(128, 1, 32, 32)).astype(np.float32)


def test_grid_covers_every_axis():
    grid = variant_grid(True)
    assert len(grid) == 31 and len({v.name for v in grid}) == 31
    short = variant_grid(False)
    assert len(short) == 13  # the counts that the docstring and --grid's help state
    for axis in ("fmt", "activation", "per_channel", "calibration", "weights"):
        assert len({getattr(v, axis) for v in short}) > 1


def test_snapped_weights_are_on_the_per_channel_grid(student):
    model = onnx.load(str(load_bundle(student["bundle"]).model_path))
    stem = model.graph.node[0].name
    snapped = snap_weights(model, [stem])
    before = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in snapped.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        name = node.input[1]
        if node.name == stem:
            assert np.array_equal(after[name], before[name])
            continue
        w = after[name].reshape(len(after[name]), -1)
        steps = w / (np.abs(w).max(axis=1, keepdims=True) / 127)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
        assert not np.array_equal(after[name], before[name])
        assert np.abs(after[name] - before[name]).max() <= np.abs(before[name]).max() / 254 + 1e-7
    assert {n for n in before if n.endswith("bias")} and all(
        np.array_equal(after[n], before[n]) for n in before if n.endswith("bias"))


def test_error_sources_split_weights_from_activations(student, calib, tmp_path):
    src = load_bundle(student["bundle"]).model_path
    variant = QuantVariant("qdq", "u8", True, "minmax")
    split = error_sources(src, variant, calib[:64], calib, "tiles", tmp_path)
    assert split["tiles"] == len(calib)
    for key in ("weights_only", "activations_only", "both"):
        assert 0 <= split[key] <= len(calib)
    from export.quantize import predict

    given = error_sources(src, variant, calib[:64], calib, "tiles", tmp_path,
                          float_pred=predict(src, calib, "tiles"))
    assert given == split                      # the caller's float predictions are reused
    # on a model whose weights are already on the grid, rounding the weights changes nothing
    onnx.save(snap_weights(onnx.load(str(src)), []), str(tmp_path / "snapped.onnx"))
    again = error_sources(tmp_path / "snapped.onnx", variant, calib[:64], calib, "tiles",
                          tmp_path)
    assert again["weights_only"] == 0 and again["activations_only"] == again["both"]
    assert error_sources(src, replace(variant, per_channel=False), calib, calib, "tiles",
                         tmp_path) is None


@pytest.mark.parametrize("fmt,op", [("qdq", "QuantizeLinear"), ("qoperator", "QLinearConv")])
def test_quantized_model_has_int8_operators(student, calib, tmp_path, fmt, op):
    src = load_bundle(student["bundle"]).model_path
    out = quantize_model(src, tmp_path / "q.onnx", QuantVariant(fmt, "u8", True, "minmax"),
                         calib, "tiles")
    assert op in _ops(out)
    onnx.checker.check_model(onnx.load(str(out)))
    # Parameters and MACs counted from the INT8 graph are the float model's (QOperator:
    # QLinearConv / QGemm, whose shapes onnx inference loses after its contrib ops).
    counts = count_onnx_graph(onnx.load(str(out)))
    float_counts = count_onnx_graph(onnx.load(str(src)))
    assert (counts["parameters"], counts["macs"]) == (float_counts["parameters"],
                                                      float_counts["macs"])


def test_u8_weights_are_uint8_with_zero_point_128(student, calib, tmp_path):
    src = load_bundle(student["bundle"]).model_path
    variant = QuantVariant("qdq", "u8", True, "percentile", weights="u8")
    assert variant.name == "qdq-u8u8-pc-percentile"
    model = onnx.load(str(quantize_model(src, tmp_path / "q.onnx", variant, calib, "tiles")))
    init = {t.name: t for t in model.graph.initializer}
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
               and n.input[0] in init and len(init[n.input[0]].dims) == 4]
    assert weights
    for node in weights:
        assert init[node.input[0]].data_type == onnx.TensorProto.UINT8
        assert set(numpy_helper.to_array(init[node.input[2]]).ravel().tolist()) == {128}
    same_s8 = onnx.load(str(quantize_model(src, tmp_path / "s.onnx", replace(variant, weights="s8"),
                                           calib, "tiles")))
    assert {t.data_type for t in same_s8.graph.initializer if len(t.dims) == 4} == {
        onnx.TensorProto.INT8}


def test_kernel_check_tells_kernel_error_from_grid_error(student, calib, tmp_path):
    src = load_bundle(student["bundle"]).model_path
    quant = quantize_model(src, tmp_path / "q.onnx", QuantVariant("qdq", "u8", False, "minmax"),
                           calib, "tiles")
    own = kernel_check(quant, quant, calib, "tiles")
    assert own["tiles"] == len(calib)
    # Fused kernels and the graph as written compute the same quantized model...
    assert own["fused_vs_reference"] <= 1
    # ...while a different quantized model (calibrated on 50x wider ranges, a coarse grid) is
    # told apart.
    coarse = quantize_model(src, tmp_path / "c.onnx", QuantVariant("qdq", "u8", False, "minmax"),
                            calib * 50, "tiles")
    other = kernel_check(quant, coarse, calib, "tiles")
    # Not "> 0" for the model against itself: fused kernels with exact int32 sums (e.g. VNNI)
    # may reproduce the graph as written bit for bit. The coarse model differs either way
    # (0.139 here, against 0.005 for the model against itself).
    assert other["max_abs_logit_diff"] > 10 * own["max_abs_logit_diff"]
    assert other["max_abs_logit_diff"] > 0.02


def test_u8_weights_in_qoperator_form_are_refused(student, calib, tmp_path):
    with pytest.raises(QuantizeError, match="uint8 weights need the QDQ format"):
        quantize_model(load_bundle(student["bundle"]).model_path, tmp_path / "q.onnx",
                       QuantVariant("qoperator", "u8", True, "minmax", weights="u8"), calib,
                       "tiles")


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_head_float_leaves_the_logits_node_unquantized(student, calib, tmp_path, fmt):
    src = load_bundle(student["bundle"]).model_path
    variant = QuantVariant(fmt, "u8", True, "percentile", stem_float=True, head_float=True)
    assert variant.name.endswith("-stemfp-headfp")
    model = onnx.load(str(quantize_model(src, tmp_path / "q.onnx", variant, calib, "tiles")))
    float_model = onnx.load(str(src))
    head = next(n for n in float_model.graph.node if "logits" in n.output)
    last = next(n for n in model.graph.node if "logits" in n.output)
    assert last.op_type == head.op_type  # a float Gemm (or MatMul), not a Q/DQ or QLinear op
    quantized = onnx.load(str(quantize_model(src, tmp_path / "p.onnx", QuantVariant(
        fmt, "u8", True, "percentile", stem_float=True), calib, "tiles")))
    assert next(n for n in quantized.graph.node if "logits" in n.output).op_type != head.op_type


def test_trt_variant_is_symmetric_signed_qdq(student, calib, tmp_path):
    src = load_bundle(student["bundle"]).model_path
    out = quantize_model(src, tmp_path / "q.onnx", TRT_VARIANT, calib, "tiles")
    model = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert "QLinearConv" not in _ops(out)


def test_quantize_bundle_writes_int8_and_trt_bundles(student, ai4mars_dir, tmp_path):
    cfg = QuantizeConfig(bundle=str(student["bundle"]), out=str(tmp_path / "int8"),
                         trt_out=str(tmp_path / "trt"), data=str(ai4mars_dir), calib_frames=4,
                         full_grid=False, repeats=1, threads=(1,), min_agreement=0.0,
                         max_accuracy_drop=1.0, min_speedup=0.0,
                         variants=["qdq-u8-pc-minmax", "qoperator-u8-pt-minmax"])
    summary = quantize_bundle(cfg, log=lambda *_: None)
    int8 = load_bundle(tmp_path / "int8")
    assert int8.manifest.precision == "int8"
    q = int8.manifest.provenance["quantization"]
    assert q["variant"] == summary["chosen"]
    assert {r["variant"] for r in q["variant_table"]["variants"]} == set(cfg.variants)
    assert "ms_1t" in q["variant_table"]["variants"][0]
    assert q["variant_table"]["cpu"] == cpu_info().to_json()  # speeds and kernels are the CPU's
    chosen = next(r for r in q["variant_table"]["variants"] if r["variant"] == q["variant"])
    assert chosen["speedup_side_by_side"] > 0 and "timed side by side" in q["chosen_because"]
    # the INT8 manifest's figures are the INT8 model's own, not the float bundle's
    metrics = int8.manifest.metrics
    confusion = np.array(metrics["confusion"])
    assert confusion.sum() == metrics["gate"]["tiles"] == metrics["tiles"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(metrics["accuracy"])
    assert metrics["confusion"] == chosen["confusion"]
    assert "agreement_with_teacher" not in metrics and "float_agreement_with_teacher" in metrics
    from train.revision import git_revision

    prov = int8.manifest.provenance
    assert prov["git_revision"] == git_revision()
    assert prov["float_bundle"]["git_revision"] == load_bundle(
        student["bundle"]).manifest.provenance["git_revision"]
    trt = load_bundle(tmp_path / "trt")
    assert trt.manifest.precision == "int8-qdq-trt"
    assert trt.manifest.provenance["quantization"]["symmetric"] is True


def test_an_onnx_file_that_is_not_a_bundle_is_refused(student, tmp_path, capsys):
    onnx_file = load_bundle(student["bundle"]).model_path
    code = main(["export", "quantize", str(onnx_file), "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 1 and str(onnx_file) in err and "bundle folder" in err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("flag", ["--out", "--trt-out"])
def test_an_empty_output_folder_is_refused(student, tmp_path, capsys, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    args = {"--out": str(tmp_path / "q"), flag: ""}
    code = main(["export", "quantize", str(student["bundle"]),
                 *[x for kv in args.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 1 and flag in err and "bundle folder" in err
    assert list(tmp_path.iterdir()) == []


def test_a_calibration_folder_without_images_is_refused(student, ai4mars_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    code = main(["export", "quantize", str(student["bundle"]), "--out", str(tmp_path / "q"),
                 "--calib", str(empty), "--data", str(ai4mars_dir)])
    err = capsys.readouterr().err
    assert code == 1 and str(empty) in err and "no images" in err
    assert not (tmp_path / "q").exists()
    with pytest.raises(QuantizeError, match="not a directory"):
        quantize_bundle(QuantizeConfig(bundle=str(student["bundle"]), out=str(tmp_path / "q"),
                                       calib_dir=str(tmp_path / "nope")))


def test_a_calibration_folder_of_images_is_used(student, ai4mars_dir, tmp_path):
    cfg = QuantizeConfig(bundle=str(student["bundle"]), out=str(tmp_path / "int8"),
                         trt_out=None, data=str(ai4mars_dir),
                         calib_dir=str(ai4mars_dir / "images"), calib_frames=3, repeats=1,
                         threads=(1,), min_agreement=0.0, max_accuracy_drop=1.0,
                         min_speedup=0.0, variants=["qdq-u8-pt-minmax"])
    quantize_bundle(cfg, log=lambda *_: None)
    table = load_bundle(tmp_path / "int8").manifest.provenance["quantization"]["variant_table"]
    assert table["calibration"].startswith("3 frames spread over")
    assert table["calibration_tiles"] == 3 * 64
    json.dumps(table)


def test_unknown_variant_names_are_refused_before_any_work(student, tmp_path):
    cfg = QuantizeConfig(bundle=str(student["bundle"]), out=str(tmp_path / "int8"),
                         data=str(tmp_path / "no-data-needed"),
                         variants=["qdq-u8-pc-minmax", "qdq-u8-pc-minmaxx"])
    with pytest.raises(QuantizeError, match=r"unknown variant\(s\) qdq-u8-pc-minmaxx; the "
                                            r"grid's variants are: .*qdq-u8-pc-minmax"):
        quantize_bundle(cfg, log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_variants_named_with_the_short_grid_come_from_the_full_grid():
    from export.quantize import select_variants

    name = "qdq-u8-pc-percentile-stemfp-headfp-eq50"
    assert name not in {v.name for v in variant_grid(full=False)}
    assert [v.name for v in select_variants([name], full=False)] == [name]


def test_a_variant_slower_than_float_is_not_written(student, ai4mars_dir, tmp_path):
    cfg = QuantizeConfig(bundle=str(student["bundle"]), out=str(tmp_path / "new" / "int8"),
                         trt_out=None, data=str(ai4mars_dir), calib_frames=2, repeats=1,
                         threads=(1,), min_agreement=0.0, max_accuracy_drop=1.0,
                         min_speedup=1000.0, variants=["qdq-u8-pt-minmax"])
    with pytest.raises(GateError, match="pass the accuracy gate, but none is at least 1000x"):
        quantize_bundle(cfg, log=lambda *_: None)
    assert not (tmp_path / "new" / "int8").exists()  # its parent did not exist either
    table = json.loads((tmp_path / "new" / "int8.variants.json").read_text())
    assert table["variants"][0]["passed"] is True


def test_side_by_side_speedup_alternates_the_order_and_takes_the_median_ratio():
    from export.quantize import side_by_side_speedup

    calls = []
    # Round 1 is a slow spell that hits both models alike; round 2's int8 timing is an outlier.
    float_ms, int8_ms = iter([10.0, 40.0, 10.0, 9.0]), iter([5.0, 20.0, 50.0, 4.5])

    def timer(path, frames, input_name, threads, repeats):
        calls.append((str(path), threads, repeats))
        return {"median_ms": next(float_ms if str(path) == "f.onnx" else int8_ms)}

    ratio = side_by_side_speedup("f.onnx", "q.onnx", [], "tiles", threads=2, repeats=3,
                                 rounds=4, timer=timer)
    # per-round ratios 2.0, 2.0, 0.2, 2.0: the median ignores the outlier round
    assert ratio == 2.0
    assert [c[0] for c in calls] == ["f.onnx", "q.onnx", "q.onnx", "f.onnx"] * 2
    assert {c[1:] for c in calls} == {(2, 3)}


def test_side_by_side_speedup_skips_rounds_timed_at_zero():
    from export.quantize import side_by_side_speedup

    def timer(path, *_):
        return {"median_ms": 1.0 if str(path) == "f.onnx" else 0.0}

    assert side_by_side_speedup("f.onnx", "q.onnx", [], "tiles", 1, 1, rounds=3,
                                timer=timer) == 0.0


def test_side_by_side_speedup_times_real_models(student):
    """The real timer runs both sessions; no bound on the ratio itself (a timed unit test
    would fail on a loaded machine: speed is measured by the benchmarks in docs/)."""
    from export.quantize import side_by_side_speedup

    src = load_bundle(student["bundle"]).model_path
    frames = [np.random.default_rng(k).normal(size=(64, 1, 32, 32)).astype(np.float32)
              for k in range(2)]
    ratio = side_by_side_speedup(src, src, frames, "tiles", threads=1, repeats=1, rounds=2)
    assert np.isfinite(ratio) and ratio > 0
