"""The host calibration workload: dense FP32 matrix products through ONNX Runtime.

A profile's speed factor compares this host with a target in one unit, FP32 GFLOP/s:
the host's figure is measured here (an ``N x N`` by ``N x N`` MatMul, ``2 N^3`` floating-point
operations, run by the same ONNX Runtime and thread count the replay uses; the best of
several repetitions, since a shared host only ever slows a run down); the target's is its
documented peak (see ``profiles.json``). ONNX Runtime's GEMM reaches a large, stable share
of a CPU's peak, so the ratio of the two approximates the ratio of peak rates.

The one-node model is written here as raw protobuf bytes, so that calibration needs only
the runtime dependencies (onnxruntime, numpy), not the ``onnx`` package.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge.cpu_info import cpu_name, usable_cpus

DEFAULT_SIZE = 384
DEFAULT_REPEATS = 12
_FLOAT = 1  # onnx.TensorProto.FLOAT


# --------------------------------------------------------------------------- protobuf


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:
    dims = b"".join(_field_bytes(1, _field_varint(1, d)) for d in shape)  # Dimension.dim_value
    tensor_type = _field_varint(1, _FLOAT) + _field_bytes(2, dims)  # elem_type, shape
    return _field_bytes(1, name) + _field_bytes(2, _field_bytes(1, tensor_type))


def matmul_model_bytes(size: int) -> bytes:
    """Serialized ONNX model (IR 8, opset 17): ``C = MatMul(A, B)``, all float32 (size, size)."""
    shape = (size, size)
    node = (_field_bytes(1, "A") + _field_bytes(1, "B") + _field_bytes(2, "C")
            + _field_bytes(3, "matmul") + _field_bytes(4, "MatMul"))
    graph = (_field_bytes(1, node) + _field_bytes(2, "calibration")
             + _field_bytes(11, _value_info("A", shape)) + _field_bytes(11, _value_info("B", shape))
             + _field_bytes(12, _value_info("C", shape)))
    opset = _field_bytes(1, "") + _field_varint(2, 17)
    return (_field_varint(1, 8) + _field_bytes(2, "firmware_sim") + _field_bytes(7, graph)
            + _field_bytes(8, opset))


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class HostCalibration:
    """The host's measured score. gflops: best FP32 GFLOP/s over the repetitions;
    median_gflops: their median; threads: ONNX Runtime intra-op threads; size: N of the
    N x N MatMul; best_ms: time of the best repetition."""

    gflops: float
    median_gflops: float
    threads: int
    size: int
    repeats: int
    best_ms: float
    cpu: str
    workload: str = "ONNX Runtime MatMul, float32, N x N by N x N (2 N^3 FLOP), best of repeats"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


_CACHE: dict[tuple[int, int, int], HostCalibration] = {}


def measure_host(threads: int = 1, size: int = DEFAULT_SIZE,
                 repeats: int = DEFAULT_REPEATS) -> HostCalibration:
    """Run the calibration workload with ``threads`` intra-op threads; cached per process."""
    key = (threads, size, repeats)
    if key in _CACHE:
        return _CACHE[key]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(matmul_model_bytes(size), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"A": rng.standard_normal((size, size), dtype=np.float32),
             "B": rng.standard_normal((size, size), dtype=np.float32)}
    for _ in range(2):
        session.run(None, feeds)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    flop = 2.0 * size**3
    best = min(times)
    result = HostCalibration(
        gflops=round(flop / best / 1e9, 3),
        median_gflops=round(flop / float(np.median(times)) / 1e9, 3),
        threads=max(1, threads), size=size, repeats=max(1, repeats),
        best_ms=round(best * 1e3, 4), cpu=cpu_name(),
    )
    _CACHE[key] = result
    return result


#: CPU cores this process may run on (:func:`edge.cpu_info.usable_cpus`).
host_cpus = usable_cpus
