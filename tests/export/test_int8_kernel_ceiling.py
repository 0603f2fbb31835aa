"""scripts/int8_kernel_ceiling.py: its kernel shapes, and that the fp32 and int8 models it
times compute the same product (so the timing compares like with like)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from script_loader import load_script

from export.quantize import cpu_session
from export.student import count_onnx_graph

ceiling = load_script("int8_kernel_ceiling")
SHIPPED = Path(__file__).resolve().parents[2] / "edge" / "models" / "terrain-fp32" / "model.onnx"


def _initializers(model: bytes) -> dict[str, np.ndarray]:
    graph = onnx.load_from_string(model).graph
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    return cpu_session(model, 1).run(None, {"x": x})[0]


def test_conv_shape_arithmetic():
    s = ceiling.Shape("conv", batch=2, cin=16, cout=32, hw=16, kernel=3, stride=2)
    assert s.out_hw == 8
    assert s.macs == 2 * 32 * 8 * 8 * 16 * 9
    assert s.label == "conv 16->32 k3 s2 @16x16"
    one = ceiling.Shape("conv", batch=1, cin=16, cout=32, hw=16, kernel=1, stride=2)
    assert one.out_hw == 8 and one.macs == 32 * 64 * 16
    g = ceiling.Shape("gemm", batch=4, cin=5, cout=6)
    assert g.macs == 120 and g.label == "gemm 4x5x6"


def test_student_shapes_add_up_to_the_graph_count():
    shapes = ceiling.student_conv_shapes(SHIPPED, batch=1)
    assert [s.kernel for s in shapes].count(1) == 2  # the two 1x1 skip convolutions
    conv_macs = count_onnx_graph(SHIPPED.read_bytes())["per_op"]["Conv"]
    assert sum(s.macs for s in shapes) == conv_macs


def test_grouped_convolution_is_refused(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=4, pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    path = tmp_path / "grouped.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ValueError, match="grouped"):
        ceiling.student_conv_shapes(path)


def test_int8_conv_computes_the_float_conv_within_one_output_step():
    shape = ceiling.Shape("conv", batch=2, cin=4, cout=8, hw=6, kernel=3, stride=2)
    fp32, int8 = ceiling.kernel_models(shape, seed=3)
    rng = np.random.default_rng(0)
    # Inputs under 128: on CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add products in
    # saturating 16-bit pairs (VPMADDUBSW), which full-range inputs and weights can overflow
    # (docs/export.md, "Uint8 weights"); the speed does not depend on the values.
    xq = rng.integers(0, 128, (2, 4, 6, 6), dtype=np.uint8)
    # Float reference on the int8 model's own grids: dequantized input and weights.
    inits = _initializers(int8)
    x = xq.astype(np.float32) * inits["xs"]
    w_deq = inits["w"].astype(np.float32) * inits["ws"][:, None, None, None]
    float_model = onnx.load_from_string(fp32)
    float_model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w_deq, "w"))
    want = _run(float_model.SerializeToString(), x)
    got = _run(int8, xq).astype(np.float32) * inits["ys"]
    clipped = np.clip(want, 0, 255 * inits["ys"])
    assert got.shape == want.shape == (2, 8, 3, 3)
    assert np.abs(got - clipped).max() <= inits["ys"] * 0.5 + 1e-5
    assert (want > 0.5).any() and (want < 0).any()  # the check covers both output signs


def test_int8_gemm_is_the_exact_integer_product():
    shape = ceiling.Shape("gemm", batch=3, cin=5, cout=7)
    _, int8 = ceiling.kernel_models(shape)
    inits = _initializers(int8)
    x = np.random.default_rng(1).integers(0, 128, (3, 5), dtype=np.uint8)
    want = (x.astype(np.int64) - 128) @ inits["w"].astype(np.int64)
    np.testing.assert_array_equal(_run(int8, x), want)


def test_measure_reports_both_sides():
    row = ceiling.measure(ceiling.Shape("gemm", batch=8, cin=16, cout=8), threads=1,
                          rounds=2, repeats=2)
    assert row["fp32_ms"] > 0 and row["int8_ms"] > 0
    assert row["speedup_min"] <= row["int8_speedup"] <= row["speedup_max"]
    assert "| gemm 8x16x8 | 1 |" in ceiling.markdown([row])


def test_measure_bundles_times_the_shipped_pair():
    models = SHIPPED.parents[1]
    row = ceiling.measure_bundles(models / "terrain-fp32", models / "terrain", threads=1,
                                  rounds=1, repeats=1, batch=2)
    assert row["kind"] == "model" and row["shape"] == "model terrain-fp32 vs terrain, 2 tiles"
    assert row["macs"] == 2 * count_onnx_graph(SHIPPED.read_bytes())["macs"]
    assert row["fp32_ms"] > 0 and row["int8_ms"] > 0


def test_each_timed_turn_starts_with_untimed_settling_runs():
    class Session:
        def __init__(self):
            self.runs = 0

        def get_inputs(self):
            return [type("Input", (), {"name": "x"})()]

        def run(self, _outputs, _feed):
            self.runs += 1

    s = Session()
    assert ceiling._median_ms(s, np.zeros(1, np.float32), 4) >= 0
    assert s.runs == ceiling.SETTLE_RUNS + 4 and ceiling.SETTLE_RUNS >= 1
