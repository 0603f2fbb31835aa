"""Distil the probe (encoder + linear head) into a small student on unlabelled tiles.

Loss per batch (teacher logits t, student logits s, both (B, K); features f_t (B, D_t),
f_s (B, D_s)):

    T^2 * KL(softmax(t / T) || softmax(s / T))  +  beta * mean(1 - cos(P f_s, f_t))

where P is a linear projector (D_s -> D_t) used only in training (beta = 0: logits only).
No labels are used for training; labels only score the result on the validation split.

The teacher may take larger tiles than the student (a ResNet-18 trained on 64-px tiles, a
student on 32-px ones): both see the same tiles of the same frames, each made at its own size
by the one preprocessing function (``train.tiles.load_split_tiles``), paired by position.
Training runs in channels-last fp32 (measured faster than bf16 autocast on this AVX2 CPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge.atomic_file import atomic_open
from export.onnx_export import classifier_from_probe
from export.student import Student, StudentConfig
from train.checkpoint import CheckpointError, git_revision, load_checkpoint, save_atomic
from train.datasets.errors import DatasetError
from train.metrics import evaluate
from train.models import TileClassifier
from train.tiles import TileDataConfig, load_split_tiles

CL = torch.channels_last


@dataclass
class DistillConfig:
    """Distil ``teacher`` (a probe checkpoint) into a student written to ``out``."""

    teacher: str = "runs/probe/probe.pt"
    out: str = "runs/distill/student.pt"
    data: TileDataConfig = field(default_factory=TileDataConfig)
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (1, 1, 1)
    temperature: float = 2.0
    feature_weight: float = 0.0
    # Weight of a cross-entropy term on the teacher's decision (its argmax): sharpens the
    # student's class boundaries where the soft KL term copies the teacher's soft ones.
    hard_weight: float = 0.0
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    epochs: int = 10
    max_minutes: float | None = None
    threads: int = 2
    seed: int = 0
    teacher_cache: str | None = None
    eval_batch: int = 2048
    # Probability that a training tile is replaced by its resampled version (cubic x2 or x4
    # upsampling, then area downsampling: what a higher-resolution camera frame goes through
    # on its way to the reference scale), with the teacher's answer on the clean tile as target.
    resample_prob: float = 0.0


def resample_views(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Tiles (B, C, S, S) -> the same shape, each tile replaced with probability ``prob`` by
    ``area_down(cubic_up(tile, k), k)`` with k 2 or 4 (chosen per batch)."""
    if prob <= 0:
        return x
    pick = torch.rand(x.shape[0], generator=generator) < prob
    if not pick.any():
        return x
    k = 2 if torch.rand(1, generator=generator).item() < 0.5 else 4
    sel = x[pick]
    up = F.interpolate(sel, scale_factor=k, mode="bicubic", align_corners=False)
    out = x.clone()
    out[pick] = F.avg_pool2d(up, k)
    return out


