"""Builders for the simulator tests: a tiny ONNX bundle and a folder of tiny frames.

The model is built here with onnx.helper (no torch): Conv -> Relu ->
GlobalAveragePool -> Flatten -> Gemm, input "tiles" [N, 1, 32, 32], output
"logits" [N, 4].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundle import Manifest
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec

CLASSES = ["soil", "bedrock", "sand", "big rock"]
GOOD_FRAMES = 4


def tiny_onnx_bytes(seed: int = 0) -> bytes:
    """Serialized ONNX model mapping tiles (N, 1, 32, 32) to logits (N, 4)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 4)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["tiles", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sim",
        [helper.make_tensor_value_info("tiles", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_manifest() -> Manifest:
    """Manifest for the tiny model: grey 32 px tiles on a 64 px wide reference grid."""
    return Manifest(
        name="tiny-sim",
        classes=list(CLASSES),
        input=InputSpec(tile_pixels=32, channels=1, mean=(0.5,), std=(0.25,)),
        tiling=TilingSpec(reference_width=64, tile=32, stride=32),
        precision="fp32",
        sha256="",
        provenance={"made_by": "tests/firmware_sim/conftest.py"},
    )


def write_frames(folder: Path, count: int = GOOD_FRAMES, corrupt: bool = False) -> Path:
    """``count`` random 64x48 grey PNG frames (and one corrupt file if asked) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        image = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"f{i:03d}.png"), image)
    if corrupt:
        (folder / "f001_corrupt.png").write_bytes(b"this is not a png")
    return folder
