"""Tiny ONNX models and bundles for unit tests (no torch needed).

``tiny_model_bytes`` builds Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, mapping
tiles float32 (N, C, S, S) to logits float32 (N, K) with a dynamic batch dimension.
``make_tiny_bundle`` wraps it into a model bundle with :func:`edge.bundle.write_bundle`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.bundle import Bundle, Manifest, write_bundle
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec

CLASSES = ["soil", "bedrock", "sand", "big rock"]


def tiny_model_bytes(
    channels: int = 1,
    tile_pixels: int = 32,
    n_classes: int = 4,
    features: int = 4,
    seed: int = 0,
    input_name: str = "tiles",
    output_name: str = "logits",
) -> bytes:
    """Serialized ONNX model: (N, channels, tile_pixels, tile_pixels) -> (N, n_classes)."""
    rng = np.random.default_rng(seed)
    conv_w = rng.normal(0, 0.5, (features, channels, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, (features,)).astype(np.float32)
    fc_w = rng.normal(0, 1.0, (n_classes, features)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, (n_classes,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], [output_name], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_terrain",
        [helper.make_tensor_value_info(
            input_name, TensorProto.FLOAT, ["N", channels, tile_pixels, tile_pixels])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", n_classes])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(fc_w, "fc_w"),
            numpy_helper.from_array(fc_b, "fc_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime of the last few years
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_manifest(
    classes: list[str] | None = None,
    channels: int = 1,
    tile_pixels: int = 32,
    tiling: TilingSpec | None = None,
) -> Manifest:
    """A manifest for a tiny model; ``sha256`` is filled in by ``write_bundle``."""
    return Manifest(
        name="tiny-test",
        classes=list(classes or CLASSES),
        input=InputSpec(
            tile_pixels=tile_pixels,
            channels=channels,
            mean=(0.5,) * channels,
            std=(0.25,) * channels,
        ),
        tiling=tiling or TilingSpec(reference_width=256, tile=32, stride=32),
        precision="fp32",
        sha256="",
        provenance={"data": "synthetic", "config": {}, "made_by": "tests/edge/tiny_model.py"},
        metrics={},
    )


def make_tiny_bundle(
    out_dir: str | Path,
    classes: list[str] | None = None,
    n_outputs: int | None = None,
    channels: int = 1,
    tile_pixels: int = 32,
    tiling: TilingSpec | None = None,
    model_bytes: bytes | None = None,
) -> Bundle:
    """Write a tiny bundle to ``out_dir``. ``n_outputs`` (default: the class count) lets a
    test build a model whose output does not match the manifest's classes."""
    classes = list(classes or CLASSES)
    if model_bytes is None:
        model_bytes = tiny_model_bytes(
            channels=channels,
            tile_pixels=tile_pixels,
            n_classes=n_outputs if n_outputs is not None else len(classes),
        )
    manifest = tiny_manifest(classes, channels, tile_pixels, tiling)
    return write_bundle(out_dir, model_bytes, manifest)
