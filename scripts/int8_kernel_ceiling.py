"""How much faster can ONNX Runtime's INT8 kernels be than its FP32 ones on this CPU?

Issue 4 asks the INT8 student to run at 2x the float student. This script measures the
ceiling that the CPU's kernels put on that ratio, without the rest of the model or the
pipeline: for each convolution of the shipped terrain student (batch 64, its shapes read
from ``edge/models/terrain-fp32/model.onnx``) and for large matrix products, one-node ONNX
models are timed in the two precisions:

- ``conv`` shapes: ``Conv`` (float in, float out) against ``QLinearConv`` (uint8 in, int8
  per-channel weights, uint8 out: the fused kernel a QDQ model's convolution becomes, with
  no quantize or dequantize around it);
- ``gemm`` shapes: ``MatMul`` (float) against ``MatMulInteger`` (uint8 x int8 -> int32,
  the bare integer product);
- ``model``: the shipped bundles' whole models, ``terrain-fp32`` against ``terrain`` (its
  INT8 QDQ model), on random 64-tile batches, as a reference in the same run.

A one-node model pays for its own layout changes (ONNX Runtime reorders a convolution's
input to a blocked layout and back), which a whole model pays once; the conv rows are
therefore slower than the same layers inside the model, and their sum is not the model's
time. The ``gemm`` rows are compute-bound and give each precision's peak rate on this CPU.

Both sides of a pair run in the same rounds, the order alternating, so a slow spell of a
shared machine slows both; the reported ratio is the median of per-round ratios. Prints
one JSON line per shape and thread count, then a Markdown table. Usage:

    python scripts/int8_kernel_ceiling.py --threads 1,2 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edge.cpu_info import cpu_info
from export.quantize import cpu_session
from export.student import count_onnx_graph

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge" / "models"
STUDENT = MODELS / "terrain-fp32" / "model.onnx"


@dataclass(frozen=True)
class Shape:
    """One kernel shape. ``conv``: input (batch, cin, hw, hw), weights (cout, cin, k, k),
    square stride ``stride``, padding k // 2. ``gemm``: (m, k) x (k, n) with m = batch,
    k = cin, n = cout (hw, kernel and stride unused)."""

    kind: str  # "conv" or "gemm"
    batch: int
    cin: int
    cout: int
    hw: int = 1
    kernel: int = 1
    stride: int = 1

    @property
    def out_hw(self) -> int:
        """Output height and width of a conv shape."""
        pad = self.kernel // 2
        return (self.hw + 2 * pad - self.kernel) // self.stride + 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one run."""
        if self.kind == "gemm":
            return self.batch * self.cin * self.cout
        return self.batch * self.cout * self.out_hw ** 2 * self.cin * self.kernel ** 2

    @property
    def label(self) -> str:
        """``conv 16->32 k3 s2 @16x16`` or ``gemm 4096x576x64``."""
        if self.kind == "gemm":
            return f"gemm {self.batch}x{self.cin}x{self.cout}"
        return f"conv {self.cin}->{self.cout} k{self.kernel} s{self.stride} @{self.hw}x{self.hw}"


