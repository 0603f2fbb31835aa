"""Channel equalization before INT8: which tensors it may scale, that the float function is
unchanged, that alpha 1 gives every channel the same range, and the quantize variant."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from export.equalize import MAX_SCALE_RATIO, equalize, find_groups, group_scales, reader_ranges
from export.onnx_export import to_onnx_bytes
from export.quantize import QuantVariant, logits, quantize_model, variant_grid
from export.student import Student, StudentConfig, fold_batchnorm


def _student_onnx(path, seed: int = 0):
    torch.manual_seed(seed)
    model = Student(StudentConfig(widths=(8, 8, 16)), 4).eval()
    with torch.no_grad():   # channels of very different ranges, as after BN folding
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.logspace(-1, 1, m.num_features)[
                    torch.randperm(m.num_features)])
                m.running_mean.normal_(0, 0.5)
    path.write_bytes(to_onnx_bytes(fold_batchnorm(model), torch.zeros(1, 1, 32, 32), 17))
    return onnx.load(str(path))


def _tiles(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 32, 32)).astype(np.float32)


def test_groups_of_the_student_follow_its_residual_blocks(tmp_path):
    model = _student_onnx(tmp_path / "s.onnx")
    groups = find_groups(model)
    producers = [sorted(p.name for p in g.producers) for g in groups]
    readers = [sorted(r.name for r in g.readers) for g in groups]
    # the stem and the first block's identity skip form one group; then per block its inner
    # pair, and its output (second convolution + 1x1 skip) read by the next block or the head
    assert producers[0] == ["/stages/stages.0/conv2/Conv", "/stem/stem.0/Conv"]
    assert readers[0] == ["/stages/stages.0/conv1/Conv", "/stages/stages.1/conv1/Conv",
                          "/stages/stages.1/skip/skip.0/Conv"]
    assert len(groups) == 6 and readers[-1] == ["/head/Gemm"]
    assert "/Flatten_output_0" in groups[-1].tensors


def test_a_tensor_that_leaves_the_graph_is_not_scaled():
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    w2 = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
         helper.make_node("Relu", ["a"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2"], ["y"], name="c2")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None),
         helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, None)], [w, w2])
    assert find_groups(helper.make_model(graph)) == []           # "r" is a graph output
    del graph.output[1]
    assert [g.tensors for g in find_groups(helper.make_model(graph))] == [["a", "r"]]
    graph.node[2].input[1] = "w"                                 # a weight shared by two
    assert find_groups(helper.make_model(graph)) == []
    graph.node[2].input[1] = "w2"
    graph.node[1].op_type = "Sigmoid"                            # no positive homogeneity
    assert find_groups(helper.make_model(graph)) == []


def test_group_scales_closed_form():
    r = np.array([1.0, 4.0, 0.0, 16.0])
    w = np.array([1.0, 1.0, 1.0, 4.0])
    s = group_scales(r, w, 1.0)
    assert s[2] == 1.0                                           # a dead channel stays put
    live = [0, 1, 3]
    np.testing.assert_allclose(r[live] * s[live], (r[live] * s[live])[0], rtol=1e-6)
    assert np.exp(np.log(s[live]).mean()) == pytest.approx(1.0, rel=1e-6)
    half = group_scales(r, w, 0.5)     # activation / weight range: the same on every channel
    ratio = (r * half)[live] / (w / half)[live]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    wide = group_scales(np.array([1e-6, 1.0]), np.ones(2), 1.0)
    assert wide.max() / wide.min() == pytest.approx(MAX_SCALE_RATIO, rel=1e-5)
    # per output channel, each input channel relative to that output channel's largest weight
    np.testing.assert_allclose(reader_ranges(np.array([[[1.0], [2.0]], [[30.0], [3.0]]])),
                               [1.0, 1.0])
    np.testing.assert_allclose(reader_ranges(np.array([[[1.0], [4.0]], [[30.0], [3.0]]])),
                               [1.0, 1.0])
    np.testing.assert_allclose(reader_ranges(np.array([[[1.0], [4.0]], [[30.0], [0.0]]])),
                               [1.0, 1.0])
    np.testing.assert_allclose(reader_ranges(np.array([[[4.0], [1.0]], [[30.0], [3.0]]])),
                               [1.0, 0.25])
    with pytest.raises(ValueError, match="alpha"):
        equalize(onnx.ModelProto(), np.zeros((1, 1, 2, 2), np.float32), 1.5)


def test_equalized_model_computes_the_same_logits_with_equal_channel_ranges(tmp_path):
    model = _student_onnx(tmp_path / "s.onnx")
    calib, test = _tiles(256, 0), _tiles(128, 1)
    eq, record = equalize(model, calib, alpha=1.0)
    onnx.save(eq, str(tmp_path / "eq.onnx"))
    before = logits(tmp_path / "s.onnx", test, "tiles")
    after = logits(tmp_path / "eq.onnx", test, "tiles")
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    assert len(record) == 6
    assert all(r["range_spread_before"] > 1.5 for r in record)
    assert all(r["range_spread_after"] == pytest.approx(1.0, abs=0.01) for r in record)
    weights = {i.name for i in model.graph.initializer}
    changed = {i.name for i in eq.graph.initializer if not np.array_equal(
        numpy_helper.to_array(i), numpy_helper.to_array(
            next(j for j in model.graph.initializer if j.name == i.name)))}
    assert changed and changed <= weights


def test_equalized_variants_in_the_full_grid_quantize(tmp_path):
    logging.getLogger().setLevel(logging.ERROR)
    _student_onnx(tmp_path / "s.onnx")
    names = [v.name for v in variant_grid(True)]
    assert "qdq-u8-pc-percentile-stemfp-headfp-eq50" in names
    assert not any("-eq" in v.name for v in variant_grid(False))
    variant = QuantVariant("qdq", "u8", True, "minmax", stem_float=True, head_float=True,
                           equalize=1.0)
    calib, test = _tiles(128, 2), _tiles(128, 3)
    out = quantize_model(tmp_path / "s.onnx", tmp_path / "q.onnx", variant, calib, "tiles")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx", "s.onnx"]  # no leftovers
    ref = logits(tmp_path / "s.onnx", test, "tiles")
    got = logits(out, test, "tiles")
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
