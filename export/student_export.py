"""Student checkpoint -> fp32 ONNX bundle, checked against torch, sized from its graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from edge.bundle import Bundle, Manifest, finite_json, write_bundle
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec
from export.distill import student_from_checkpoint
from export.onnx_export import (
    ExportError,
    check_against_torch,
    run_provenance,
    to_onnx_bytes,
)
from export.operating_point import manifest_record
from export.student import count_onnx_graph
from train.checkpoint import CheckpointError, load_checkpoint
from train.datasets.digest import checkpoint_data_digests
from train.tiles import TileDataConfig, load_split_tiles

MAX_PARAMETERS = 1_000_000
MAX_MFLOPS = 20.0


def teacher_lineage(path: str | Path) -> dict[str, Any]:
    """How the teacher a student learned from was made, for the student's manifest: its
    pretraining and probe configs (presets, seeds), revision and the digests of the dataset
    folders they name; ``{"checkpoint", "missing": True}`` when the file is gone."""
    try:
        teacher = load_checkpoint(path, "probe")
    except CheckpointError:
        return {"checkpoint": str(path), "missing": True}
    return {"checkpoint": str(path), "git_revision": teacher.get("git_revision"),
            "pretrain_config": teacher.get("pretrain_config"),
            "probe_config": teacher.get("probe_config"),
            "data_digests": checkpoint_data_digests(teacher)}


def export_student_bundle(checkpoint: str | Path, out_dir: str | Path,
                          data: TileDataConfig | None = None, check_frames: int = 16,
                          name: str = "terrain", opset: int = 17, tolerance: float = 1e-4
                          ) -> Bundle:
    """Write the student as an fp32 bundle; raises ExportError (nothing written) when ONNX
    Runtime disagrees with torch beyond ``tolerance`` or the student exceeds 1M parameters or
    20 MFLOPs per tile (both counted from the ONNX graph)."""
    ckpt = load_checkpoint(checkpoint, "student")
    model = student_from_checkpoint(ckpt, str(checkpoint))
    try:
        spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in ckpt["input"].items()})
        tiling = TilingSpec(**ckpt["tiling"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: incomplete student checkpoint ({exc})") from exc
    if spec.channels != model.config.in_channels:
        raise CheckpointError(f"{checkpoint}: the student takes {model.config.in_channels} "
                              f"channel(s), its input section says {spec.channels}")
    shape = (1, spec.channels, spec.tile_pixels, spec.tile_pixels)
    model_bytes = to_onnx_bytes(model, torch.zeros(shape), opset)
    size = count_onnx_graph(onnx.load_from_string(model_bytes))
    if size["parameters"] > MAX_PARAMETERS or size["mflops"] > MAX_MFLOPS:
        raise ExportError(f"{checkpoint}: the student has {size['parameters']} parameters and "
                          f"{size['mflops']} MFLOPs per tile (limits {MAX_PARAMETERS}, "
                          f"{MAX_MFLOPS}); no bundle written")
    if data is not None and check_frames:
        cfg = TileDataConfig(root=data.root, tile_pixels=spec.tile_pixels,
                             max_val_frames=check_frames)
        tiles = load_split_tiles(cfg, "val", with_labels=False).tiles
    else:
        tiles = np.random.default_rng(0).normal(size=(64, *shape[1:])).astype(np.float32)
    out = Path(out_dir)
    diff = check_against_torch(model, model_bytes, out, tiles, tolerance)
    m = ckpt["metrics"]
    manifest = Manifest(
        name=name, classes=list(ckpt["classes"]), input=spec, tiling=tiling, precision="fp32",
        sha256="",
        provenance=finite_json({
            **run_provenance(ckpt),
            "kind": "distilled student",
            "teacher_checkpoint": ckpt["teacher_checkpoint"],
            "teacher_lineage": teacher_lineage(ckpt["teacher_checkpoint"]),
            "teacher_metrics": {k: (ckpt.get("teacher_metrics") or {}).get(k)
                                for k in ("accuracy", "mean_recall", "tiles")},
            "distill_config": ckpt["distill_config"],
            **({"training_runs": ckpt["training_runs"]} if ckpt.get("training_runs") else {}),
            "student": ckpt["student_config"] | {
                "parameters": size["parameters"], "macs_per_tile": size["macs"],
                "mflops_per_tile": size["mflops"],
                "counted": "from the ONNX graph: Conv/Gemm MACs at batch 1, FLOPs = 2 x MACs"},
            "onnx": {"opset": opset, "max_abs_diff_vs_torch": diff,
                     "checked_tiles": int(len(tiles))},
        } | ({"operating_point": op} if (op := manifest_record(ckpt)) else {})),
        metrics=finite_json({
            "accuracy": m["student"]["accuracy"], "mean_recall": m["student"]["mean_recall"],
            "per_class_recall": m["student"]["per_class_recall"],
            "tiles": m["student"]["tiles"], "agreement_with_teacher": m["agreement"],
            "teacher_accuracy": m["teacher"]["accuracy"],
            "teacher_mean_recall": m["teacher"]["mean_recall"],
            "accuracy_kept": m["accuracy_kept"], "split": m.get("split"),
            "confusion": m["student"]["confusion"],
        }),
    )
    return write_bundle(out, model_bytes, manifest)
