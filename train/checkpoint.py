"""Atomic checkpoints that record the run's config and the project revision."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from edge.atomic_file import write_bytes_atomic
from train.revision import git_revision  # noqa: F401  (re-exported: callers import it here)


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save ``obj`` to ``path`` atomically (serialised in memory, then written to a
    temporary sibling, fsynced and renamed)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes_atomic(path, buf.getvalue())


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not of the expected kind."""


def load_checkpoint(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Load a checkpoint written by this project and check its ``kind`` field."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for bad files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        found = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: expected a '{kind}' checkpoint, found {found!r}")
    return obj
