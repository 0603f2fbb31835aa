"""Channel equalization of a float ONNX model before INT8 quantization.

ONNX Runtime quantizes weights per output channel but activations per tensor: one uint8 grid
serves every channel of a tensor, so a channel whose values span 1/10 of the tensor's range
uses 1/10 of the grid. Since ReLU, Add and average pooling commute with a positive
per-channel scale, channel ``c`` of the tensors between the convolutions that produce them
and the convolutions (or Gemm) that read them can be multiplied by ``s_c``, the producers'
output channel ``c`` (weights and bias) by ``s_c`` and the readers' input channel ``c`` by
``1 / s_c``. The float function is unchanged (to float rounding), so the gate's float
reference is the same model; only what the 8-bit grids see moves.

``s_c = w_c ** (1 - alpha) / r_c ** alpha``, with ``r_c`` the channel's largest |value| over
the group's tensors on calibration tiles and ``w_c`` the readers' largest |weight| on input
channel ``c``. ``alpha = 1`` gives every channel the same activation range; ``alpha = 0.5``
gives channel ``c`` the same range in the activations and in the readers' weights
(cross-layer equalization, Nagel et al. 2019, applied to activation ranges as SmoothQuant
does). The producers' weights are quantized per output channel, so their scaling is free.

A *group* is a connected set of tensors joined by Relu, Add, GlobalAveragePool and Flatten
(of a (N, C, 1, 1) tensor). It is equalized only when every tensor in it is made by a
Conv or one of those operators and read only by them, a Conv (group 1) or a Gemm (``transB``
= 1), and the Convs' and Gemms' weights and biases are initializers of their own; anything
else (a graph input or output, another operator, a shared weight) leaves the group alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

#: Operators through which a per-channel positive scale passes unchanged.
PASS_THROUGH = ("Relu", "Add", "GlobalAveragePool", "Flatten")
#: Largest factor between two channels' scales: a nearly dead channel is not blown up.
MAX_SCALE_RATIO = 100.0


@dataclass
class Group:
    """Tensors scaled together: ``producers`` (Conv nodes whose output channels scale by s),
    ``readers`` (Conv and Gemm nodes whose input channels scale by 1 / s)."""

    tensors: list[str] = field(default_factory=list)
    producers: list[onnx.NodeProto] = field(default_factory=list)
    readers: list[onnx.NodeProto] = field(default_factory=list)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(onnx.helper.get_attribute_value(a))
    return default


def find_groups(model: onnx.ModelProto) -> list[Group]:
    """The equalizable groups of ``model``'s graph, in graph order."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    inits = {i.name for i in graph.initializer}

    def own_weights(node: onnx.NodeProto, count: int) -> bool:
        """Whether the node's weight (and bias) are initializers that no other input uses."""
        names = [i for i in node.input[1:1 + count] if i]
        return all(i in inits and len(readers[i]) == 1 for i in names)

    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    joined = set()
    for n in graph.node:
        flat_pool = (n.op_type == "Flatten" and n.input[0] in producer
                     and producer[n.input[0]].op_type == "GlobalAveragePool")
        if n.op_type in PASS_THROUGH and (n.op_type != "Flatten" or flat_pool):
            joined.add(n.name)
            ins = n.input if n.op_type == "Add" else n.input[:1]
            for t in (*ins, *n.output):
                parent[root(t)] = root(n.output[0])
    members: dict[str, list[str]] = {}
    for t in list(parent):
        members.setdefault(root(t), []).append(t)
    order = {t: k for k, n in enumerate(graph.node) for t in n.output}
    groups = []
    for tensors in members.values():
        group, ok = Group(sorted(tensors, key=lambda t: order.get(t, -1))), True
        for t in group.tensors:
            made_by = producer.get(t)
            if t in outputs or made_by is None:
                ok = False
            elif (made_by.op_type == "Conv" and _attr(made_by, "group", 1) == 1
                  and own_weights(made_by, 2)):
                group.producers.append(made_by)
            elif made_by.name not in joined:
                ok = False
            for r in readers.get(t, []):
                if r.name in joined:
                    continue
                if r.input[0] != t or not own_weights(r, 1) or not (
                        (r.op_type == "Conv" and _attr(r, "group", 1) == 1)
                        or (r.op_type == "Gemm" and _attr(r, "transB", 0) == 1)):
                    ok = False
                elif r not in group.readers:
                    group.readers.append(r)
        if ok and group.producers and group.readers:
            groups.append(group)
    return sorted(groups, key=lambda g: order[g.tensors[0]])


