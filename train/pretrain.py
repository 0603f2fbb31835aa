"""SimCLR pretraining of a tile encoder on unlabelled AI4Mars Navcam tiles (CPU-friendly)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.augment import AugmentConfig, augment
from train.checkpoint import git_revision, save_atomic
from train.losses import nt_xent
from train.models import ENCODER_PRESETS, Encoder, ProjectionHead
from train.tiles import TileDataConfig, load_split_tiles


class TrainingError(Exception):
    """Training cannot go on (for example, the loss became non-finite)."""


@dataclass
class PretrainConfig:
    """A pretraining run. ``max_minutes`` stops the run once that time is spent (mid-epoch
    if need be); the checkpoint then holds the last completed step."""

    out_dir: str = "runs/pretrain"
    preset: str = "tiny"
    data: TileDataConfig = field(default_factory=TileDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 256
    epochs: int = 5
    max_minutes: float | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    seed: int = 0
    threads: int | None = None


def _save(cfg: PretrainConfig, encoder: Encoder, history: list[dict], path: Path) -> None:
    save_atomic({
        "kind": "encoder",
        "encoder_config": encoder.config.to_dict(),
        "state_dict": encoder.state_dict(),
        "input": asdict(cfg.data.input_spec),
        "tiling": asdict(cfg.data.tiling),
        "config": asdict(cfg),
        "history": history,
        "git_revision": git_revision(),
        "torch": str(torch.__version__),
    }, path)


def pretrain(cfg: PretrainConfig, log: Any = print) -> Path:
    """Run SimCLR on the train split's tiles; returns the path of ``encoder.pt``.

    Tensors: batches (B, 1, S, S) -> two views -> encoder (B, D) -> projection (B, 128) -> NT-Xent.
    Channels-last float32 on CPU: measured faster here than bfloat16 autocast (see README).
    """
    if cfg.preset not in ENCODER_PRESETS:
        raise TrainingError(
            f"unknown preset '{cfg.preset}' (choose from {sorted(ENCODER_PRESETS)})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg) | {"git_revision": git_revision()},
                                                indent=2))
    t_load = time.perf_counter()
    tiles = torch.from_numpy(load_split_tiles(cfg.data, "train", with_labels=False).tiles)
    log(f"loaded {len(tiles)} unlabelled train tiles in {time.perf_counter() - t_load:.1f} s")
    if len(tiles) < 2 * cfg.batch_size:
        raise TrainingError(
            f"only {len(tiles)} tiles: need at least two batches of {cfg.batch_size}")

    encoder = Encoder(ENCODER_PRESETS[cfg.preset]).to(memory_format=torch.channels_last)
    head = ProjectionHead(encoder.config.feature_dim)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(tiles) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs

    def lr_factor(s: int) -> float:
        """Linear warm-up over 100 steps, then cosine decay to zero at the last step."""
        return min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = out / "encoder.pt"
    history: list[dict] = []
    start = time.perf_counter()
    deadline = start + cfg.max_minutes * 60 if cfg.max_minutes else None
    step = 0
    for epoch in range(cfg.epochs):
        encoder.train()
        head.train()
        order = torch.randperm(len(tiles), generator=gen)
        losses = []
        for i in range(steps_per_epoch):
            batch = tiles[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]]
            v1 = augment(batch, cfg.augment, gen).contiguous(memory_format=torch.channels_last)
            v2 = augment(batch, cfg.augment, gen).contiguous(memory_format=torch.channels_last)
            loss = nt_xent(head(encoder(v1)), head(encoder(v2)), cfg.temperature)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at epoch {epoch} step {i}; "
                                    f"last good checkpoint: {ckpt if ckpt.exists() else 'none'}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if deadline and time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - start
        record = {"epoch": epoch, "steps": len(losses), "loss": float(np.mean(losses)),
                  "images_per_s": round(step * cfg.batch_size / elapsed, 1),
                  "elapsed_s": round(elapsed, 1)}
        history.append(record)
        log(json.dumps(record))
        _save(cfg, encoder, history, ckpt)
        if deadline and time.perf_counter() > deadline:
            log(f"time budget of {cfg.max_minutes} min spent after {step} steps")
            break
    return ckpt
