"""edge.trt_qdq reads op types from ONNX bytes without the onnx package; checked here against
models built (and counted) with onnx."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_graphs import tiles_to_logits_model
from tiny_model import tiny_model_bytes

from edge.trt_qdq import default_precision, has_qdq_nodes, op_type_counts


def qdq_model_bytes(channels: int = 1, tile_pixels: int = 32, n_classes: int = 4,
                    quantize_input: bool = True, seed: int = 0) -> bytes:
    """An explicitly quantized (Q/DQ) tiny classifier: symmetric INT8 activations and
    weights (zero points 0, as TensorRT requires) around a Conv, then a float head."""
    rng = np.random.default_rng(seed)
    conv_w = rng.normal(0, 0.5, (4, channels, 3, 3)).astype(np.float32)
    fc_w = rng.normal(0, 1.0, (n_classes, 4)).astype(np.float32)
    inits = [
        numpy_helper.from_array(conv_w, "conv_w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "conv_b"),
        numpy_helper.from_array(fc_w, "fc_w"),
        numpy_helper.from_array(np.zeros(n_classes, np.float32), "fc_b"),
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(float(np.abs(conv_w).max() / 127), np.float32),
                                "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zero"),
    ]
    nodes = []
    x = "tiles"
    if quantize_input:
        nodes += [helper.make_node("QuantizeLinear", ["tiles", "x_scale", "zero"], ["x_q"]),
                  helper.make_node("DequantizeLinear", ["x_q", "x_scale", "zero"], ["x_dq"])]
        x = "x_dq"
    nodes += [
        helper.make_node("QuantizeLinear", ["conv_w", "w_scale", "zero"], ["w_q"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "zero"], ["w_dq"]),
        helper.make_node("Conv", [x, "w_dq", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    return tiles_to_logits_model(nodes, inits, "tiny_qdq", channels, tile_pixels, n_classes)


def onnx_counts(model_bytes):
    return Counter(n.op_type for n in onnx.load_from_string(model_bytes).graph.node)


def test_plain_model_has_no_qdq():
    model = tiny_model_bytes()
    assert op_type_counts(model) == onnx_counts(model)
    assert op_type_counts(model)["Conv"] == 1
    assert not has_qdq_nodes(model)
    assert default_precision(model) == "fp16"


def test_qdq_model_is_detected():
    model = qdq_model_bytes()
    counts = op_type_counts(model)
    assert counts == onnx_counts(model)
    assert counts["QuantizeLinear"] == 2 and counts["DequantizeLinear"] == 2
    assert has_qdq_nodes(model)
    assert default_precision(model) == "int8"


def test_weight_only_dequantize_is_not_explicit_int8():
    proto = onnx.load_from_string(qdq_model_bytes(quantize_input=False))
    nodes = [n for n in proto.graph.node if n.op_type != "QuantizeLinear"]
    for n in nodes:  # feed the int8 weights straight into DequantizeLinear
        n.input[:] = ["conv_w_int8" if i == "w_q" else i for i in n.input]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    proto.graph.initializer.append(
        numpy_helper.from_array(np.ones((4, 1, 3, 3), np.int8), "conv_w_int8"))
    onnx.checker.check_model(proto)
    model = proto.SerializeToString()
    assert op_type_counts(model)["DequantizeLinear"] == 1
    assert not has_qdq_nodes(model)


def test_node_names_and_doc_strings_do_not_count():
    proto = onnx.load_from_string(tiny_model_bytes())
    proto.graph.node[1].name = "QuantizeLinear"
    proto.graph.node[2].doc_string = "DequantizeLinear"
    proto.producer_name = "QuantizeLinear"
    model = proto.SerializeToString()
    assert not has_qdq_nodes(model)
    assert op_type_counts(model) == onnx_counts(model)


@pytest.mark.parametrize("data", [b"", b"this is not an onnx model", b"\x08\x08",
                                  b"\x3a\xff\xff\xff\xff\x0f"])
def test_non_models_raise_value_error(data):
    with pytest.raises(ValueError):
        op_type_counts(data)
    assert default_precision(data) == "fp16"


def test_truncated_model_raises_value_error():
    model = qdq_model_bytes()
    with pytest.raises(ValueError):
        op_type_counts(model[: len(model) // 2])
