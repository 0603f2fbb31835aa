"""Which device a training process runs on: one rule for pretraining, the supervised baseline
and the benchmark's feature extraction."""

from __future__ import annotations

import torch

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
