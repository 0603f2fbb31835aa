"""Atomic checkpoints that record the run's config and the project revision."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from edge.atomic_file import write_bytes_atomic
from train.revision import git_revision  # noqa: F401  (re-exported: callers import it here)


def on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside dicts, lists and tuples moved to the CPU (others kept
    as they are), so that a checkpoint made on a GPU loads anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.cpu()
    if isinstance(obj, dict):
        return type(obj)((k, on_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save ``obj`` to ``path`` atomically (serialised in memory, then written to a
    temporary sibling, fsynced and renamed), with its tensors on the CPU (:func:`on_cpu`)."""
    buf = io.BytesIO()
    torch.save(on_cpu(obj), buf)
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
