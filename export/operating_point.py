"""Move a student's operating point for one class: add an offset to that class's logit (the
head's bias), chosen from a sweep on validation tiles, and write the shifted student.

Why: a linear head trained with class-balanced weights on the training period can still find
few tiles of a rare class in a later drive period (the ResNet-18 probe's students find about
5% of AI4Mars 'big rock' validation tiles, docs/export.md). Adding ``b`` to class k's logit is
the whole family of decision rules between "as trained" and "always k"; a sweep shows what
each ``b`` costs in accuracy and buys in that class's recall, so the choice is made in the
open, with numbers, instead of hidden in a loss weight.

The shift is exact and free: only the head's bias changes, which stays float in every INT8
variant that keeps the head float (``-headfp``) and is never rounded to a weight grid, so a
``--snap-weights`` QAT student keeps its weights on their int8 grid.

The offset is chosen on **validation** tiles (the withheld test sets are not used); the sweep
is written beside the checkpoint so the figures can be labelled as such.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.atomic_file import write_bytes_atomic
from export.distill import (
    DistillConfig,
    compare_on_val,
    load_teacher,
    recorded_data,
    scored_val,
    student_from_checkpoint,
    student_logits,
    teacher_val_logits,
    teacher_view,
)
from export.student import Student
from train.checkpoint import CheckpointError, git_revision, load_checkpoint, save_atomic
from train.datasets.errors import DatasetError
from train.metrics import evaluate
from train.tiles import TileDataConfig

#: What an offset is chosen by when none is given: mean per-class recall or accuracy on the
#: validation tiles (see :func:`choose_offset`).
CRITERIA = ("mean_recall", "accuracy")


def default_offsets() -> tuple[float, ...]:
    """0, 0.25, ..., 4: the default sweep."""
    return tuple(round(0.25 * i, 2) for i in range(17))


@dataclass
class OperatingPointConfig:
    """Shift ``class_name``'s logit of the student checkpoint ``student`` and write ``out``.

    ``offset`` None: choose it from ``offsets`` by ``criterion`` (within ``tolerance`` of the
    best, the offset nearest zero; :func:`choose_offset`) on the scored val tiles of
    ``max_val_frames`` frames (None: the whole split) under ``data_root`` (None: the
    student's own data folder). The checkpoint's metrics are recomputed on the val tiles the
    student was distilled with (its teacher compared from ``teacher_cache`` when given and
    valid, else run)."""

    student: str
    out: str
    class_name: str = "big rock"
    offsets: tuple[float, ...] = default_offsets()
    offset: float | None = None
    criterion: str = "mean_recall"
    tolerance: float = 0.002
    data_root: str | None = None
    max_val_frames: int | None = None
    teacher_cache: str | None = None
    batch: int = 2048
    threads: int = 2

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got '{self.criterion}'")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if self.offset is None and not self.offsets:
            raise ValueError("give an offset or a non-empty sweep of offsets")


def offset_sweep(logits: np.ndarray, labels: np.ndarray, k: int, offsets: Sequence[float],
                 classes: list[str]) -> list[dict[str, Any]]:
    """For each offset b: the metrics of argmax(logits + b e_k) against labels.

    logits (N, K) float, labels (N,) int; returns one row per offset with ``offset``,
    ``accuracy``, ``mean_recall``, ``per_class_recall`` (by class name) and ``predicted``
    (how many tiles each class gets)."""
    rows = []
    for b in offsets:
        shifted = logits.copy()
        shifted[:, k] += b
        pred = shifted.argmax(1)
        m = evaluate(pred, labels, classes)
        rows.append({"offset": float(b), "accuracy": m["accuracy"],
                     "mean_recall": m["mean_recall"], "per_class_recall": m["per_class_recall"],
                     "predicted": {c: int((pred == i).sum()) for i, c in enumerate(classes)}})
    return rows


def choose_offset(rows: list[dict[str, Any]], criterion: str = "mean_recall",
                  tolerance: float = 0.0) -> float:
    """The swept offset nearest zero (the smallest change to the trained rule) among those
    whose ``criterion`` is within ``tolerance`` of the sweep's highest.

    A tolerance keeps a flat top from buying a sliver of the criterion with a large change:
    on AI4Mars validation one big-rock tile is 0.0012 of mean recall, and mean recall between
    offsets 2.5 and 3.5 varied by 0.0018 (one and a half tiles) while accuracy fell 3.7
    points."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got '{criterion}'")
    if not rows:
        raise ValueError("no sweep rows to choose from")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    finite = [r for r in rows if math.isfinite(r[criterion])]
    if not finite:
        raise ValueError(f"{criterion} is undefined (NaN) at every swept offset")
    best = max(r[criterion] for r in finite)
    near = [r for r in finite if r[criterion] >= best - tolerance - 1e-12]
    return min(near, key=lambda r: (abs(r["offset"]), r["offset"]))["offset"]


def shift_head_bias(student: Student, k: int, offset: float) -> Student:
    """A copy of ``student`` whose class-k logit is ``offset`` higher on every input (its
    head's bias k shifted); the other logits and all weights are unchanged."""
    shifted = copy.deepcopy(student)
    with torch.no_grad():
        shifted.head.bias[k] += offset
    return shifted.eval()


def _class_index(classes: list[str], name: str, where: str) -> int:
    if name not in classes:
        raise CheckpointError(f"{where}: no class '{name}' (classes: {', '.join(classes)})")
    return classes.index(name)


