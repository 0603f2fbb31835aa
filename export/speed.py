"""Side-by-side speed: the teacher in torch eager, the float student and the INT8 student in
ONNX Runtime, on the same frames through the same per-frame pipeline.

Every model runs inside edge's :class:`~edge.classify.FrameClassifier` (decode, edge's
preprocessing, one batch per frame, softmax and argmax), and each frame's tile records are
built and written as ``edge classify`` does; only the runner differs. The teacher's runner
wraps the torch module (``torch.no_grad``, eval mode), which is why this lives in
``export/``: ``edge/`` never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.bench import markdown_table, median_ratio, summarize_rounds, time_interleaved
from edge.bundle import Bundle
from edge.classify import FrameClassifier
from edge.cpu_info import cpu_info
from edge.preprocess import InputSpec
from edge.run import apply_thread_budget
from edge.runners import make_runner
from edge.sources import FrameRef
from export.distill import load_teacher


class TorchRunner:
    """The runner interface over a torch module: tiles (N, C, S, S) -> logits (N, K)."""

    name = "torch"

    def __init__(self, module: torch.nn.Module):
        self.module = module.eval()

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Logits float32 (N, K)."""
        with torch.no_grad():
            return self.module(torch.from_numpy(tiles)).numpy()


@dataclass
class SpeedConfig:
    """Thread counts, passes over the frames per round, untimed warm-up frames, and the
    interleaved rounds (:func:`edge.bench.time_interleaved`)."""

    threads: tuple[int, ...] = (1, 2)
    repeats: int = 3
    warmup: int = 5
    rounds: int = 5


def teacher_bundle_view(student: Bundle, teacher_input: dict[str, Any]) -> Bundle:
    """The student's bundle as the teacher's frame pipeline sees it: the same tiling, and the
    teacher's own input (a 64-px teacher of a 32-px student gets 64-px tiles, as it was
    trained and distilled with)."""
    spec = InputSpec(int(teacher_input["tile_pixels"]), int(teacher_input["channels"]),
                     tuple(teacher_input["mean"]), tuple(teacher_input["std"]))
    if spec == student.manifest.input:
        return student
    return replace(student, manifest=replace(student.manifest, input=spec))


def side_by_side(teacher: str | Path, student: Bundle, int8: Bundle, frames: list[FrameRef],
                 cfg: SpeedConfig) -> list[dict[str, Any]]:
    """One row per (thread count, model): teacher (torch eager), student fp32 and student INT8
    (ONNX Runtime), timed interleaved; figures are medians over the rounds, and ``x_teacher``
    and ``x_fp32`` the medians of the per-round tiles/s ratios within a thread count."""
    model, tckpt = load_teacher(teacher)
    teacher_view = teacher_bundle_view(student, tckpt["input"])
    rows = []
    for threads in cfg.threads:
        apply_thread_budget(threads)
        torch.set_num_threads(threads)
        group = [
            ("teacher", "torch eager", FrameClassifier(teacher_view, TorchRunner(model))),
            ("student fp32", "onnxruntime", FrameClassifier(
                student, make_runner(student, "onnxruntime", threads))),
            ("student int8", "onnxruntime", FrameClassifier(
                int8, make_runner(int8, "onnxruntime", threads))),
        ]
        runs = time_interleaved([(label, c) for label, _, c in group], frames, cfg.warmup,
                                cfg.repeats, cfg.rounds)
        for label, backend, _ in group:
            rows.append({"model": label, "backend": backend, "threads": threads,
                         **summarize_rounds(runs[label]),
                         "x_teacher": median_ratio(runs[label], runs["teacher"]),
                         "x_fp32": median_ratio(runs[label], runs["student fp32"]),
                         "cpu": cpu_info().describe()})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`side_by_side` as a Markdown table."""
    return markdown_table(rows, ["model", "backend", "threads", "frames", "tiles_per_s",
                                 "p50_ms", "p99_ms", "x_teacher", "x_fp32"])