def channel_ranges(model: onnx.ModelProto, tensors: list[str], tiles: np.ndarray,
                   batch: int = 1024) -> dict[str, np.ndarray]:
    """Per tensor, each channel's largest |value| (C,) over ``tiles`` (N, C, S, S) run through
    ``model`` with ONNX Runtime (graph optimisation off, so every tensor exists)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    name = model.graph.input[0].name
    ranges: dict[str, np.ndarray] = {}
    for i in range(0, len(tiles), batch):
        for t, value in zip(tensors, sess.run(None, {name: tiles[i:i + batch]}), strict=True):
            axes = tuple(a for a in range(value.ndim) if a != 1)
            top = np.abs(value).max(axis=axes)
            ranges[t] = top if t not in ranges else np.maximum(ranges[t], top)
    return ranges


def reader_ranges(weight: np.ndarray) -> np.ndarray:
    """Per input channel c (C,), the largest |W[o, c]| relative to its output channel o's
    largest |W[o, :]|, for a reader's weight (O, C, ...): what per-output-channel quantization
    sees, whatever scale each output channel has."""
    w = np.abs(weight).reshape(weight.shape[0], weight.shape[1], -1).max(axis=2)
    rows = w.max(axis=1, keepdims=True)
    return (w / np.where(rows > 0, rows, 1)).max(axis=0)


def group_scales(act_range: np.ndarray, weight_range: np.ndarray, alpha: float) -> np.ndarray:
    """Scales s (C,) from the group's channel ranges ``act_range`` (C,) and its readers'
    input-channel weight ranges ``weight_range`` (C,): ``w ** (1 - alpha) / r ** alpha``,
    at most :data:`MAX_SCALE_RATIO` times the smallest, normalised to geometric mean 1.
    A channel that is zero throughout (r or w = 0) keeps s = 1."""
    live = (act_range > 0) & (weight_range > 0)
    s = np.ones_like(act_range, dtype=np.float64)
    if not live.any():
        return s.astype(np.float32)
    s[live] = (weight_range[live].astype(np.float64) ** (1 - alpha)
               / act_range[live].astype(np.float64) ** alpha)
    s[live] = np.minimum(s[live], s[live].min() * MAX_SCALE_RATIO)  # nearly dead channels
    s[live] /= np.exp(np.log(s[live]).mean())
    return s.astype(np.float32)


def equalize(model: onnx.ModelProto, tiles: np.ndarray, alpha: float = 0.5
             ) -> tuple[onnx.ModelProto, list[dict[str, Any]]]:
    """An equalized copy of ``model`` (same float function) and, per group, its tensors and
    the spread of its channel ranges before and after (largest / median)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    groups = find_groups(out)
    if not groups:
        return out, []
    ranges = channel_ranges(out, [t for g in groups for t in g.tensors], tiles)
    weights = {name: numpy_helper.to_array(init) for name, init in inits.items()}
    record = []
    for g in groups:
        act = np.max([ranges[t] for t in g.tensors], axis=0)
        w = np.max([reader_ranges(weights[r.input[1]]) for r in g.readers], axis=0)
        s = group_scales(act, w, alpha)
        for p in g.producers:
            shape = (-1,) + (1,) * (weights[p.input[1]].ndim - 1)
            weights[p.input[1]] = weights[p.input[1]] * s.reshape(shape)
            if len(p.input) > 2 and p.input[2]:
                weights[p.input[2]] = weights[p.input[2]] * s
        for r in g.readers:
            shape = (1, -1) + (1,) * (weights[r.input[1]].ndim - 2)
            weights[r.input[1]] = weights[r.input[1]] / s.reshape(shape)
        live = act > 0
        record.append({"tensors": g.tensors, "producers": [p.name for p in g.producers],
                       "readers": [r.name for r in g.readers],
                       "range_spread_before": round(float(act.max() / np.median(act[live])), 2)
                       if live.any() else None,
                       "range_spread_after": round(float((act * s).max()
                                                         / np.median((act * s)[live])), 2)
                       if live.any() else None})
    for name, init in inits.items():
        if name in weights:
            init.CopyFrom(numpy_helper.from_array(weights[name].astype(np.float32), name))
    return out, record


def equalize_file(float_path: Path, out_path: Path, tiles: np.ndarray, alpha: float
                  ) -> list[dict[str, Any]]:
    """:func:`equalize` the ONNX file ``float_path`` into ``out_path``; returns its record."""
    model, record = equalize(onnx.load(str(float_path)), tiles, alpha)
    onnx.save(model, str(out_path))
    return record
