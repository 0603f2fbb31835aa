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

# One tile per image: the centred square, at any reference width (227, MSL's image size).
WHOLE_IMAGE_TILING = TilingSpec(reference_width=227, tile=227, stride=227, crop="centre-square")


def whole_image_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Decoded image (H, W[, C]) -> float32 (C, S, S): the centred square of side min(H, W),
    as the one tile of :data:`WHOLE_IMAGE_TILING` (what a whole-image bundle declares)."""
    return frame_to_tiles(image, spec, WHOLE_IMAGE_TILING).tiles[0]


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