def student_conv_shapes(path: Path = STUDENT, batch: int = 64) -> list[Shape]:
    """The convolutions of an fp32 bundle model, in graph order, at ``batch`` tiles."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.value_info) + list(model.graph.input)}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    shapes = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("group", 1) != 1:
            raise ValueError(f"{path}: grouped convolution {node.name} is not measured here")
        cout, cin, k, _ = weights[node.input[1]]
        hw = dims[node.input[0]][2]
        shapes.append(Shape("conv", batch, cin, cout, hw, k, attrs.get("strides", [1, 1])[0]))
    return shapes


def _model(nodes: list, inputs: list, outputs: list, inits: list) -> bytes:
    graph = helper.make_graph(nodes, "kernel", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def kernel_models(shape: Shape, seed: int = 0) -> tuple[bytes, bytes]:
    """``(fp32 model, int8 model)`` bytes of one shape, each with one input ``x`` and one
    output ``y``; random weights (the speed of these kernels does not depend on values)."""
    rng = np.random.default_rng(seed)
    f, u8 = TensorProto.FLOAT, TensorProto.UINT8
    if shape.kind == "gemm":
        w = rng.standard_normal((shape.cin, shape.cout)).astype(np.float32)
        x_dims, y_dims = [shape.batch, shape.cin], [shape.batch, shape.cout]
        fp32 = _model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [helper.make_tensor_value_info("x", f, x_dims)],
                      [helper.make_tensor_value_info("y", f, y_dims)],
                      [numpy_helper.from_array(w, "w")])
        wq = rng.integers(-127, 128, w.shape, dtype=np.int8)
        int8 = _model([helper.make_node("MatMulInteger", ["x", "w", "xz"], ["y"])],
                      [helper.make_tensor_value_info("x", u8, x_dims)],
                      [helper.make_tensor_value_info("y", TensorProto.INT32, y_dims)],
                      [numpy_helper.from_array(wq, "w"),
                       numpy_helper.from_array(np.array(128, np.uint8), "xz")])
        return fp32, int8
    k, pad = shape.kernel, shape.kernel // 2
    conv_attrs = {"kernel_shape": [k, k], "strides": [shape.stride] * 2, "pads": [pad] * 4}
    x_dims = [shape.batch, shape.cin, shape.hw, shape.hw]
    y_dims = [shape.batch, shape.cout, shape.out_hw, shape.out_hw]
    w = (rng.standard_normal((shape.cout, shape.cin, k, k)) * 0.1).astype(np.float32)
    b = np.zeros(shape.cout, np.float32)
    fp32 = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **conv_attrs)],
                  [helper.make_tensor_value_info("x", f, x_dims)],
                  [helper.make_tensor_value_info("y", f, y_dims)],
                  [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    w_scale = (np.abs(w).reshape(shape.cout, -1).max(axis=1) / 127).astype(np.float32)
    wq = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.uint8), "xz"),
        numpy_helper.from_array(wq, "w"),
        numpy_helper.from_array(w_scale, "ws"),
        numpy_helper.from_array(np.zeros(shape.cout, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "ys"),
        numpy_helper.from_array(np.array(0, np.uint8), "yz"),
        numpy_helper.from_array(np.zeros(shape.cout, np.int32), "b"),
    ]
    int8 = _model([helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys",
                                                    "yz", "b"], ["y"], **conv_attrs)],
                  [helper.make_tensor_value_info("x", u8, x_dims)],
                  [helper.make_tensor_value_info("y", u8, y_dims)], inits)
    return fp32, int8


def _input(sess: ort.InferenceSession, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Random input of the session's first input; a symbolic dimension becomes ``batch``."""
    meta = sess.get_inputs()[0]
    dims = [d if isinstance(d, int) else batch for d in meta.shape]
    if meta.type == "tensor(uint8)":
        return rng.integers(0, 256, dims, dtype=np.uint8)
    return rng.standard_normal(dims).astype(np.float32)


#: Untimed runs before each timed turn: the session timed before leaves its thread pool
#: spin-waiting, which took the second core from the next one at 2 threads (as in
#: ``edge.bench.SETTLE_FRAMES``); without them a 2-thread INT8 convolution timed slower
#: than at 1 thread.
SETTLE_RUNS = 3


