"""Which device a training process runs on: one rule for pretraining, the supervised baseline
and the benchmark's feature extraction."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from edge.cpu_info import BF16_FEATURES, cpu_info

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: the GPU of ``local_rank`` when CUDA is available, else the CPU; ``cpu``;
    ``cuda``: the GPU of ``local_rank``. Raises ValueError for an unknown name, CUDA asked for
    without a GPU, or a local rank with no GPU of its own (one process per GPU)."""
    if name not in DEVICES:
        raise ValueError(f"device {name!r}: choose {', '.join(DEVICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: "
            f"start at most one process per GPU, or pass device 'cpu' (gloo)")
    return torch.device("cuda", local_rank)


#: Arithmetic of the network's forward pass in training: ``auto`` (bfloat16 autocast on CUDA,
#: float32 on a CPU), ``fp32`` (none) or ``bf16`` (bfloat16 autocast on either device).
PRECISIONS = ("auto", "fp32", "bf16")

def check_precision(precision: str) -> None:
    """Raise ValueError naming the choices unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype of ``torch.autocast`` for training on ``device``, or None for float32.

    ``auto`` keeps a CPU in float32: it is reproducible on every CPU, and bfloat16 is only
    faster where the CPU has :data:`edge.cpu_info.BF16_FEATURES` (measured 1.4-1.8x there;
    see docs/results/throughput.md). Raises ValueError for an unknown ``precision``.
    """
    check_precision(precision)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op context for float32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def cpu_precision_note() -> str:
    """What bfloat16 autocast means on this CPU: native or emulated (a line for the log)."""
    native = cpu_info().native_bf16
    if native:
        return f"bfloat16 autocast on the CPU, native ({', '.join(native)})"
    return ("warning: bfloat16 autocast on a CPU without native bfloat16 "
            f"({' or '.join(BF16_FEATURES)}): emulated, likely slower than --precision fp32")
