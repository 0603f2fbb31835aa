"""A picture of what :func:`train.augment.augment` does to real tiles.

One row per tile: the un-augmented tile first, then ``views`` augmented views, each
upscaled with nearest neighbour and separated by a small gap, de-normalised back to 8-bit
grey (or BGR for 3-channel input).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.atomic_file import write_bytes_atomic
from train.augment import AugmentConfig, augment

GAP = 2  # pixels between the cells of the grid
GAP_VALUE = 0  # the gap is black


def _to_uint8(tiles: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised (N, C, S, S) -> uint8 (N, S, S, C) with ``x * std + mean`` scaled to 0..255."""
    c = tiles.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need one value per channel ({c}), got {mean}, {std}")
    m = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
    unit = tiles.detach().float().cpu() * s + m
    out = np.clip(np.round(unit.numpy() * 255.0), 0, 255).astype(np.uint8)
    return out.transpose(0, 2, 3, 1)


def augment_grid(tiles: torch.Tensor, cfg: AugmentConfig, views: int = 6, seed: int = 0,
                 scale: int = 4, mean: Sequence[float] = (0.5,),
                 std: Sequence[float] = (0.25,)) -> np.ndarray:
    """Grid image of tiles and their augmented views.

    tiles: float (N, C, S, S), normalised as ``(x - mean) / std`` (the default mean/std are
    the grey input spec's). Returns uint8 (H, W) for C == 1, (H, W, 3) BGR for C == 3, with
    H = N * S * scale + (N - 1) * GAP and W = (views + 1) * S * scale + views * GAP. Column 0
    is the original tile; columns 1..views are ``augment`` views drawn from one generator
    seeded with ``seed`` (each view is one ``augment`` call over all N tiles), so the same
    arguments give the same image.
    """
    if tiles.ndim != 4 or tiles.shape[-1] != tiles.shape[-2] or tiles.shape[1] not in (1, 3):
        raise ValueError(f"expected tiles (N, 1 or 3, S, S), got {tuple(tiles.shape)}")
    if tiles.shape[0] < 1 or views < 0 or scale < 1:
        raise ValueError(f"need at least one tile, views >= 0 and scale >= 1 "
                         f"(got {tiles.shape[0]} tiles, views={views}, scale={scale})")
    x = tiles.detach().float().cpu()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        columns = [x] + [augment(x, cfg, gen) for _ in range(views)]
    cells = [_to_uint8(col, mean, std) for col in columns]  # each (N, S, S, C)
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    cell = size * scale
    height = n * cell + (n - 1) * GAP
    width = len(columns) * cell + (len(columns) - 1) * GAP
    grid = np.full((height, width, c), GAP_VALUE, dtype=np.uint8)
    for j, col in enumerate(cells):
        big = col.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest neighbour
        x0 = j * (cell + GAP)
        for i in range(n):
            y0 = i * (cell + GAP)
            grid[y0 : y0 + cell, x0 : x0 + cell] = big[i]
    return grid[..., 0] if c == 1 else grid


def write_png_atomic(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Encode uint8 (H, W) or (H, W, 3) as PNG and write it atomically; creates the folder."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cv2 could not encode an image of shape {image.shape} as PNG")
    return write_bytes_atomic(path, buf.tobytes())


def pick_textured(tiles: np.ndarray, count: int, pool_factor: int = 4) -> np.ndarray:
    """Indices of ``count`` tiles worth looking at: a sample of ``count * pool_factor`` tiles
    spread evenly over the (frame-ordered) tiles, of which the ``count`` with the highest pixel
    standard deviation are kept (flat sky or shadow tiles show little of what the photometric
    augmentations do). Returned in their original order; all indices when there are fewer
    tiles than ``count``."""
    n = len(tiles)
    if count >= n:
        return np.arange(n)
    pool = np.unique(np.linspace(0, n - 1, num=min(n, count * pool_factor)).round().astype(int))
    stds = tiles[pool].reshape(len(pool), -1).std(axis=1)
    keep = pool[np.argsort(-stds, kind="stable")[:count]]
    return np.sort(keep)
