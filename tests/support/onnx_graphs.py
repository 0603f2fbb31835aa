"""Tiny hand-built ONNX classifiers for tests: the shared tail that turns nodes and
initializers into a checked, serialised tiles -> logits model (test helper)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiles_to_logits_model(nodes: list, initializers: list, name: str, channels: int,
                          tile_pixels: int, n_classes: int) -> bytes:
    """A model with input ``tiles`` (N, C, S, S) float and output ``logits`` (N, K) float,
    opset 17, IR 8, checked by onnx.checker; returns its bytes."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("tiles", TensorProto.FLOAT,
                                       ["N", channels, tile_pixels, tile_pixels])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


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
