"""Which operators an ONNX model's main graph uses, read from the protobuf wire format.

TensorRT's INT8 here is explicit quantization only: the ONNX model must carry
QuantizeLinear/DequantizeLinear (Q/DQ) nodes. ``edge/`` never imports the ``onnx`` package
(it is not a runtime dependency, and the architecture test forbids it), so this module walks
the few protobuf fields it needs: ``ModelProto.graph`` (field 7), ``GraphProto.node``
(field 1) and ``NodeProto.op_type`` (field 4). Nodes inside sub-graphs (If/Loop bodies) and
model-local functions are not counted. The tests check it against models built with ``onnx``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

MODEL_GRAPH = 7
GRAPH_NODE = 1
NODE_OP_TYPE = 4
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf (varint runs past the end)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed protobuf (varint longer than 10 bytes)")


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """``(field number, payload)`` of each field of one message; payload is the bytes of a
    length-delimited field, None for the other wire types (skipped)."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            payload = None
        elif wire == 1:
            pos += 8
            payload = None
        elif wire == 2:
            size, pos = _varint(buf, pos)
            payload = buf[pos:pos + size]
            pos += size
        elif wire == 5:
            pos += 4
            payload = None
        else:
            raise ValueError(f"malformed protobuf (wire type {wire} in field {number})")
        if pos > len(buf) or number == 0:
            raise ValueError("truncated or malformed protobuf")
        yield number, payload


def op_type_counts(model_bytes: bytes) -> Counter:
    """How many nodes of each op type the model's main graph has.

    Raises ValueError when the bytes are not a readable ONNX ModelProto with a graph.
    """
    buf = memoryview(model_bytes)
    graphs = [p for n, p in _fields(buf) if n == MODEL_GRAPH and p is not None]
    if not graphs:
        raise ValueError("not an ONNX model (no graph)")
    counts: Counter = Counter()
    for graph in graphs:
        for number, node in _fields(graph):
            if number != GRAPH_NODE or node is None:
                continue
            for field_number, value in _fields(node):
                if field_number == NODE_OP_TYPE and value is not None:
                    counts[bytes(value).decode("utf-8", errors="replace")] += 1
    return counts


def has_qdq_nodes(model_bytes: bytes) -> bool:
    """Whether the main graph holds both QuantizeLinear and DequantizeLinear nodes (explicit
    quantization). Raises ValueError for bytes that are not an ONNX model."""
    counts = op_type_counts(model_bytes)
    return all(counts[op] > 0 for op in QDQ_OPS)


def int8_source_problem(model_bytes: bytes, precision: str) -> str | None:
    """Why an engine of ``precision`` cannot be built from this model, or None: INT8 here is
    explicit quantization only, so an ``int8`` engine needs Q/DQ nodes (bytes that cannot be
    read are let through: the ONNX parser will say what is wrong with them)."""
    if precision != "int8":
        return None
    try:
        quantized = has_qdq_nodes(model_bytes)
    except ValueError:
        return None
    if quantized:
        return None
    return ("the model has no QuantizeLinear/DequantizeLinear nodes: INT8 here is explicit "
            "quantization only (no calibration); export a Q/DQ model or use --precision fp16 "
            "(or $EDGE_TRT_PRECISION=fp16)")


def default_precision(model_bytes: bytes) -> str:
    """``int8`` for an explicitly quantized (Q/DQ) model, else ``fp16``."""
    try:
        return "int8" if has_qdq_nodes(model_bytes) else "fp16"
    except ValueError:
        return "fp16"
