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
from train.checkpoint import git_revision, load_checkpoint, save_atomic
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
    resume: bool = False


def _save(cfg: PretrainConfig, encoder: Encoder, history: list[dict], path: Path,
          train_state: dict[str, Any]) -> None:
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
        # Everything --resume needs to continue exactly where this checkpoint stands.
        "train_state": train_state,
    }, path)


RESUME_MUST_MATCH = ("preset", "batch_size", "epochs", "lr", "weight_decay", "temperature", "seed")


def _check_resumable(cfg: PretrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run made with different settings (it would not be the same run)."""
    if "train_state" not in ckpt:
        raise TrainingError(f"{path}: holds no training state to resume from")
    old = ckpt["config"]
    diff = [f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in RESUME_MUST_MATCH
            if old.get(k) != getattr(cfg, k)]
    if old.get("data") != asdict(cfg.data):
        diff.append("data settings differ")
    if diff:
        raise TrainingError(f"{path}: cannot resume with different settings ({'; '.join(diff)})")


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
    step = first_epoch = 0
    if cfg.resume and ckpt.exists():
        saved = load_checkpoint(ckpt, "encoder")
        _check_resumable(cfg, saved, ckpt)
        state = saved["train_state"]
        encoder.load_state_dict(saved["state_dict"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, step, first_epoch = saved["history"], state["step"], state["next_epoch"]
        log(f"resuming from {ckpt}: epoch {first_epoch} of {cfg.epochs}, step {step}")
    elif cfg.resume:
        log(f"no checkpoint at {ckpt}: starting from scratch")
    start = time.perf_counter()
    deadline = start + cfg.max_minutes * 60 if cfg.max_minutes else None
    for epoch in range(first_epoch, cfg.epochs):
        encoder.train()
        head.train()
        order = torch.randperm(len(tiles), generator=gen)
        losses = []
        t_epoch = time.perf_counter()
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
        now = time.perf_counter()
        record = {"epoch": epoch, "steps": len(losses), "loss": float(np.mean(losses)),
                  "images_per_s": round(len(losses) * cfg.batch_size / (now - t_epoch), 1),
                  "elapsed_s": round(now - start, 1)}
        history.append(record)
        log(json.dumps(record))
        # A run stopped mid-epoch by its time budget resumes at the next epoch.
        _save(cfg, encoder, history, ckpt, {
            "next_epoch": epoch + 1, "step": step, "head": head.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
        })
        if deadline and time.perf_counter() > deadline:
            log(f"time budget of {cfg.max_minutes} min spent after {step} steps")
            break
    return ckpt
