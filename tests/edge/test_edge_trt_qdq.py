"""edge.trt_qdq reads op types from ONNX bytes without the onnx package; checked here against
models built (and counted) with onnx."""

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx_graphs import qdq_model_bytes
from tiny_model import tiny_model_bytes

from edge.trt_qdq import default_precision, has_qdq_nodes, op_type_counts


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
