"""The distilled student network, and parameter / MAC counts read from an ONNX graph.

Student: a small ResNet whose stem is a stride-2 3x3 convolution (a 32x32 tile becomes a
16x16 map at once), then one basic block per stage at 16, 8 and 4 pixels (widths
``widths``), global average pooling and a linear head. Only plain 3x3 / 1x1 convolutions,
batch norm (folded into the convolutions at export), ReLU and a Gemm: operators that
quantize well per-tensor and per-channel (no depthwise convolutions).

``StudentConfig(folded_bn=True)`` is the same network with every batch norm already folded
into the convolution before it (convolutions with a bias, the batch norms ``nn.Identity``;
:func:`fold_batchnorm` converts a trained student). Quantization-aware fine-tuning
(:mod:`export.qat`) trains that form, so the weights it trains are the ones INT8 quantizes.

Counting (:func:`count_onnx_graph`): onnx shape inference gives every tensor's shape at
batch 1 (where it stops at an ONNX Runtime contrib op of a QOperator graph, one run of the
model on zeros gives the rest); then, per node (QLinearConv and ConvInteger as Conv; QGemm,
QLinearMatMul and MatMulInteger as Gemm / MatMul),
- Conv: MACs = N * C_out * H_out * W_out * (C_in / group) * kH * kW,
- Gemm / MatMul: MACs = M * K * N (the product of the output's size and the shared axis),
and FLOPs = 2 * MACs (one multiply and one add; biases, ReLU, pooling and the element-wise
residual additions are not counted: they are < 1% here). Parameters are the elements of
the float initializers (after export, so folded batch norms count as convolution biases),
and in an INT8 graph the integer weights and biases (not the scales and zero points).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper, shape_inference
from torch import nn

from train.models import BasicBlock


@dataclass(frozen=True)
class StudentConfig:
    """Stride-2 stem of ``widths[0]`` channels, then stage i: ``blocks[i]`` basic blocks of
    ``widths[i]`` channels, stride 2 from the second stage on."""

    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (1, 1, 1)
    stem_stride: int = 2
    folded_bn: bool = False

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError("widths and blocks need one entry per stage")

    @property
    def feature_dim(self) -> int:
        """Dimension of the pooled feature vector."""
        return self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["in_channels"]), tuple(int(w) for w in data["widths"]),
                   tuple(int(b) for b in data["blocks"]), int(data.get("stem_stride", 2)),
                   bool(data.get("folded_bn", False)))


class Student(nn.Module):
    """Tiles (B, C, S, S) -> logits (B, K); :meth:`features` gives (B, feature_dim)."""

    def __init__(self, config: StudentConfig, num_classes: int):
        super().__init__()
        self.config = config
        w0 = config.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w0, 3, config.stem_stride, 1, bias=False),
            nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = w0
        for i, (width, n) in enumerate(zip(config.widths, config.blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(config.feature_dim, num_classes)
        if config.folded_bn:
            for conv, parent, name in conv_bn_sites(self):
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
                setattr(parent, name, nn.Identity())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> pooled features (B, feature_dim)."""
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> logits (B, K)."""
        return self.head(self.features(x))


def conv_bn_sites(model: Student) -> list[tuple[nn.Conv2d, nn.Module, str]]:
    """Every (convolution, module holding its batch norm, attribute name of that batch norm)
    of a student, in forward order (the batch norm may already be ``nn.Identity``)."""
    sites: list[tuple[nn.Conv2d, nn.Module, str]] = [(model.stem[0], model.stem, "1")]
    for block in model.stages:
        sites += [(block.conv1, block, "bn1"), (block.conv2, block, "bn2")]
        if isinstance(block.skip, nn.Sequential):
            sites.append((block.skip[0], block.skip, "1"))
    return sites


@torch.no_grad()
def fold_batchnorm(model: Student) -> Student:
    """A new student (eval mode, ``folded_bn=True``) computing what ``model`` computes in
    eval mode, each batch norm folded into its convolution:
    ``w' = w * g / sqrt(v + eps)`` per output channel, ``b' = beta + (b - mu) * g / sqrt(v + eps)``.
    A student that is already folded is copied."""
    cfg = StudentConfig(model.config.in_channels, model.config.widths, model.config.blocks,
                        model.config.stem_stride, folded_bn=True)
    folded = Student(cfg, model.head.out_features)
    for (conv, parent, name), (fconv, _, _) in zip(conv_bn_sites(model), conv_bn_sites(folded),
                                                   strict=True):
        bn = getattr(parent, name)
        w = conv.weight.detach().double()
        b = (conv.bias.detach().double() if conv.bias is not None
             else torch.zeros(conv.out_channels, dtype=torch.float64))
        if isinstance(bn, nn.BatchNorm2d):
            k = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * k.view(-1, 1, 1, 1)
            b = bn.bias.double() + (b - bn.running_mean.double()) * k
        fconv.weight.copy_(w.float())
        fconv.bias.copy_(b.float())
    folded.head.load_state_dict(model.head.state_dict())
    return folded.eval()


def _dims(value_info: onnx.ValueInfoProto) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    dims = []
    for d in shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(1)  # the dynamic batch axis, counted per tile
        else:
            return None
    return dims


# The compute nodes counted, as (kind, activation input, weight input, parameter inputs):
# float ops, and the integer ops of ONNX Runtime's QOperator format, whose other initializer
# inputs are scales and zero points.
_COUNTED = {
    "Conv": ("conv", 0, 1, (1, 2)),
    "Gemm": ("gemm", 0, 1, (1, 2)),
    "MatMul": ("matmul", 0, 1, (1,)),
    "QLinearConv": ("conv", 0, 3, (3, 8)),
    "ConvInteger": ("conv", 0, 1, (1,)),
    "QGemm": ("gemm", 0, 3, (3, 6)),
    "QLinearMatMul": ("matmul", 0, 3, (3,)),
    "MatMulInteger": ("matmul", 0, 1, (1,)),
}


def _is_quantized_op(op_type: str) -> bool:
    return op_type in ("QuantizeLinear", "DequantizeLinear", "QGemm", "ConvInteger",
                       "MatMulInteger", "DynamicQuantizeLinear") or op_type.startswith("QLinear")


def _runtime_shapes(model: onnx.ModelProto, names: set[str]) -> dict[str, list[int]]:
    """Shapes of tensors ``names`` at batch 1, by running the model once in ONNX Runtime on
    zeros: for graphs whose contrib ops (QLinearAdd, QGemm...) onnx shape inference stops at."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in sorted(names - known))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = _dims(vi)
        if dims is None:
            raise ValueError(f"cannot infer the shape of graph input '{vi.name}'")
        elem = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = np.zeros(dims, dtype=elem)
    outputs = [o.name for o in session.get_outputs()]
    values = session.run(outputs, feeds)
    return {n: list(v.shape) for n, v in zip(outputs, values, strict=True) if n in names}


