"""Fine-tuning: a pretrained encoder and a linear head trained end to end on a label fraction,
saved in the probe checkpoint's format so that ``edge export onnx`` and ``edge export distill``
take it as they take a linear probe."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from train.checkpoint import save_atomic
from train.probe import (
    LabelledRunConfig,
    classifier_checkpoint,
    load_encoder,
    load_for_encoder,
)
from train.supervised import SupervisedConfig, fit_supervised, predict


@dataclass
class FinetuneConfig(LabelledRunConfig):
    """Fine-tune ``encoder`` with a linear head on the labelled subset (drawn as the probe
    draws it); ``out``: the checkpoint to write (None: metrics only). ``probe_first``: LP-FT,
    the head starts as the linear probe on the frozen features."""

    out: str | None = "runs/finetune/finetune.pt"
    steps: int = 400
    lr: float = 5e-4
    probe_first: bool = True


def finetune(cfg: FinetuneConfig, log: Any = print) -> dict[str, Any]:
    """Fine-tune and evaluate on validation; writes ``cfg.out`` (kind ``probe``: encoder and
    head states, classes, input, tiling, the pretraining config, this config as
    ``probe_config`` with ``method: finetune``) and returns the validation metrics."""
    t0 = time.perf_counter()
    _, enc_ckpt = load_encoder(cfg.encoder)  # a bad checkpoint is refused before any data
    run = load_for_encoder(enc_ckpt, cfg)
    log(f"fine-tuning on {len(run.idx)} labelled train {run.unit} "
        f"({cfg.label_fraction:.0%}), {cfg.steps} steps, "
        f"{'probe-first head' if cfg.probe_first else 'random head'}")
    model = fit_supervised(run.train.subset(run.idx), SupervisedConfig(
        steps=cfg.steps, lr=cfg.lr, seed=cfg.seed, init_encoder=cfg.encoder,
        probe_first=cfg.probe_first))
    metrics = run.metrics(predict(model, run.val.inputs))
    if cfg.out:
        save_atomic(classifier_checkpoint(run, enc_ckpt, cfg.encoder, model.encoder,
                                          model.head, asdict(cfg) | {"method": "finetune"},
                                          metrics), cfg.out)
    log(json.dumps({k: metrics[k] for k in ("accuracy", "mean_recall", "tiles")})
        + f" in {time.perf_counter() - t0:.1f} s")
    return metrics
