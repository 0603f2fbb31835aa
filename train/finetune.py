"""Fine-tuning: a pretrained encoder and a linear head trained end to end on a label fraction,
saved in the probe checkpoint's format so that ``edge export onnx`` and ``edge export distill``
take it as they take a linear probe."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from train.checkpoint import git_revision, save_atomic
from train.datasets.errors import DatasetError
from train.datasets.whole_image import WHOLE_IMAGE_TILING
from train.labelled_sets import canonical, load_labelled
from train.metrics import MIN_SUPPORT, evaluate
from train.probe import load_encoder
from train.supervised import SupervisedConfig, fit_supervised, predict
from train.tiles import TileDataConfig, default_data_root


@dataclass
class FinetuneConfig:
    """Fine-tune ``encoder`` with a linear head on a class-stratified ``label_fraction`` of
    ``dataset``'s train labels (drawn as the probe draws them, by ``seed``); ``out``: the
    checkpoint to write (None: metrics only). ``probe_first``: LP-FT, the head starts as the
    linear probe on the frozen features."""

    encoder: str = "runs/pretrain/encoder.pt"
    out: str | None = "runs/finetune/finetune.pt"
    data: TileDataConfig = field(default_factory=TileDataConfig)
    dataset: str = "ai4mars"
    msl_root: str = str(default_data_root() / "msl-v2.1")
    label_fraction: float = 0.1
    seed: int = 0
    steps: int = 400
    lr: float = 5e-4
    probe_first: bool = True


def finetune(cfg: FinetuneConfig, log: Any = print) -> dict[str, Any]:
    """Fine-tune and evaluate on validation; writes ``cfg.out`` (kind ``probe``: encoder and
    head states, classes, input, tiling, the pretraining config, this config as
    ``probe_config`` with ``method: finetune``) and returns the validation metrics."""
    t0 = time.perf_counter()
    _, enc_ckpt = load_encoder(cfg.encoder)  # a bad checkpoint is refused before any data
    name = canonical(cfg.dataset)
    # Inputs at the size the encoder was pretrained on, as the probe does.
    data = replace(cfg.data, tile_pixels=int(enc_ckpt["input"]["tile_pixels"]))
    train = load_labelled(name, "train", data, cfg.msl_root)
    val = load_labelled(name, "val", data, cfg.msl_root)
    idx = train.fraction(cfg.label_fraction, cfg.seed)
    if not len(idx):
        raise DatasetError(f"{name}: a {cfg.label_fraction:.2%} label fraction selects no "
                           "train items; raise --label-fraction")
    unit = "tiles" if name == "ai4mars" else "images"
    log(f"fine-tuning on {len(idx)} labelled train {unit} ({cfg.label_fraction:.0%}), "
        f"{cfg.steps} steps, {'probe-first head' if cfg.probe_first else 'random head'}")
    model = fit_supervised(train.subset(idx), SupervisedConfig(
        steps=cfg.steps, lr=cfg.lr, seed=cfg.seed, init_encoder=cfg.encoder,
        probe_first=cfg.probe_first))
    metrics = evaluate(predict(model, val.inputs), val.labels, train.classes,
                       MIN_SUPPORT[name]) | {
        "dataset": name, "unit": unit, "label_fraction": cfg.label_fraction,
        "labelled_items": int(len(idx)), "val_frames": val.frames,
        "split": ("validation (clock-ordered, latest 20% of frames)" if name == "ai4mars"
                  else "validation (published val-set-v2.1, by sol)"),
    }
    if cfg.out:
        model = model.to("cpu").eval()
        save_atomic({
            "kind": "probe",
            "encoder_checkpoint": str(cfg.encoder),
            "encoder_config": enc_ckpt["encoder_config"],
            "encoder_state": model.encoder.state_dict(),
            "head_state": model.head.state_dict(),
            "classes": train.classes,
            "input": enc_ckpt["input"],
            "tiling": enc_ckpt["tiling"] if name == "ai4mars" else asdict(WHOLE_IMAGE_TILING),
            "pretrain_config": enc_ckpt["config"],
            "probe_config": asdict(cfg) | {"method": "finetune"},
            "metrics": metrics,
            "git_revision": git_revision(),
        }, cfg.out)
    log(json.dumps({k: metrics[k] for k in ("accuracy", "mean_recall", "tiles")})
        + f" in {time.perf_counter() - t0:.1f} s")
    return metrics