def count_onnx_graph(model: onnx.ModelProto | bytes) -> dict[str, Any]:
    """Parameters, MACs and FLOPs per input item (batch 1) of a float, Q/DQ or QOperator
    ONNX model.

    Returns ``{"parameters", "macs", "flops", "mflops", "per_op": {op_type: macs}}``;
    raises ValueError when a counted node's shapes cannot be found.
    """
    if isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes: dict[str, list[int] | None] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        shapes[vi.name] = _dims(vi)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for name, arr in inits.items():
        shapes[name] = list(arr.shape)
    counted = [n for n in graph.node if n.op_type in _COUNTED]
    missing = {name for n in counted
               for name in (n.output[0], n.input[_COUNTED[n.op_type][1]],
                            n.input[_COUNTED[n.op_type][2]])
               if shapes.get(name) is None}
    if missing:
        shapes.update(_runtime_shapes(model, missing))
    # Weights: float initializers, the quantized weights and biases a Q/DQ graph dequantizes,
    # and those a QOperator node reads; not scales, zero points or integer shape constants.
    weights = {n.input[i] for n in counted for i in _COUNTED[n.op_type][3] if i < len(n.input)}
    weights |= {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    qparams = {name for n in graph.node if _is_quantized_op(n.op_type)
               for name in n.input} - weights
    params = int(sum(a.size for name, a in inits.items() if name not in qparams and (
        np.issubdtype(a.dtype, np.floating) or name in weights)))
    per_op: dict[str, int] = {}
    total = 0
    for node in counted:
        kind, act_at, weight_at, _ = _COUNTED[node.op_type]
        out = shapes.get(node.output[0])
        w = shapes.get(node.input[weight_at])
        a = shapes.get(node.input[act_at])
        if out is None or w is None or a is None:
            raise ValueError(f"cannot infer the shapes of {node.op_type} node '{node.name}'")
        if kind == "conv":
            macs = int(np.prod(out)) * (w[1]) * int(np.prod(w[2:]))  # w[1] = C_in / group
        elif kind == "gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            k = a[0] if trans_a else a[-1]
            macs = int(np.prod(out)) * int(k)
        else:
            macs = int(np.prod(out)) * int(a[-1])
        per_op[node.op_type] = per_op.get(node.op_type, 0) + macs
        total += macs
    return {"parameters": params, "macs": total, "flops": 2 * total,
            "mflops": round(2 * total / 1e6, 3), "per_op": per_op}
