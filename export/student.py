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
batch 1; then, per node,
- Conv: MACs = N * C_out * H_out * W_out * (C_in / group) * kH * kW,
- Gemm / MatMul: MACs = M * K * N (the product of the output's size and the shared axis),
and FLOPs = 2 * MACs (one multiply and one add; biases, ReLU, pooling and the element-wise
residual additions are not counted: they are < 1% here). Parameters are the elements of
the float initializers (after export, so folded batch norms count as convolution biases).
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


def count_onnx_graph(model: onnx.ModelProto | bytes) -> dict[str, Any]:
    """Parameters, MACs and FLOPs per input item (batch 1) of a float or Q/DQ ONNX model.

    Returns ``{"parameters", "macs", "flops", "mflops", "per_op": {op_type: macs}}``;
    raises ValueError when a Conv/Gemm/MatMul shape cannot be inferred.
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
    # Weights: float initializers, and the quantized weights and biases a Q/DQ graph
    # dequantizes; not the scales and zero points, nor integer shape constants.
    quantized = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    qparams = {name for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
               for name in node.input[1:]}
    params = int(sum(a.size for name, a in inits.items() if name not in qparams and (
        np.issubdtype(a.dtype, np.floating) or name in quantized)))
    per_op: dict[str, int] = {}
    total = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        out = shapes.get(node.output[0])
        w = shapes.get(node.input[1])
        a = shapes.get(node.input[0])
        if out is None or w is None or a is None:
            raise ValueError(f"cannot infer the shapes of {node.op_type} node '{node.name}'")
        if node.op_type == "Conv":
            group = next((at.i for at in node.attribute if at.name == "group"), 1)
            macs = int(np.prod(out)) * (w[1]) * int(np.prod(w[2:]))
            del group  # w[1] is already C_in / group
        elif node.op_type == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            k = a[0] if trans_a else a[-1]
            macs = int(np.prod(out)) * int(k)
        else:
            macs = int(np.prod(out)) * int(a[-1])
        per_op[node.op_type] = per_op.get(node.op_type, 0) + macs
        total += macs
    return {"parameters": params, "macs": total, "flops": 2 * total,
            "mflops": round(2 * total / 1e6, 3), "per_op": per_op}
