"""The TensorRT backend: lazy imports, the clear error where TensorRT is missing, and (where
TensorRT 10, cuda-python and a GPU are present) real engines compared with ONNX Runtime.

The tests marked ``needs_tensorrt`` have never run in this repository's workplace, which has
no TensorRT and no GPU; there they skip with the reason.
"""

import ast
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_edge_trt_qdq import qdq_model_bytes
from tiny_model import make_tiny_bundle

import edge
from edge.bundle import BundleError
from edge.runners import BACKENDS, OnnxRuntimeRunner, make_runner
from edge.tiling import TilingSpec
from edge.trt_cache import EngineCache, compare_logits
from edge.trt_runner import import_cudart, tensorrt_status

EDGE_DIR = Path(edge.__file__).parent
HEAVY = {"tensorrt", "cuda", "pycuda"}

_STATUS = tensorrt_status(check_gpu=True)
needs_tensorrt = pytest.mark.skipif(
    _STATUS is not None,
    reason="TensorRT is not installed in this environment"
    if _STATUS is None or _STATUS.startswith("TensorRT is not installed") else str(_STATUS),
)


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail even on a machine that has it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def run_cli(argv):
    """``edge ARGV`` in-process (imported here, so the other tests need no CLI)."""
    from toolkit_cli.main import main

    return main(argv)


def _module_level_imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def _all_imports(path):
    return {n.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
            for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                      [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])}


@pytest.mark.parametrize("name", ["trt_runner.py", "trt_cache.py", "trt_qdq.py", "runners.py"])
def test_trt_modules_import_heavy_dependencies_lazily(name):
    assert not _module_level_imports(EDGE_DIR / name) & HEAVY


@pytest.mark.parametrize("name", ["trt_cache.py", "trt_qdq.py"])
def test_pure_trt_modules_never_import_tensorrt(name):
    assert not _all_imports(EDGE_DIR / name) & HEAVY


def test_tensorrt_is_a_backend():
    assert BACKENDS == ("onnxruntime", "tensorrt")


def test_make_runner_without_tensorrt_says_what_to_install(tiny_bundle, no_tensorrt):
    with pytest.raises(BundleError) as info:
        make_runner(tiny_bundle, backend="tensorrt")
    message = str(info.value)
    assert message.startswith("TensorRT is not installed: install JetPack's python3-libnvinfer")
    assert "--backend onnxruntime" in message


def test_missing_cuda_python_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(BundleError, match="cuda-python is not installed: pip install"):
        import_cudart()


def test_status_names_the_missing_library(no_tensorrt):
    assert tensorrt_status().startswith("TensorRT is not installed")


def test_classify_backend_tensorrt_without_tensorrt_exits_1(tiny_bundle, frames_dir, tmp_path,
                                                            capsys, no_tensorrt):
    out = tmp_path / "out"
    code = run_cli(["classify", str(frames_dir), "--out", str(out), "--model",
                 str(tiny_bundle.path), "--backend", "tensorrt"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: TensorRT is not installed")
    assert "--backend onnxruntime" in err
    assert not (out / "tiles.jsonl").exists() and not (out / "frames.jsonl").exists()


# --------------------------------------------------------------------------- real TensorRT


@pytest.fixture()
def engine_cache(tmp_path, monkeypatch):
    folder = tmp_path / "engines"
    monkeypatch.setenv("EDGE_ENGINE_CACHE", str(folder))
    monkeypatch.delenv("EDGE_TRT_PRECISION", raising=False)
    return folder


def _tiles(bundle, n, seed=0):
    m = bundle.manifest
    shape = (n, m.input.channels, m.input.tile_pixels, m.input.tile_pixels)
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _onnxruntime(bundle, tiles):
    m = bundle.manifest
    return OnnxRuntimeRunner(bundle.model_path, m.input_name, m.output_name).run(tiles)


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trt_engine_matches_onnxruntime(tiny_bundle, engine_cache, precision):
    from edge.trt_runner import TensorRTRunner

    runner = TensorRTRunner(tiny_bundle, precision=precision, max_batch=16)
    try:
        assert runner.source.built and runner.source.path.is_file()
        tiles = _tiles(tiny_bundle, 40)  # 3 chunks of at most 16
        comparison = compare_logits(_onnxruntime(tiny_bundle, tiles), runner.run(tiles),
                                    precision)
        assert comparison.within_tolerance, comparison.summary()
    finally:
        runner.close()
    again = TensorRTRunner(tiny_bundle, precision=precision, max_batch=16)
    assert not again.source.built and again.source.path == runner.source.path
    again.close()


@needs_tensorrt
def test_trt_int8_engine_from_qdq_model(tmp_path, engine_cache):
    from edge.trt_runner import TensorRTRunner

    bundle = make_tiny_bundle(tmp_path / "qdq", model_bytes=qdq_model_bytes())
    runner = TensorRTRunner(bundle, precision="int8", max_batch=64)
    try:
        tiles = _tiles(bundle, 64)
        comparison = compare_logits(_onnxruntime(bundle, tiles), runner.run(tiles), "int8")
        assert comparison.within_tolerance, comparison.summary()
    finally:
        runner.close()


@needs_tensorrt
def test_trt_plan_that_tensorrt_cannot_load_is_rebuilt(tiny_bundle, engine_cache):
    from edge.trt_runner import TensorRTRunner

    first = TensorRTRunner(tiny_bundle, precision="fp32", max_batch=8)
    plan = first.source.path
    first.close()
    # Garbage with a matching sidecar passes the pre-load check; TensorRT must refuse it.
    garbage = b"\x00" * 4096
    plan.write_bytes(garbage)
    sidecar = json.loads(plan.with_suffix(".json").read_text())
    sidecar["plan"].update(bytes=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
    plan.with_suffix(".json").write_text(json.dumps(sidecar))
    messages = []
    second = TensorRTRunner(tiny_bundle, precision="fp32", max_batch=8, warn=messages.append)
    assert second.source.built and "cannot be used" in messages[0]
    second.close()


@needs_tensorrt
def test_trt_make_runner_and_classify_cli(tmp_path, engine_cache, frames_dir):
    bundle = make_tiny_bundle(tmp_path / "b", tiling=TilingSpec(256, 32, 16))  # 225 tiles
    runner = make_runner(bundle, backend="tensorrt")
    assert runner.name == "tensorrt" and runner.run(_tiles(bundle, 300)).shape == (300, 4)
    runner.close()
    assert len(EngineCache(engine_cache).entries()) == 1
    out_trt, out_ort = tmp_path / "trt", tmp_path / "ort"
    assert run_cli(["classify", str(frames_dir), "--out", str(out_trt), "--model", str(bundle.path),
                 "--backend", "tensorrt", "-q"]) == 0
    assert run_cli(["classify", str(frames_dir), "--out", str(out_ort), "--model", str(bundle.path),
                 "-q"]) == 0
    trt_tiles = [json.loads(x) for x in (out_trt / "tiles.jsonl").read_text().splitlines()]
    ort_tiles = [json.loads(x) for x in (out_ort / "tiles.jsonl").read_text().splitlines()]
    assert len(trt_tiles) == len(ort_tiles)
    agree = np.mean([a["class_id"] == b["class_id"] for a, b in zip(trt_tiles, ort_tiles,
                                                                    strict=True)])
    assert agree >= 0.98
    assert len(EngineCache(engine_cache).entries()) == 1  # classify reused the engine
