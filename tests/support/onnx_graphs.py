"""Tiny hand-built ONNX classifiers for tests: the shared tail that turns nodes and
initializers into a checked, serialised tiles -> logits model (test helper)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


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
