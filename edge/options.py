"""Typed options of a classify run: what the library function takes, what the CLI fills in."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.bundle import DEFAULT_MODEL

FORMATS = ("jsonl", "csv")
UNCERTAIN = "uncertain"


class OptionsError(ValueError):
    """An option value that cannot work; the message says which and why."""


@dataclass
class ClassifyOptions:
    """One ``edge classify`` run.

    source: what to classify (directory, glob, image, video, camera index).
    out_dir: where the outputs go. model/backend/threads: the bundle and how it runs.
    max_frames: consider only the first N frames of the source. stride: tile stride in
    reference pixels (None: the manifest's). min_confidence: tiles whose best class has a
    lower softmax probability are labelled ``uncertain``. formats: ``jsonl`` and/or ``csv``.
    overlay: write one PNG per frame and a contact sheet. resume: continue an interrupted
    run in out_dir. overwrite: replace a completed run in out_dir.
    """

    source: str
    out_dir: Path = Path("out/classify")
    model: str = DEFAULT_MODEL
    backend: str = "onnxruntime"
    threads: int = 1
    recursive: bool = False
    max_frames: int | None = None
    stride: int | None = None
    min_confidence: float | None = None
    formats: tuple[str, ...] = ("jsonl",)
    overlay: bool = False
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.formats = tuple(self.formats)
        if self.threads < 1:
            raise OptionsError(f"--threads must be at least 1, got {self.threads}")
        if self.max_frames is not None and self.max_frames < 1:
            raise OptionsError(f"--max-frames must be at least 1, got {self.max_frames}")
        if self.stride is not None and self.stride < 1:
            raise OptionsError(f"--stride must be at least 1 reference pixel, got {self.stride}")
        mc = self.min_confidence
        if mc is not None and not (isinstance(mc, (int, float)) and math.isfinite(mc)
                                   and 0.0 < mc <= 1.0):
            raise OptionsError(f"--min-confidence must be in (0, 1], got {mc}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats or len(set(self.formats)) != len(self.formats):
            raise OptionsError(
                f"--format must be {' or '.join(FORMATS)} (or both, comma-separated), "
                f"got '{','.join(self.formats)}'"
            )
        if self.resume and self.overwrite:
            raise OptionsError("--resume and --overwrite contradict each other; give one")

    def to_json(self) -> dict[str, Any]:
        """The options as a JSON-ready dict (for run.json)."""
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["formats"] = list(self.formats)
        return data

    def source_key(self) -> str:
        """The source as an absolute path (or the camera index / glob as given), to compare
        an interrupted run with its resumption."""
        if self.source.isdigit() and not Path(self.source).exists():
            return self.source
        return os.path.abspath(self.source)


def parse_formats(text: str) -> tuple[str, ...]:
    """``"jsonl"``, ``"csv"`` or ``"jsonl,csv"`` -> a tuple of format names."""
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())