def operating_point(cfg: OperatingPointConfig, log: Callable[[str], None] = print
                    ) -> dict[str, Any]:
    """Sweep, choose (or take) the offset, write ``cfg.out`` (a 'student' checkpoint with the
    shifted head and ``operating_point``: class, offset, how it was chosen, the sweep) and
    ``cfg.out`` + ``.sweep.json``; returns the ``operating_point`` record. Bad input raises
    CheckpointError / DatasetError naming the file; nothing is written then."""
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, cfg.threads))
    ckpt = load_checkpoint(cfg.student, "student")
    student = student_from_checkpoint(ckpt, cfg.student)
    classes = list(ckpt.get("classes", []))
    k = _class_index(classes, cfg.class_name, cfg.student)
    data = recorded_data(ckpt, cfg.student)
    if cfg.data_root is not None:
        data = replace(data, root=cfg.data_root)
    sweep_data = replace(data, max_val_frames=cfg.max_val_frames)

    tiles, labels, frames = scored_val(sweep_data)
    logits = student_logits(student, tiles, cfg.batch)
    rows = offset_sweep(logits, labels, k, cfg.offsets, classes)
    chosen_by = ("given" if cfg.offset is not None else
                 f"nearest zero within {cfg.tolerance:g} of the sweep's highest {cfg.criterion}")
    if cfg.offset is None and not any(math.isfinite(r[cfg.criterion]) for r in rows):
        raise DatasetError(
            f"{data.root}: the {len(labels)} scored val tiles of {frames} frames leave "
            f"{cfg.criterion} undefined (no class has 10 tiles); give more --max-val-frames, "
            "--criterion accuracy, or --offset")
    offset = (float(cfg.offset) if cfg.offset is not None
              else choose_offset(rows, cfg.criterion, cfg.tolerance))
    if cfg.offset is not None and all(r["offset"] != offset for r in rows):
        rows += offset_sweep(logits, labels, k, [offset], classes)
    log(f"{len(labels)} scored val tiles of {frames} frames; '{cfg.class_name}' offset "
        f"{offset:g} ({chosen_by})")

    shifted = shift_head_bias(student, k, offset)
    # the metrics' tiles are the sweep's when the student was distilled on the same val frames
    same = sweep_data == data
    metrics = _recomputed_metrics(ckpt, shifted, data, classes, cfg,
                                  (tiles, labels, frames) if same else None)
    del tiles
    record = {"class": cfg.class_name, "class_index": k, "offset": offset,
              "chosen_by": chosen_by, "criterion": cfg.criterion, "tolerance": cfg.tolerance,
              "split": "validation (clock-ordered, latest 20% of frames), scored tiles",
              "val_frames": frames, "tiles": int(len(labels)),
              "source_student": str(cfg.student),
              # a student shifted before keeps that shift too (this sweep is relative to it)
              "previous": manifest_record(ckpt), "sweep": rows}
    out = Path(cfg.out)
    save_atomic({**ckpt, "state_dict": shifted.state_dict(), "metrics": metrics,
                 "operating_point": record, "operating_point_config": asdict(cfg),
                 "git_revision": git_revision()}, out)
    sweep_path = out.with_name(out.name + ".sweep.json")
    write_bytes_atomic(sweep_path, json.dumps(record, indent=1).encode())
    log(f"wrote {out} and {sweep_path} in {time.perf_counter() - t0:.0f} s")
    return record


def manifest_record(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's operating-point record without its sweep table (what a manifest, or
    a later shift's ``previous``, carries), or None for a student never shifted."""
    record = ckpt.get("operating_point")
    return None if record is None else {k: v for k, v in record.items() if k != "sweep"}


def _recorded_cache(ckpt: dict[str, Any]) -> str | None:
    """The teacher cache the student's QAT or distillation run read, if any (it is used only
    when its key matches the teacher and the tiles)."""
    for section in ("qat_config", "distill_config"):
        cache = (ckpt.get(section) or {}).get("teacher_cache")
        if cache:
            return str(cache)
    return None


def _recomputed_metrics(ckpt: dict[str, Any], shifted: Student, data: TileDataConfig,
                        classes: list[str], cfg: OperatingPointConfig,
                        val: tuple[np.ndarray, np.ndarray, int] | None = None
                        ) -> dict[str, Any]:
    """Student vs its teacher (see :func:`export.distill.compare_on_val`) on the val tiles the
    student was distilled with (``val``: those tiles, labels and frame count where already
    loaded), for the shifted student; the teacher's rule is not shifted. The unshifted
    student's accuracy and mean recall stay as ``before_operating_point``."""
    teacher_path = ckpt.get("teacher_checkpoint")
    if not teacher_path or not Path(teacher_path).is_file():
        raise CheckpointError(f"{cfg.student}: its teacher {teacher_path} is not there; the "
                              "shifted student's metrics compare it with its teacher")
    teacher, tckpt = load_teacher(teacher_path)
    teacher_data = teacher_view(data, tckpt, str(teacher_path))
    dcfg = DistillConfig(teacher=str(teacher_path), data=data,
                         teacher_cache=cfg.teacher_cache or _recorded_cache(ckpt))
    tiles, labels, frames = val if val is not None else scored_val(data)
    s_pred = student_logits(shifted, tiles, cfg.batch).argmax(1)
    t_pred = teacher_val_logits(teacher, tiles, labels, data, teacher_data,
                                dcfg).argmax(1)
    before = (ckpt.get("metrics") or {}).get("student") or {}
    return compare_on_val(t_pred, s_pred, labels, classes) | {
        "split": "validation (clock-ordered, latest 20% of frames), scored tiles",
        "val_frames": frames,
        "before_operating_point": {k: before.get(k) for k in ("accuracy", "mean_recall",
                                                             "per_class_recall")}}
