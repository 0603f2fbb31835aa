"""Tile grids defined at a reference frame width.

A tile is specified at a *reference width*: a frame of any resolution is scaled
(keeping its aspect ratio) so that its width equals the reference width, and the
grid is laid out there. One tile therefore covers the same terrain whatever the
camera's resolution. Boxes are reported in the original frame's pixels.

A grid may first crop the frame to its centred square (``crop="centre-square"``): with a
tile as wide as the reference width, each frame is then one tile, the way whole-image
classifiers (MSL Mastcam/MAHLI triage) see their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A frame at most this many times as high as wide is tiled. A taller one (a 1-pixel-wide
# strip, a hostile file) would be scaled up to a reference-width frame of absurd height:
# a 1 x 5000 PNG would become 256 x 1 280 000 pixels, 40 000 tiles and gigabytes of floats.
MAX_ASPECT = 16
CROPS = ("none", "centre-square")


class TilingError(ValueError):
    """A frame cannot be tiled with the given specification."""


@dataclass(frozen=True)
class TilingSpec:
    """Tile size and stride, in pixels of a frame scaled to ``reference_width``; ``crop``:
    ``"none"`` (tile the whole frame) or ``"centre-square"`` (tile its centred square)."""

    reference_width: int = 256
    tile: int = 32
    stride: int = 32
    crop: str = "none"

    def __post_init__(self) -> None:
        if self.reference_width <= 0 or self.tile <= 0 or self.stride <= 0:
            raise TilingError(f"tiling sizes must be positive, got {self}")
        if self.tile > self.reference_width:
            raise TilingError(f"tile {self.tile} is wider than the reference width")
        if self.crop not in CROPS:
            raise TilingError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")


def crop_box(width: int, height: int, spec: TilingSpec) -> tuple[int, int, int, int]:
    """The part ``(x, y, w, h)`` of a ``width`` x ``height`` frame that the grid covers: the
    whole frame, or its centred square of side min(width, height)."""
    if spec.crop == "centre-square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    return 0, 0, width, height


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile start offsets along one axis; a last tile is aligned to the far edge if needed."""
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def reference_size(width: int, height: int, spec: TilingSpec) -> tuple[int, int]:
    """Size ``(width, height)`` of a ``width`` x ``height`` frame scaled to the reference width."""
    ref_h = max(1, round(height * spec.reference_width / width))
    return spec.reference_width, ref_h


def tile_boxes(width: int, height: int, spec: TilingSpec) -> tuple[np.ndarray, np.ndarray]:
    """Tile grid of a frame.

    Returns ``(ref_boxes, boxes)``, both int64 arrays of shape (N, 4) holding
    ``x, y, w, h``: ``ref_boxes`` at the reference scale, ``boxes`` in the
    original frame's pixels (clipped to the frame). Tiles are ordered row-major.
    Raises TilingError when the frame is smaller than one tile at reference scale, or more
    than :data:`MAX_ASPECT` times as high as wide.
    """
    if width <= 0 or height <= 0:
        raise TilingError(f"frame has no pixels ({width}x{height})")
    ref_w, ref_h = reference_size(width, height, spec)
    if ref_h < spec.tile:
        raise TilingError(
            f"frame {width}x{height} is smaller than one tile: at the reference width "
            f"{spec.reference_width} it is {ref_h} px high, a tile is {spec.tile} px"
        )
    if ref_h > MAX_ASPECT * ref_w:
        raise TilingError(
            f"frame {width}x{height} is too tall for its width: at the reference width "
            f"{spec.reference_width} it would be {ref_h} px high, more than {MAX_ASPECT} "
            "times its width"
        )
    ys = _starts(ref_h, spec.tile, spec.stride)
    xs = _starts(ref_w, spec.tile, spec.stride)
    grid = np.array([(x, y) for y in ys for x in xs], dtype=np.int64)
    ref_boxes = np.column_stack([grid, np.full((len(grid), 2), spec.tile, dtype=np.int64)])
    sx, sy = width / ref_w, height / ref_h
    x0 = np.floor(ref_boxes[:, 0] * sx).astype(np.int64)
    y0 = np.floor(ref_boxes[:, 1] * sy).astype(np.int64)
    x1 = np.minimum(np.ceil((ref_boxes[:, 0] + spec.tile) * sx).astype(np.int64), width)
    y1 = np.minimum(np.ceil((ref_boxes[:, 1] + spec.tile) * sy).astype(np.int64), height)
    boxes = np.column_stack([x0, y0, x1 - x0, y1 - y0])
    return ref_boxes, boxes
