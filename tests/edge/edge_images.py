"""Tiny synthetic frames for the edge/ tests (a module of its own, not conftest, so that test
files can import it whatever other conftest.py files pytest has loaded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def synthetic_frame(height: int, width: int, channels: int = 0, dtype: type = np.uint8,
                    seed: int = 0) -> np.ndarray:
    """A smooth, textured test picture (H, W) or (H, W, channels): gradients plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    shape = (height, width) if channels == 0 else (height, width, channels)
    if channels:
        base = base[:, :, None] * np.linspace(0.6, 1.0, channels, dtype=np.float32)
    unit = np.clip(base + rng.normal(0, 0.05, shape).astype(np.float32), 0, 1)
    top = np.iinfo(dtype).max
    return np.round(unit * top).astype(dtype)


def write_frame(path: Path, image: np.ndarray) -> Path:
    """cv2.imwrite that fails loudly; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), f"cv2.imwrite failed for {path}"
    return path


