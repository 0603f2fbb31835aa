"""Whole-image inputs (MSL, HiRISE) through edge's one preprocessing function.

An image becomes one network input: the centred square of side min(H, W), scaled to
``spec.tile_pixels`` by :func:`edge.preprocess.frame_to_tiles` on a one-tile grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.decode import FrameError, read_image
from edge.preprocess import InputSpec, frame_to_tiles
from edge.tiling import TilingSpec
from train.datasets.errors import DatasetError


def whole_image_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Decoded image (H, W[, C]) -> float32 (C, S, S): the centred square of side min(H, W),
    as the one tile of a one-tile grid.

    (The square is cut out first: the middle tile of a grid over the whole image is not the
    centred square, since the grid's last tile is aligned to the far edge.)"""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side]
    tiled = frame_to_tiles(square, spec, TilingSpec(reference_width=side, tile=side, stride=side))
    return tiled.tiles[0]


def load_whole_images(paths: Sequence[Path], spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Images -> inputs float32 (N, C, S, S) and a bool (len(paths),) mask of those read.

    Unreadable images are skipped with a warning naming them; none readable is an error.
    """
    out, ok = [], np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            out.append(whole_image_input(read_image(path), spec))
            ok[i] = True
        except FrameError as exc:
            print(f"warning: skipping image: {exc}")
    if not out:
        raise DatasetError(f"none of the {len(paths)} requested images is readable "
                           f"(first: {paths[0] if paths else 'none'})")
    return np.stack(out), ok
