"""Probe checkpoint -> ONNX model bundle, checked against torch on the same inputs."""

from __future__ import annotations

import datetime as dt
import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edge.bundle import Bundle, Manifest, finite_json, write_bundle
from edge.preprocess import InputSpec
from edge.runners import OnnxRuntimeRunner
from edge.tiling import TilingSpec
from train.checkpoint import CheckpointError, git_revision, load_checkpoint
from train.datasets.digest import checkpoint_data_digests
from train.models import Encoder, EncoderConfig, TileClassifier

INPUT_NAME = "tiles"
OUTPUT_NAME = "logits"


class ExportError(Exception):
    """The export failed; no bundle was written."""


@dataclass
class OnnxExportConfig:
    """Export a probe checkpoint to a bundle at ``out_dir``."""

    checkpoint: str = "runs/probe/probe.pt"
    out_dir: str = "runs/bundle"
    name: str = "terrain"
    opset: int = 17
    tolerance: float = 1e-4


def classifier_from_probe(ckpt: dict[str, Any]) -> TileClassifier:
    """Rebuild encoder + linear head from a probe checkpoint dict; eval mode."""
    cfg = ckpt["encoder_config"]
    encoder = Encoder(EncoderConfig(cfg["in_channels"], cfg["width"], tuple(cfg["blocks"])))
    head = nn.Linear(encoder.config.feature_dim, len(ckpt["classes"]))
    try:
        encoder.load_state_dict(ckpt["encoder_state"])
        head.load_state_dict(ckpt["head_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit the recorded architecture ({exc})"
                              ) from exc
    return TileClassifier(encoder, head).eval()


def to_onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """Serialise ``model`` to ONNX with a dynamic batch axis; checked by onnx.checker."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    return buf.getvalue()


def compare_with_torch(model: nn.Module, model_path: Path, tiles: np.ndarray) -> float:
    """Max |logit difference| between torch and ONNX Runtime on the same tiles (N, C, S, S)."""
    runner = OnnxRuntimeRunner(model_path, INPUT_NAME, OUTPUT_NAME, threads=1)
    with torch.no_grad():
        expected = model(torch.from_numpy(tiles)).numpy()
    got = runner.run(tiles)
    return float(np.abs(expected - got).max())


def data_provenance(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a probe checkpoint was trained on: labelled set, label fraction, pretraining pool."""
    probe_cfg = ckpt["probe_config"]
    fraction = f"{probe_cfg['label_fraction']:.0%}"
    if probe_cfg.get("dataset", "ai4mars") == "ai4mars":
        labels = {"dataset": "AI4Mars Navcam (ai4mars-msl-ncam-256)",
                  "labels": f"{fraction} of scored train-split tiles, class-stratified"}
    else:
        labels = {"dataset": "MSL Curiosity surface images v2.1 (msl-v2.1), whole images "
                             "(centred square)",
                  "labels": f"{fraction} of train-split originals (with their flipped and "
                            "rotated copies), class-stratified"}
    if probe_cfg.get("method") == "finetune":
        labels["labels"] += "; encoder fine-tuned end to end on them"
    domains = dict(ckpt["pretrain_config"].get("domains", [("ai4mars", 1.0)]))
    return labels | {"pretrain": f"unlabelled train-split images, domain mix {domains}"}


def run_provenance(ckpt: dict[str, Any]) -> dict[str, Any]:
    """How and when a bundle is being made: time, command, revisions, torch version, and the
    content digests of the dataset folders the checkpoint's configs name."""
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["edge", *sys.argv[1:]]) if sys.argv else None,
        "git_revision": git_revision(),
        "training_git_revision": ckpt.get("git_revision"),
        "torch": str(torch.__version__),
        "data_digests": checkpoint_data_digests(ckpt),
    }


def check_against_torch(model: nn.Module, model_bytes: bytes, out: Path, tiles: np.ndarray,
                        tolerance: float) -> float:
    """Run the serialised model in ONNX Runtime (from a hidden staging file beside ``out``) and
    torch on the same tiles (N, C, S, S); the max |logit difference|, or ExportError (no bundle
    written) when it exceeds ``tolerance``."""
    staging = out.parent / f".{out.name}.check.onnx"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.write_bytes(model_bytes)
        diff = compare_with_torch(model, staging, tiles)
    finally:
        staging.unlink(missing_ok=True)
    if not diff <= tolerance:
        raise ExportError(f"ONNX Runtime logits differ from torch by {diff:.2e} "
                          f"(> {tolerance:.0e}); no bundle written")
    return diff


def export_bundle(cfg: OnnxExportConfig, check_tiles: np.ndarray | None = None) -> Bundle:
    """Write the bundle; raises ExportError (nothing written) when ONNX disagrees with torch.

    ``check_tiles``: float32 (N, C, S, S) real tiles to compare on; random tiles if None.
    """
    ckpt = load_checkpoint(cfg.checkpoint, "probe")
    try:
        model = classifier_from_probe(ckpt)
        spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in ckpt["input"].items()})
        tiling = TilingSpec(**ckpt["tiling"])
    except CheckpointError as exc:
        raise CheckpointError(f"{cfg.checkpoint}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg.checkpoint}: incomplete or malformed probe checkpoint "
                              f"({type(exc).__name__}: {exc}); re-run 'edge train probe'") from exc
    shape = (1, spec.channels, spec.tile_pixels, spec.tile_pixels)
    model_bytes = to_onnx_bytes(model, torch.zeros(shape), cfg.opset)
    if check_tiles is None:
        check_tiles = np.random.default_rng(0).normal(size=(64, *shape[1:])).astype(np.float32)
    out = Path(cfg.out_dir)
    diff = check_against_torch(model, model_bytes, out, check_tiles, cfg.tolerance)
    params = sum(p.numel() for p in model.parameters())
    manifest = Manifest(
        name=cfg.name, classes=list(ckpt["classes"]), input=spec, tiling=tiling,
        precision="fp32", sha256="",
        provenance=finite_json({
            **run_provenance(ckpt),
            "data": data_provenance(ckpt),
            "encoder": ckpt["encoder_config"] | {"parameters": params},
            "pretrain_config": ckpt["pretrain_config"],
            "probe_config": ckpt["probe_config"],
            "onnx": {"opset": cfg.opset, "max_abs_diff_vs_torch": diff,
                     "checked_tiles": int(len(check_tiles))},
        }),
        metrics=finite_json(ckpt["metrics"]),
    )
    return write_bundle(out, model_bytes, manifest)