def distill_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float,
                 s_feat: torch.Tensor | None = None, t_feat: torch.Tensor | None = None,
                 feature_weight: float = 0.0, hard_weight: float = 0.0) -> torch.Tensor:
    """T^2 KL(p_t || p_s) on logits (B, K), plus ``feature_weight`` * mean cosine distance of
    projected student features (B, D) to teacher features (B, D) when given, plus
    ``hard_weight`` * cross-entropy of the student's logits (at T = 1) against the teacher's
    argmax."""
    t = temperature
    loss = F.kl_div(F.log_softmax(s_logits / t, 1), F.log_softmax(t_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t
    if feature_weight and s_feat is not None and t_feat is not None:
        loss = loss + feature_weight * (1 - F.cosine_similarity(s_feat, t_feat, dim=1)).mean()
    if hard_weight:
        loss = loss + hard_weight * F.cross_entropy(s_logits, t_logits.argmax(1))
    return loss


def load_teacher(path: str | Path) -> tuple[TileClassifier, dict[str, Any]]:
    """The teacher (eval mode) and its probe checkpoint; errors name the file."""
    ckpt = load_checkpoint(path, "probe")
    try:
        return classifier_from_probe(ckpt), ckpt
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a usable probe checkpoint ({exc})") from exc


#: Tiles per teacher forward on a CPU and on a GPU. Measured on this workplace's 2 cores with
#: the ResNet-18 teacher on 64-px tiles (docs/export.md, "The teacher's batch on a CPU"): 29
#: tiles/s at 1,536 tiles per batch, 34 at 32; a large batch's activations (several GB) are
#: mapped and faulted in afresh at every batch, and set the teacher cache's peak memory.
CPU_TEACHER_BATCH = 64
GPU_TEACHER_BATCH = 2048


def teacher_batch(device: str | torch.device) -> int:
    """The default tiles per teacher forward on ``device``."""
    return GPU_TEACHER_BATCH if torch.device(device).type == "cuda" else CPU_TEACHER_BATCH


@torch.no_grad()
def teacher_outputs(teacher: TileClassifier, tiles: np.ndarray, batch: int | None = None,
                    device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Tiles float32 (N, C, S, S) -> teacher logits (N, K) and features (N, D), float32,
    computed in float32 on ``device`` (a GPU for a large teacher: a ResNet-18 on 64-px tiles
    is 4.4 GFLOPs per tile, about 30 tiles/s on this workplace's 2 CPU cores), ``batch``
    tiles at a time (None: :func:`teacher_batch`)."""
    batch = batch or teacher_batch(device)
    teacher = teacher.eval().to(device, memory_format=CL)
    logits, feats = [], []
    for i in range(0, len(tiles), batch):
        x = torch.from_numpy(tiles[i:i + batch]).to(device).contiguous(memory_format=CL)
        f = teacher.encoder(x)
        feats.append(f.float().cpu().numpy())
        logits.append(teacher.head(f).float().cpu().numpy())
    teacher.cpu()
    return np.concatenate(logits), np.concatenate(feats)


@torch.no_grad()
def student_logits(student: Student, tiles: np.ndarray, batch: int = 2048) -> np.ndarray:
    """Tiles float32 (N, C, S, S) -> student logits float32 (N, K), eval mode."""
    student = student.eval()
    return np.concatenate([student(torch.from_numpy(tiles[i:i + batch])
                                   .contiguous(memory_format=CL)).numpy()
                           for i in range(0, len(tiles), batch)])


def teacher_view(data: TileDataConfig, tckpt: dict[str, Any], where: str = "teacher"
                 ) -> TileDataConfig:
    """The student's data config at the teacher's input size (``tckpt['input']``); raises
    CheckpointError naming ``where`` if the teacher was trained on another tile grid (the
    two would not see the same tiles)."""
    tiling = tckpt.get("tiling") or {}
    grid = {k: tiling.get(k) for k in ("reference_width", "tile", "stride")}
    mine = {"reference_width": data.reference_width, "tile": data.tile, "stride": data.stride}
    if grid != mine:
        raise CheckpointError(f"{where}: teacher tiles {grid}, the data config tiles {mine}")
    return replace(data, tile_pixels=int(tckpt["input"]["tile_pixels"]))


def paired_tiles(student_tiles: np.ndarray, data: TileDataConfig, teacher_data: TileDataConfig,
                 split: str) -> np.ndarray:
    """The teacher's view (N, C, S_t, S_t) of the student's tiles (N, C, S, S) of ``split``:
    the same array when both take the same size, else the same tiles made at the teacher's
    size by the one preprocessing function."""
    if teacher_data == data:
        return student_tiles
    tiles = load_split_tiles(teacher_data, split, with_labels=False).tiles
    _check_paired(len(tiles), len(student_tiles), data, teacher_data, split)
    return tiles


def _check_paired(n_teacher: int, n_student: int, data: TileDataConfig,
                  teacher_data: TileDataConfig, split: str) -> None:
    """Raise DatasetError unless both sizes cut the split into the same number of tiles."""
    if n_teacher != n_student:
        raise DatasetError(f"{data.root}: {n_teacher} {split} tiles at the teacher's "
                           f"{teacher_data.tile_pixels} px, {n_student} at the student's "
                           f"{data.tile_pixels} px")


def _cache_key(cfg: DistillConfig, teacher_data: TileDataConfig) -> str:
    teacher = Path(cfg.teacher)
    digest = hashlib.sha256(teacher.read_bytes()).hexdigest()[:16]
    return json.dumps({"teacher": digest, "data": asdict(teacher_data)}, sort_keys=True)


def _read_cache(cfg: DistillConfig, teacher_data: TileDataConfig,
                names: tuple[str, ...] = ("logits", "features")) -> dict[str, np.ndarray]:
    """Those of the teacher cache's arrays ``names`` that it holds, when it exists and was made
    by this teacher on these tiles (else an empty dict)."""
    cache = Path(cfg.teacher_cache) if cfg.teacher_cache else None
    if cache is None or not cache.is_file():
        return {}
    with np.load(cache) as z:
        if str(z["key"]) != _cache_key(cfg, teacher_data):
            return {}
        return {name: z[name] for name in names if name in z.files}


def write_teacher_cache(cfg: DistillConfig, teacher: TileClassifier,
                        teacher_data: TileDataConfig, device: str | torch.device = "cpu",
                        features: bool = True, log: Callable[[str], None] = print,
                        batch: int | None = None) -> dict[str, np.ndarray]:
    """Compute the teacher's outputs on ``device`` and write ``cfg.teacher_cache`` (npz,
    written to a temporary file, then renamed): ``logits`` (N, K) on the unlabelled train
    tiles, ``features`` (N, D) unless ``features`` is False (a logit-only distillation does
    not read them, and they are most of the file), and ``val_logits`` (M, K) with
    ``val_labels`` (M,) on the scored val tiles; returns those arrays. ``key`` names the
    teacher and its tiles, so a cache made on another machine is used only where the data is
    the same. ``batch``: tiles per teacher forward (None: :func:`teacher_batch`)."""
    if not cfg.teacher_cache:
        raise ValueError("write_teacher_cache needs DistillConfig.teacher_cache")
    t0 = time.perf_counter()
    train = load_split_tiles(teacher_data, "train", with_labels=False).tiles
    logits, feats = teacher_outputs(teacher, train, batch, device)
    val = load_split_tiles(teacher_data, "val").scored()
    val_logits = teacher_outputs(teacher, val.tiles, batch, device)[0]
    log(f"teacher outputs on {len(train)} train and {len(val.tiles)} scored val tiles in "
        f"{time.perf_counter() - t0:.0f} s")
    arrays = {"key": np.array(_cache_key(cfg, teacher_data)), "logits": logits,
              "val_logits": val_logits, "val_labels": val.labels}
    if features:
        arrays["features"] = feats
    cache = Path(cfg.teacher_cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(cache, "wb") as fh:
        np.savez(fh, **arrays)
    return arrays


def cached_val_logits(cfg: DistillConfig, teacher_data: TileDataConfig, labels: np.ndarray
                      ) -> np.ndarray | None:
    """The teacher's logits (M, K) on the scored val tiles from its cache, when the cache holds
    them for exactly these tiles (same labels in the same order), else None."""
    z = _read_cache(cfg, teacher_data, ("val_logits", "val_labels"))
    if "val_logits" in z and np.array_equal(z.get("val_labels"), labels):
        return z["val_logits"]
    return None


def _train_targets(cfg: DistillConfig, teacher: TileClassifier, teacher_data: TileDataConfig,
                   log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unlabelled train tiles at the student's size (N, C, S, S) and the teacher's logits
    (N, K) and features (N, D; D = 0 from a logit-only cache) on the same tiles at its own
    size (``teacher_data``; cached)."""
    tiles = load_split_tiles(cfg.data, "train", with_labels=False).tiles
    z = _read_cache(cfg, teacher_data)
    if len(z.get("logits", ())) == len(tiles):
        log(f"teacher outputs from {cfg.teacher_cache}")
        feats = z.get("features", np.zeros((len(tiles), 0), dtype=np.float32))
        return tiles, z["logits"], feats
    if cfg.teacher_cache:
        z = write_teacher_cache(cfg, teacher, teacher_data, log=log)
        _check_paired(len(z["logits"]), len(tiles), cfg.data, teacher_data, "train")
        return tiles, z["logits"], z["features"]
    t0 = time.perf_counter()
    logits, feats = teacher_outputs(teacher, paired_tiles(tiles, cfg.data, teacher_data,
                                                          "train"))
    log(f"teacher outputs on {len(tiles)} train tiles in {time.perf_counter() - t0:.0f} s")
    return tiles, logits, feats


def compare_on_val(teacher_pred: np.ndarray, student_pred: np.ndarray, labels: np.ndarray,
                   classes: list[str]) -> dict[str, Any]:
    """Student vs teacher on scored tiles: predictions (N,), labels (N,) -> metrics dict with
    ``agreement`` (share of tiles where both predict the same class) and ``kept`` (student
    accuracy / teacher accuracy)."""
    teacher_m = evaluate(teacher_pred, labels, classes)
    student_m = evaluate(student_pred, labels, classes)
    agreement = float((teacher_pred == student_pred).mean()) if len(labels) else float("nan")
    kept = (student_m["accuracy"] / teacher_m["accuracy"]
            if teacher_m["accuracy"] else float("nan"))
    return {"student": student_m, "teacher": teacher_m, "agreement": agreement,
            "accuracy_kept": kept,
            "mean_recall_kept": (student_m["mean_recall"] / teacher_m["mean_recall"]
                                 if teacher_m["mean_recall"] else float("nan"))}


def distill(cfg: DistillConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the student, evaluate it against the teacher on the val split, write ``cfg.out``
    (checkpoint kind 'student'); returns the metrics."""
    if min(cfg.widths) < 8:
        # Measured: torch 2.13's channels-last CPU convolution backward aborts the process
        # (double free) on 4-channel layers; refuse instead of crashing.
        raise ValueError(f"student widths must be at least 8 channels, got {cfg.widths}")
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    teacher, tckpt = load_teacher(cfg.teacher)
    teacher_data = teacher_view(cfg.data, tckpt, cfg.teacher)
    inp = dict(tckpt["input"], tile_pixels=cfg.data.tile_pixels)  # the student's input
    tiles, t_logits, t_feats = _train_targets(cfg, teacher, teacher_data, log)
    if not len(tiles):
        raise DatasetError(f"{cfg.data.root}: no train tiles")
    if cfg.feature_weight and not t_feats.shape[1]:
        raise CheckpointError(f"{cfg.teacher_cache}: the teacher cache holds logits only; "
                              "feature matching needs one made with features")
    classes = list(tckpt["classes"])
    scfg = StudentConfig(int(inp["channels"]), tuple(cfg.widths), tuple(cfg.blocks))
    student = Student(scfg, len(classes)).to(memory_format=CL)
    projector = nn.Linear(scfg.feature_dim, max(1, t_feats.shape[1]))  # used if feature_weight
    params = list(student.parameters()) + (list(projector.parameters())
                                           if cfg.feature_weight else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(tiles)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    budget = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t_train = time.perf_counter()
    step, epoch, stopped, running = 0, 0, "epochs", 0.0
    x_t = torch.from_numpy(tiles)
    tl = torch.from_numpy(t_logits)
    tf = torch.from_numpy(t_feats)
    student.train()
    while epoch < cfg.epochs and stopped == "epochs":
        order = torch.from_numpy(rng.permutation(n))
        for b in range(steps_per_epoch):
            elapsed = time.perf_counter() - t_train
            progress = max(step / total_steps, elapsed / budget)
            if progress >= 1:
                stopped = "time budget" if elapsed >= budget else "epochs"
                break
            for g in opt.param_groups:  # cosine schedule over steps or time, whichever ends first
                g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = resample_views(x_t[idx], cfg.resample_prob, gen).contiguous(memory_format=CL)
            feats = student.features(x)
            logits = student.head(feats)
            loss = distill_loss(logits, tl[idx], cfg.temperature,
                                projector(feats) if cfg.feature_weight else None, tf[idx],
                                cfg.feature_weight, cfg.hard_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            step += 1
            if step % 200 == 0:
                rate = step * cfg.batch_size / (time.perf_counter() - t_train)
                log(f"step {step} epoch {epoch} loss {running:.4f} "
                    f"lr {opt.param_groups[0]['lr']:.2e} {rate:.0f} tiles/s")
        else:
            epoch += 1
            continue
        break
    train_s = time.perf_counter() - t_train
    log(f"trained {step} steps ({step * cfg.batch_size / n:.2f} epochs) in {train_s:.0f} s, "
        f"stopped by {stopped}")
    student.eval()
    metrics = evaluate_student(student, teacher, cfg.data, classes, cfg.eval_batch,
                               teacher_data, cfg)
    metrics |= {"steps": step, "epochs_seen": round(step * cfg.batch_size / n, 3),
                "train_tiles": int(n), "train_seconds": round(train_s, 1),
                "stopped_by": stopped}
    save_atomic({
        "kind": "student",
        "student_config": scfg.to_dict(),
        "state_dict": student.to(memory_format=torch.contiguous_format).state_dict(),
        "classes": classes,
        "input": inp,
        "tiling": tckpt["tiling"],
        "teacher_checkpoint": str(cfg.teacher),
        "teacher_metrics": tckpt.get("metrics"),
        "distill_config": asdict(cfg),
        "metrics": metrics,
        "training_runs": {"distill": training_run(metrics)},
        "git_revision": git_revision(),
    }, cfg.out)
    log(json.dumps({"student_accuracy": metrics["student"]["accuracy"],
                    "teacher_accuracy": metrics["teacher"]["accuracy"],
                    "agreement": metrics["agreement"]})
        + f" in {time.perf_counter() - t_start:.0f} s")
    return metrics


RUN_FIELDS = ("steps", "epochs_seen", "train_tiles", "train_seconds", "stopped_by")


def training_run(metrics: dict[str, Any]) -> dict[str, Any]:
    """How far a distillation or QAT run went, from its metrics: steps, passes over its train
    tiles, seconds, and what stopped it (``epochs``/``steps``, or ``time budget``: then its
    learning-rate schedule followed the clock, and the model depends on the machine's speed)."""
    return {k: metrics[k] for k in RUN_FIELDS if k in metrics}


def scored_val(data: TileDataConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The scored val tiles at ``data``'s size (N, C, S, S), their labels (N,) and the number
    of val frames; DatasetError when there are none."""
    val = load_split_tiles(data, "val").scored()
    if not len(val.labels):
        raise DatasetError(f"{data.root}: no scored val tiles to evaluate on")
    return val.tiles, val.labels, len(val.ids)


def teacher_val_logits(teacher: TileClassifier, tiles: np.ndarray, labels: np.ndarray,
                       data: TileDataConfig, teacher_data: TileDataConfig | None = None,
                       cfg: DistillConfig | None = None) -> np.ndarray:
    """The teacher's logits (M, K) on the scored val tiles (``tiles``, ``labels``: the
    student's, made with ``data``): from its cache (``cfg.teacher_cache``) when that holds
    them, else computed here on the same tiles made at its own size (``teacher_data``), which
    are loaded only then."""
    if cfg is not None and teacher_data is not None:
        cached = cached_val_logits(cfg, teacher_data, labels)
        if cached is not None:
            return cached
    if teacher_data is not None and teacher_data != data:
        t_tiles, t_labels, _ = scored_val(teacher_data)
        if not np.array_equal(t_labels, labels):
            raise DatasetError(f"{data.root}: the scored val tiles differ between "
                               f"{data.tile_pixels} and {teacher_data.tile_pixels} px")
        tiles = t_tiles
    return teacher_outputs(teacher, tiles)[0]


def evaluate_student(student: Student, teacher: TileClassifier, data: TileDataConfig,
                     classes: list[str], batch: int = 2048,
                     teacher_data: TileDataConfig | None = None,
                     cfg: DistillConfig | None = None) -> dict[str, Any]:
    """Student vs teacher on the scored val tiles (see :func:`compare_on_val`); the teacher
    sees them at ``teacher_data``'s size where given, its answers read from ``cfg``'s teacher
    cache when that holds them."""
    tiles, labels, frames = scored_val(data)
    t_logits = teacher_val_logits(teacher, tiles, labels, data, teacher_data, cfg)
    s_logits = student_logits(student, tiles, batch)
    return compare_on_val(t_logits.argmax(1), s_logits.argmax(1), labels, classes) | {
        "split": "validation (clock-ordered, latest 20% of frames), scored tiles",
        "val_frames": frames}


def recorded_data(ckpt: dict[str, Any], where: str = "checkpoint") -> TileDataConfig:
    """The data config a 'student' checkpoint was distilled with; CheckpointError naming
    ``where`` when none usable is recorded."""
    try:
        return TileDataConfig(**ckpt["distill_config"]["data"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: no usable data config recorded ({exc})") from exc


def student_from_checkpoint(ckpt: dict[str, Any], where: str = "checkpoint") -> Student:
    """Rebuild the student (eval mode) from a 'student' checkpoint dict; a state dict that does
    not fit the recorded architecture raises CheckpointError naming ``where``."""
    try:
        cfg = StudentConfig.from_dict(ckpt["student_config"])
        model = Student(cfg, len(ckpt["classes"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: the weights do not fit the recorded student "
                              f"architecture ({type(exc).__name__}: {exc})") from exc
    return model.eval()
