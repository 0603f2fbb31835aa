"""``edge export tensorrt BUNDLE``: argument checks and the clear exit 1 where TensorRT is
missing (here: always). The engine-building test skips where TensorRT 10, cuda-python and a
GPU are absent; it has never run in this repository's workplace."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_graphs import tiles_to_logits_model

from edge.bundle import Bundle, Manifest, write_bundle
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec
from edge.trt_runner import tensorrt_status
from toolkit_cli.main import main

_STATUS = tensorrt_status(check_gpu=True)
needs_tensorrt = pytest.mark.skipif(
    _STATUS is not None,
    reason="TensorRT is not installed in this environment"
    if _STATUS is None or _STATUS.startswith("TensorRT is not installed") else str(_STATUS),
)


def linear_model_bytes(qdq: bool = False, tile: int = 8, classes: int = 4) -> bytes:
    """Tiles (N, 1, tile, tile) -> Flatten -> Gemm -> logits (N, classes); with ``qdq`` the
    input goes through symmetric INT8 QuantizeLinear/DequantizeLinear first."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (classes, tile * tile))
                                     .astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(classes, np.float32), "b")]
    nodes, x = [], "tiles"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["tiles", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        x = "dq"
    nodes += [helper.make_node("Flatten", [x], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1)]
    return tiles_to_logits_model(nodes, inits, "linear", 1, tile, classes)


def linear_bundle(folder: Path, qdq: bool = False) -> Bundle:
    manifest = Manifest(name="linear-test", classes=["soil", "bedrock", "sand", "big rock"],
                        input=InputSpec(tile_pixels=8, channels=1, mean=(0.5,), std=(0.25,)),
                        tiling=TilingSpec(reference_width=64, tile=8, stride=8),
                        precision="int8" if qdq else "fp32", sha256="",
                        provenance={"made_by": "tests/export/test_export_tensorrt.py"})
    return write_bundle(folder, linear_model_bytes(qdq), manifest)


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory) -> Bundle:
    return linear_bundle(tmp_path_factory.mktemp("trt") / "plain")


@pytest.fixture(scope="module")
def qdq_bundle(tmp_path_factory) -> Bundle:
    return linear_bundle(tmp_path_factory.mktemp("trt") / "qdq", qdq=True)


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail even on a machine that has it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_export_tensorrt_without_tensorrt_exits_1(plain_bundle, tmp_path, capsys, no_tensorrt):
    code = main(["export", "tensorrt", str(plain_bundle.path), "--cache", str(tmp_path / "c")])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: TensorRT is not installed: install JetPack's "
                                   "python3-libnvinfer")
    assert "--backend onnxruntime" in captured.err
    assert captured.out == ""
    assert not (tmp_path / "c").exists()


def test_export_tensorrt_int8_needs_qdq_nodes(plain_bundle, capsys):
    code = main(["export", "tensorrt", str(plain_bundle.path), "--precision", "int8"])
    assert code == 1
    err = capsys.readouterr().err
    assert "has no QuantizeLinear/DequantizeLinear nodes" in err
    assert "--precision fp16" in err


def test_export_tensorrt_int8_from_the_environment_needs_qdq_nodes(plain_bundle, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("EDGE_TRT_PRECISION", "int8")
    code = main(["export", "tensorrt", str(plain_bundle.path)])
    assert code == 1
    assert "has no QuantizeLinear/DequantizeLinear nodes" in capsys.readouterr().err


def test_export_tensorrt_int8_of_a_qdq_bundle_gets_to_tensorrt(qdq_bundle, tmp_path, capsys,
                                                               no_tensorrt):
    code = main(["export", "tensorrt", str(qdq_bundle.path), "--precision", "int8",
                 "--cache", str(tmp_path / "c")])
    assert code == 1
    assert "TensorRT is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expect", [
    (["--precision", "bf16"], "--precision must be one of fp32, fp16, int8"),
    (["--max-batch", "0"], "--max-batch"),
    (["--workspace-mb", "0"], "--workspace-mb"),
])
def test_export_tensorrt_bad_options_exit_1(plain_bundle, capsys, argv, expect):
    assert main(["export", "tensorrt", str(plain_bundle.path), *argv]) == 1
    assert expect in capsys.readouterr().err


def test_export_tensorrt_missing_bundle_exits_1(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["export", "tensorrt", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


def test_export_tensorrt_is_listed_in_help(capsys):
    main(["export", "--help"])
    out = capsys.readouterr().out
    assert "tensorrt" in out and "onnx" in out


@needs_tensorrt
def test_export_tensorrt_builds_then_finds_the_engine(plain_bundle, tmp_path, capsys):
    cache = tmp_path / "engines"
    argv = ["export", "tensorrt", str(plain_bundle.path), "--precision", "fp16",
            "--max-batch", "64", "--cache", str(cache)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    plans = list(cache.glob("*.plan"))
    assert len(plans) == 1 and f"engine {plans[0]}" in out
    assert "built in" in out and "top-1 agreement" in out
    assert plans[0].with_suffix(".json").is_file()
    assert main(argv) == 0
    assert "found in the cache" in capsys.readouterr().out
