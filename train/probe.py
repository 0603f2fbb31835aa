"""Linear probe: a linear head on frozen encoder features, trained on a fraction of the labels."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train.checkpoint import git_revision, load_checkpoint, save_atomic
from train.datasets.errors import DatasetError
from train.datasets.whole_image import WHOLE_IMAGE_TILING
from train.device import pick_device
from train.labelled_sets import LabelledSet, canonical, load_labelled
from train.metrics import MIN_SUPPORT, evaluate
from train.models import Encoder, EncoderConfig
from train.tiles import TileDataConfig, default_data_root


@dataclass
class LabelledRunConfig:
    """What a head on a pretrained ``encoder`` learns from: a class-stratified
    ``label_fraction`` of ``dataset``'s train labels drawn by ``seed``: scored AI4Mars tiles
    (``ai4mars``), or whole MSL images drawn over originals (``msl-v2.1``, inputs from the
    centred square, :data:`WHOLE_IMAGE_TILING`)."""

    encoder: str = "runs/pretrain/encoder.pt"
    data: TileDataConfig = field(default_factory=TileDataConfig)
    dataset: str = "ai4mars"
    msl_root: str = str(default_data_root() / "msl-v2.1")
    label_fraction: float = 0.1
    seed: int = 0


@dataclass
class ProbeConfig(LabelledRunConfig):
    """Train a linear head on frozen features of the labelled subset; written to ``out``."""

    out: str = "runs/probe/probe.pt"
    steps: int = 500
    lr: float = 1e-2
    weight_decay: float = 1e-4
    class_balanced: bool = True
    #: With ``class_balanced``: how far the loss weights go toward equal classes
    #: (:func:`class_weights`); 1 = fully balanced, 0 = as plain.
    balance_power: float = 1.0
    standardize: bool = True
    #: Where the frozen encoder computes features ('cpu', 'cuda' or 'auto',
    #: :func:`train.device.pick_device`); the head trains on the CPU either way.
    device: str = "cpu"


def load_encoder(path: str | Path) -> tuple[Encoder, dict[str, Any]]:
    """Encoder and its checkpoint dict from an ``encoder`` checkpoint."""
    ckpt = load_checkpoint(path, "encoder")
    cfg = ckpt["encoder_config"]
    encoder = Encoder(EncoderConfig(cfg["in_channels"], cfg["width"], tuple(cfg["blocks"])))
    encoder.load_state_dict(ckpt["state_dict"])
    return encoder.eval(), ckpt


@torch.no_grad()
def extract_features(encoder: Encoder, tiles: np.ndarray, batch: int = 2048,
                     device: torch.device | None = None) -> torch.Tensor:
    """Tiles float32 (N, C, S, S) -> features float32 (N, D) on the CPU, computed in eval mode
    on ``device`` (channels-last); the encoder's train/eval mode is restored afterwards."""
    was_training = encoder.training
    encoder.eval()
    out = [torch.zeros((0, encoder.config.feature_dim))]  # N = 0 (e.g. an empty rank slice)
    for i in range(0, len(tiles), batch):
        x = torch.from_numpy(tiles[i:i + batch])
        x = x.to(device) if device is not None else x
        out.append(encoder(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    encoder.train(was_training)
    return torch.cat(out)


def fold_standardization(head: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> nn.Linear:
    """A head on raw features equal to ``head`` on standardised ones:
    W' = W / std, b' = b - W' @ mean (mean, std: (D,))."""
    folded = nn.Linear(head.in_features, head.out_features)
    with torch.no_grad():
        folded.weight.copy_(head.weight / std)
        folded.bias.copy_(head.bias - folded.weight @ mean)
    return folded


def class_weights(labels: torch.Tensor, num_classes: int, power: float = 1.0) -> torch.Tensor:
    """Cross-entropy weights (K,) from labels (N,): ``(M / (K * n_k)) ** power``, where n_k
    is class k's count (an absent class counts as one) and M the sum of the n_k. Power 1
    makes every class weigh the same in total (the benchmark's probe); 0 weighs every item
    alike; between the two trades rare-class recall for accuracy."""
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"balance power {power} is outside [0, 1]")
    counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1)
    return (counts.sum() / (num_classes * counts)) ** power


def train_linear_head(feats: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      cfg: ProbeConfig) -> nn.Linear:
    """Full-batch AdamW on frozen features (N, D) with labels (N,) -> nn.Linear(D, K) that
    applies to raw features (standardisation, if on, is folded into its weights)."""
    torch.manual_seed(cfg.seed)
    mean = feats.mean(0)
    std = feats.std(0)
    # A feature constant on the labelled tiles (e.g. a dead channel) is left unscaled: dividing
    # by its ~0 spread would give it a huge weight wherever it is not constant.
    std = torch.where(std > 1e-3, std, torch.ones_like(std))
    if cfg.standardize:
        feats = (feats - mean) / std
    head = nn.Linear(feats.shape[1], num_classes)
    weight = class_weights(labels, num_classes, cfg.balance_power) if cfg.class_balanced else None
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    for _ in range(cfg.steps):
        opt.zero_grad()
        loss = loss_fn(head(feats), labels)
        loss.backward()
        opt.step()
    return fold_standardization(head, mean, std) if cfg.standardize else head


SPLIT_DESCRIPTIONS = {"ai4mars": "validation (clock-ordered, latest 20% of frames)",
                      "msl-v2.1": "validation (published val-set-v2.1, by sol)"}


@dataclass
class LabelledRun:
    """A dataset loaded for one encoder: ``train`` and ``val`` sets at the encoder's input
    size, the drawn labelled subset ``idx`` of ``train``, and the unit counted."""

    name: str
    train: LabelledSet
    val: LabelledSet
    idx: np.ndarray
    unit: str
    label_fraction: float

    def metrics(self, val_pred: np.ndarray) -> dict[str, Any]:
        """:func:`train.metrics.evaluate` of predictions (N_val,) plus what was evaluated: the
        dataset, split, unit, label fraction, labelled items and validation frames."""
        return evaluate(val_pred, self.val.labels, self.train.classes,
                        MIN_SUPPORT[self.name]) | {
            "dataset": self.name, "split": SPLIT_DESCRIPTIONS[self.name], "unit": self.unit,
            "label_fraction": self.label_fraction, "labelled_items": int(len(self.idx)),
            "val_frames": self.val.frames,
        }


def load_for_encoder(enc_ckpt: dict[str, Any], cfg: LabelledRunConfig) -> LabelledRun:
    """Load ``cfg.dataset``'s train and val sets with inputs at the size the encoder was
    pretrained on (whatever ``cfg.data`` says) and draw the class-stratified labelled subset;
    DatasetError when the fraction selects nothing."""
    name = canonical(cfg.dataset)
    data = replace(cfg.data, tile_pixels=int(enc_ckpt["input"]["tile_pixels"]))
    train = load_labelled(name, "train", data, cfg.msl_root)
    val = load_labelled(name, "val", data, cfg.msl_root)
    idx = train.fraction(cfg.label_fraction, cfg.seed)
    if not len(idx):
        raise DatasetError(f"{name}: a {cfg.label_fraction:.2%} label fraction selects no "
                           "train items; raise --label-fraction")
    return LabelledRun(name, train, val, idx, "tiles" if name == "ai4mars" else "images",
                       cfg.label_fraction)


def classifier_checkpoint(run: LabelledRun, enc_ckpt: dict[str, Any], encoder_path: str,
                          encoder: nn.Module, head: nn.Linear, config: dict[str, Any],
                          metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``probe`` checkpoint dict that ``edge export onnx`` and ``distill`` take: encoder and
    head states, classes, input, tiling (whole-image for MSL), pretraining and head configs."""
    return {
        "kind": "probe",
        "encoder_checkpoint": encoder_path,
        "encoder_config": enc_ckpt["encoder_config"],
        "encoder_state": encoder.state_dict(),
        "head_state": head.state_dict(),
        "classes": run.train.classes,
        "input": enc_ckpt["input"],
        "tiling": enc_ckpt["tiling"] if run.name == "ai4mars" else asdict(WHOLE_IMAGE_TILING),
        "pretrain_config": enc_ckpt["config"],
        "probe_config": config,
        "metrics": metrics,
        "git_revision": git_revision(),
    }


def probe(cfg: ProbeConfig, log: Any = print) -> dict[str, Any]:
    """Train and evaluate the probe; writes ``cfg.out`` and returns validation metrics."""
    t0 = time.perf_counter()
    encoder, enc_ckpt = load_encoder(cfg.encoder)
    run = load_for_encoder(enc_ckpt, cfg)
    train, val, idx = run.train, run.val, run.idx
    log(f"{len(idx)} labelled train {run.unit} ({cfg.label_fraction:.0%} of "
        f"{len(train.labels)}), {len(val.labels)} val {run.unit}")
    dev = pick_device(cfg.device)
    encoder = encoder.to(dev)
    feats = extract_features(encoder, train.inputs[idx], device=dev)
    head = train_linear_head(feats, torch.from_numpy(train.labels[idx]), len(train.classes), cfg)
    with torch.no_grad():
        pred = head(extract_features(encoder, val.inputs, device=dev)).argmax(1).numpy()
    encoder = encoder.cpu()  # the checkpoint holds CPU tensors wherever it was made
    metrics = run.metrics(pred)
    save_atomic(classifier_checkpoint(run, enc_ckpt, str(cfg.encoder), encoder, head,
                                      asdict(cfg), metrics), cfg.out)
    log(json.dumps({k: metrics[k] for k in ("accuracy", "mean_recall", "tiles")})
        + f" in {time.perf_counter() - t0:.1f} s")
    return metrics
