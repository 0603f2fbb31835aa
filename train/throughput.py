"""SimCLR training throughput (images/s) of an encoder preset, on random tiles.

One step is what :func:`train.pretrain.pretrain` does per batch: two augmented views of
``batch_size`` tiles, encoder + projection head on both, ``nt_xent``, backward and an AdamW
step, with channels-last tensors. "Images" counts tiles of the batch (each seen in two views).
No data loading is timed: this is the compute ceiling of the training loop.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from edge.cpu_info import cpu_info
from train.augment import AugmentConfig, augment
from train.device import autocast_context, autocast_dtype, check_precision
from train.losses import nt_xent
from train.models import ENCODER_PRESETS, Encoder, ProjectionHead


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """``auto`` on CUDA: bfloat16 where supported, else float16; otherwise
    :func:`train.device.autocast_dtype` (None: float32)."""
    dtype = autocast_dtype(device, precision)
    if precision == "auto" and dtype is not None and not torch.cuda.is_bf16_supported():
        return torch.float16
    return dtype


def training_throughput(preset: str, tile_pixels: int = 32, batch_size: int = 256,
                        steps: int = 10, warmup: int = 2, threads: int | None = None,
                        device: str = "cpu", seed: int = 0,
                        precision: str = "auto") -> dict[str, Any]:
    """Measure SimCLR training images/s of ``preset``.

    Runs ``warmup`` untimed steps, then ``steps`` timed ones (each timed on its own, with a
    CUDA synchronise before and after); returns the median, p10 and p90 of per-step
    ``batch_size / seconds`` with the settings: preset, params (encoder + head, trained),
    encoder_params, device, threads (torch intra-op threads during the run), amp (None for
    float32, else 'bfloat16' or 'float16'; ``precision`` as in
    :func:`train.device.autocast_dtype`), cpu (the host CPU and its features), torch
    version, tile_pixels, batch_size, steps, warmup.
    ``threads`` sets torch's CPU thread count for the run and restores it afterwards.
    Raises ValueError on an unknown preset or impossible settings.
    """
    if preset not in ENCODER_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(ENCODER_PRESETS)}")
    if batch_size < 2 or steps < 1 or warmup < 0 or tile_pixels < 4:
        raise ValueError(f"need batch_size >= 2, steps >= 1, warmup >= 0, tile_pixels >= 4 "
                         f"(got {batch_size}, {steps}, {warmup}, {tile_pixels})")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    check_precision(precision)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")

    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(preset, tile_pixels, batch_size, steps, warmup, dev, seed, precision)
    finally:
        torch.set_num_threads(saved_threads)


def _measure(preset: str, tile_pixels: int, batch_size: int, steps: int, warmup: int,
             dev: torch.device, seed: int, precision: str) -> dict[str, Any]:
    torch.manual_seed(seed)
    config = ENCODER_PRESETS[preset]
    encoder = Encoder(config).to(dev, memory_format=torch.channels_last)
    head = ProjectionHead(config.feature_dim).to(dev)
    encoder.train()
    head.train()
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    amp = _amp_dtype(dev, precision)
    # float16 needs loss scaling; bfloat16 and float32 do not.
    scaler = torch.amp.GradScaler("cuda") if amp is torch.float16 else None
    cuda = dev.type == "cuda"

    gen = torch.Generator(device=dev).manual_seed(seed)
    # Random tiles, uniform in [0, 1] then normalised like the grey input spec.
    unit = torch.rand(batch_size, config.in_channels, tile_pixels, tile_pixels,
                      generator=gen, device=dev)
    batch = (unit - 0.5) / 0.25
    aug = AugmentConfig()

    def step() -> None:
        # Augmentation in float32 (as in pretrain), the network under autocast if any.
        v1 = augment(batch, aug, gen).contiguous(memory_format=torch.channels_last)
        v2 = augment(batch, aug, gen).contiguous(memory_format=torch.channels_last)
        with autocast_context(dev, amp):
            z1 = head(encoder(v1))
            z2 = head(encoder(v2))
            loss = nt_xent(z1, z2)  # computed in float32 inside
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if not torch.isfinite(loss.detach()).item():
            raise RuntimeError(f"non-finite loss in the throughput run of {preset!r}")

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(dev)
        rates.append(batch_size / max(time.perf_counter() - t0, 1e-9))
    r = np.asarray(rates)
    return {
        "preset": preset,
        "params": _count(encoder) + _count(head),
        "encoder_params": _count(encoder),
        "device": str(dev) if not cuda else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "threads": torch.get_num_threads(),
        "amp": None if amp is None else str(amp).removeprefix("torch."),
        "cpu": cpu_info().describe(),
        "torch": torch.__version__,
        "tile_pixels": tile_pixels,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "images_per_s_median": float(np.median(r)),
        "images_per_s_p10": float(np.percentile(r, 10)),
        "images_per_s_p90": float(np.percentile(r, 90)),
        # Peak memory the allocator held on the GPU for this preset (None on the CPU).
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated(dev) / 2**20) if cuda else None,
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Results of :func:`training_throughput` as a Markdown table (one row per preset)."""
    lines = ["| preset | params | autocast | images/s (median) | p10 | p90 |",
             "|---|---:|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['preset']} | {r['params']:,} | {r['amp'] or 'none (float32)'} | "
                     f"{r['images_per_s_median']:.0f} | "
                     f"{r['images_per_s_p10']:.0f} | {r['images_per_s_p90']:.0f} |")
    return "\n".join(lines)