def _median_ms(sess: ort.InferenceSession, x: np.ndarray, repeats: int) -> float:
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(SETTLE_RUNS):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure_pair(label: str, kind: str, macs: int, fp32_model: bytes, int8_model: bytes,
                 threads: int, rounds: int, repeats: int, batch: int = 64) -> dict:
    """Time two models side by side: ``rounds`` rounds, each the median of ``repeats`` runs
    of either model after :data:`SETTLE_RUNS` untimed ones, the order alternating between
    rounds. Returns medians over rounds (ms,
    GMAC/s for ``macs`` per run) and the median per-round ratio fp32 / int8."""
    rng = np.random.default_rng(1)
    sessions = {"fp32": cpu_session(fp32_model, threads),
                "int8": cpu_session(int8_model, threads)}
    inputs = {name: _input(s, batch, rng) for name, s in sessions.items()}
    for name, s in sessions.items():  # warm-up: first-run allocations and weight packing
        _median_ms(s, inputs[name], 3)
    per_round: dict[str, list[float]] = {"fp32": [], "int8": []}
    for r in range(rounds):
        for name in (("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")):
            per_round[name].append(_median_ms(sessions[name], inputs[name], repeats))
    ms = {name: statistics.median(v) for name, v in per_round.items()}
    ratios = [a / b for a, b in zip(per_round["fp32"], per_round["int8"], strict=True)]
    return {"shape": label, "kind": kind, "macs": macs, "threads": threads,
            "fp32_ms": round(ms["fp32"], 4), "int8_ms": round(ms["int8"], 4),
            "fp32_gmacs": round(macs / ms["fp32"] / 1e6, 1),
            "int8_gmacs": round(macs / ms["int8"] / 1e6, 1),
            "int8_speedup": round(statistics.median(ratios), 3),
            "speedup_min": round(min(ratios), 3), "speedup_max": round(max(ratios), 3)}


def measure(shape: Shape, threads: int, rounds: int, repeats: int) -> dict:
    """:func:`measure_pair` on the one-node fp32 and int8 models of ``shape``."""
    fp32_model, int8_model = kernel_models(shape)
    return measure_pair(shape.label, shape.kind, shape.macs, fp32_model, int8_model, threads,
                        rounds, repeats, shape.batch)


def measure_bundles(fp32_dir: Path, int8_dir: Path, threads: int, rounds: int, repeats: int,
                    batch: int = 64) -> dict:
    """:func:`measure_pair` on two bundles' whole models (``model.onnx``), ``batch`` tiles a
    run; MACs counted from the fp32 graph."""
    fp32_model = (fp32_dir / "model.onnx").read_bytes()
    int8_model = (int8_dir / "model.onnx").read_bytes()
    macs = count_onnx_graph(fp32_model)["macs"] * batch
    label = f"model {fp32_dir.name} vs {int8_dir.name}, {batch} tiles"
    return measure_pair(label, "model", macs, fp32_model, int8_model, threads, rounds, repeats,
                        batch)


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = ["| shape | threads | MMAC | fp32 ms | int8 ms | fp32 GMAC/s | int8 GMAC/s "
             "| int8 speed-up (min-max over rounds) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['threads']} | {r['macs'] / 1e6:.1f} "
                     f"| {r['fp32_ms']:.3f} | {r['int8_ms']:.3f} | {r['fp32_gmacs']} "
                     f"| {r['int8_gmacs']} | {r['int8_speedup']:.2f}x "
                     f"({r['speedup_min']:.2f}-{r['speedup_max']:.2f}) |")
    return "\n".join(lines)


GEMMS = (Shape("gemm", 4096, 576, 64), Shape("gemm", 1024, 1024, 1024))


def main() -> None:
    """Measure every student convolution, the large products and the shipped terrain models
    whole; print JSON lines and a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64, help="tiles per run of a convolution or model")
    args = ap.parse_args()
    print(json.dumps({"onnxruntime": ort.__version__, "student": str(STUDENT.relative_to(REPO)),
                      "cpu": cpu_info().to_json()}))
    shapes = student_conv_shapes(batch=args.batch) + list(GEMMS)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for shape in shapes:
            row = measure(shape, threads, args.rounds, args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
        row = measure_bundles(MODELS / "terrain-fp32", MODELS / "terrain", threads,
                              args.rounds, args.repeats, args.batch)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(markdown(rows))


if __name__ == "__main__":
    main()
