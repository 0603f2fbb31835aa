"""The supervised baseline: the same encoder trained from scratch with a linear head on the
same labelled subset, with the pretraining augmentations (class-balanced cross entropy).
With ``init_encoder`` it fine-tunes a pretrained encoder end to end instead."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from train.augment import AugmentConfig, augment
from train.device import autocast_context, autocast_dtype, pick_device
from train.labelled_sets import LabelledSet
from train.metrics import evaluate
from train.models import ENCODER_PRESETS, Encoder, TileClassifier
from train.probe import (
    ProbeConfig,
    class_weights,
    extract_features,
    load_encoder,
    train_linear_head,
)


@dataclass(frozen=True)
class SupervisedConfig:
    """``steps`` of AdamW on batches drawn with replacement from the labelled subset;
    ``init_encoder``: an encoder checkpoint to fine-tune (``preset`` is then unused);
    ``probe_first``: when fine-tuning, start from a linear probe trained on the frozen
    encoder's features (LP-FT) instead of a random head; ``device``: ``auto`` (CUDA when
    available), ``cpu`` or ``cuda``; ``precision``: the forward pass's arithmetic as in
    :func:`train.device.autocast_dtype` (``auto``: bfloat16 autocast on CUDA, float32 on a
    CPU)."""

    preset: str = "tiny"
    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    class_balanced: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    init_encoder: str | None = None
    probe_first: bool = False
    device: str = "auto"
    precision: str = "auto"


@torch.no_grad()
def predict(model: nn.Module, inputs: np.ndarray, batch: int = 2048) -> np.ndarray:
    """inputs (N, C, S, S) -> predicted class int64 (N,), model in eval mode on the device
    that holds its weights."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model(torch.from_numpy(inputs[i:i + batch]).to(dev)).argmax(1).cpu()
                      for i in range(0, len(inputs), batch)]).numpy()


def initial_head(encoder: Encoder, train: LabelledSet, cfg: SupervisedConfig) -> nn.Linear:
    """The head training starts from: a random nn.Linear(D, K), or with ``cfg.probe_first``
    (and a pretrained encoder) the class-balanced linear probe on the frozen encoder's
    features of the un-augmented train inputs (N, C, S, S)."""
    k = len(train.classes)
    if not (cfg.probe_first and cfg.init_encoder):
        return nn.Linear(encoder.config.feature_dim, k)
    feats = extract_features(encoder, train.inputs)
    return train_linear_head(feats, torch.from_numpy(train.labels), k,
                             ProbeConfig(seed=cfg.seed, class_balanced=cfg.class_balanced))


def fit_supervised(train: LabelledSet, cfg: SupervisedConfig) -> TileClassifier:
    """Train encoder + linear head on ``train`` (already the labelled subset): from scratch,
    or from ``cfg.init_encoder``; returns the model (inputs (B, C, S, S) -> logits (B, K))."""
    torch.manual_seed(cfg.seed)
    dev = pick_device(cfg.device)
    amp = autocast_dtype(dev, cfg.precision)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    k = len(train.classes)
    if cfg.init_encoder:
        encoder, _ = load_encoder(cfg.init_encoder)
    else:
        encoder = Encoder(ENCODER_PRESETS[cfg.preset])
    model = TileClassifier(encoder, initial_head(encoder, train, cfg))
    model = model.to(dev, memory_format=torch.channels_last)
    labels = torch.from_numpy(train.labels).to(dev)
    weight = class_weights(labels, k) if cfg.class_balanced else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    inputs = torch.from_numpy(train.inputs).to(dev)
    model.train()
    for _ in range(cfg.steps):
        idx = torch.randint(len(inputs), (cfg.batch_size,), generator=gen, device=dev)
        x = augment(inputs[idx], cfg.augment, gen).contiguous(memory_format=torch.channels_last)
        with autocast_context(dev, amp):
            logits = model(x)
        loss = loss_fn(logits.float(), labels[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"supervised loss became {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


def train_supervised(train: LabelledSet, val: LabelledSet, cfg: SupervisedConfig,
                     min_support: int = 10,
                     also_evaluate: dict[str, LabelledSet] | None = None) -> dict[str, Any]:
    """Train on ``train`` (already the labelled subset) with :func:`fit_supervised`, evaluate
    on ``val``: metrics of :func:`train.metrics.evaluate` plus ``train_items`` and
    ``seconds``; the same model's metrics on each ``also_evaluate`` set under its name."""
    t0 = time.perf_counter()
    model = fit_supervised(train, cfg)
    metrics = evaluate(predict(model, val.inputs), val.labels, val.classes, min_support)
    for name, extra in (also_evaluate or {}).items():
        metrics[name] = evaluate(predict(model, extra.inputs), extra.labels, extra.classes,
                                 min_support)
    return metrics | {"train_items": int(len(train.labels)),
                      "seconds": round(time.perf_counter() - t0, 1)}
