"""Inference backends behind one small interface, so they can be compared on the same inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edge.bundle import Bundle, BundleError

BACKENDS = ("onnxruntime", "tensorrt")


class Runner(Protocol):
    """Maps a batch of tiles float32 (N, C, S, S) to logits float32 (N, K)."""

    name: str

    def run(self, tiles: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        """Logits for a batch of tiles."""
        ...


class OnnxRuntimeRunner:
    """ONNX Runtime on the CPU with a fixed thread budget."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, input_name: str, output_name: str, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several private exception types
            raise BundleError(f"{model_path}: ONNX Runtime cannot load the model ({exc})") from exc
        names = [i.name for i in self.session.get_inputs()]
        if input_name not in names:
            raise BundleError(f"{model_path}: no input named '{input_name}' (has {names})")
        self.input_name = input_name
        self.output_name = output_name

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Logits float32 (N, K) for tiles float32 (N, C, S, S)."""
        (logits,) = self.session.run([self.output_name], {self.input_name: tiles})
        return logits


def make_runner(bundle: Bundle, backend: str = "onnxruntime", threads: int = 1) -> Runner:
    """The runner for ``backend``, checked against the bundle's class count.

    ``tensorrt`` (TensorRT 10 on an NVIDIA GPU, see docs/jetson.md) imports TensorRT lazily
    and raises a BundleError saying what to install where it is missing; ``threads`` applies
    to ONNX Runtime only.
    """
    if backend not in BACKENDS:
        raise BundleError(
            f"backend '{backend}' is not available (choose from {', '.join(BACKENDS)})"
        )
    m = bundle.manifest
    runner: Runner
    if backend == "tensorrt":
        from edge.trt_runner import TensorRTRunner

        runner = TensorRTRunner(bundle)
    else:
        runner = OnnxRuntimeRunner(bundle.model_path, m.input_name, m.output_name, threads)
    probe = np.zeros((1, m.input.channels, m.input.tile_pixels, m.input.tile_pixels), np.float32)
    try:
        out = runner.run(probe)
    except Exception as exc:
        raise BundleError(
            f"{bundle.model_path}: model fails on a {probe.shape} input ({exc})"
        ) from exc
    if out.ndim != 2 or out.shape[1] != len(m.classes):
        raise BundleError(
            f"{bundle.model_path}: model outputs shape {tuple(out.shape)} but the manifest "
            f"lists {len(m.classes)} classes"
        )
    return runner
