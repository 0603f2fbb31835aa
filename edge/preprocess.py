"""The one preprocessing function: a decoded frame to normalised network tiles.

Training evaluation, calibration, the runtime and the simulator all call
:func:`frame_to_tiles`, so that what the network sees never differs between
training and flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.tiling import TilingSpec, crop_box, reference_size, tile_boxes


@dataclass(frozen=True)
class InputSpec:
    """What the network takes: square tiles of ``tile_pixels``, ``channels`` (1 grey, 3 BGR),
    values scaled to [0, 1] then normalised as ``(x - mean) / std`` per channel."""

    tile_pixels: int = 32
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if min(self.std) <= 0:
            raise ValueError("std must be positive")


@dataclass
class TiledFrame:
    """Network input for one frame.

    tiles: float32 (N, C, S, S), normalised; boxes: int64 (N, 4) ``x, y, w, h`` in the
    original frame's pixels; ref_boxes: the same boxes at the reference scale.
    """

    tiles: np.ndarray
    boxes: np.ndarray
    ref_boxes: np.ndarray
    width: int
    height: int
    extra: dict = field(default_factory=dict)


def to_unit_float(image: np.ndarray, channels: int) -> np.ndarray:
    """Decoded image (H, W), (H, W, 3 BGR) or (H, W, 4 BGRA), uint8/uint16/float in [0, 1]
    -> float32 (H, W, channels) in [0, 1]."""
    if image.dtype == np.uint8:
        img = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        img = image.astype(np.float32) / 65535.0
    elif np.issubdtype(image.dtype, np.floating):
        img = np.clip(image.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if channels == 1 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    elif channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def _raw_float(image: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Decoded image -> (float32 (H, W, 1|3) of its raw values, alpha dropped; the factor
    that maps them to [0, 1]). Float images are clipped to [0, 1] (factor 1); ValueError
    if one holds NaN or infinite values."""
    if image.dtype == np.uint8:
        unit = np.float32(1 / 255.0)
    elif image.dtype == np.uint16:
        unit = np.float32(1 / 65535.0)
    elif np.issubdtype(image.dtype, np.floating):
        unit = np.float32(1.0)
    else:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    img = image[:, :, None] if image.ndim == 2 else image
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    img = img.astype(np.float32)
    if unit == 1.0:
        bad = int(img.size - np.count_nonzero(np.isfinite(img)))
        if bad:
            # np.clip keeps NaN, and a NaN tile would get a made-up label and confidence.
            raise ValueError(f"{bad} of its {img.size} pixel values are NaN or infinite (a "
                             "float image with missing data?); a frame must be finite to be "
                             "classified")
        np.clip(img, 0.0, 1.0, out=img)
    return img, unit


def _to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """float32 (H, W, 1|3) -> (H, W, channels): BGR to grey, or grey repeated."""
    if channels == 1 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    if channels == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return img


def frame_to_tiles(image: np.ndarray, spec: InputSpec, tiling: TilingSpec) -> TiledFrame:
    """Decoded frame (H, W[, C]) -> :class:`TiledFrame` with tiles (N, C, S, S) float32.

    The frame (or its centred square, with ``tiling.crop``) is scaled once so that a tile of
    ``tiling.tile`` reference pixels becomes ``spec.tile_pixels`` network pixels, then cut on
    the reference grid. Boxes are in the whole frame's pixels. Raises TilingError for frames
    smaller than one tile, ValueError for pixel types it cannot read.
    """
    full_height, full_width = image.shape[:2]
    x0, y0, width, height = crop_box(full_width, full_height, tiling)
    if (width, height) != (full_width, full_height):
        image = image[y0:y0 + height, x0:x0 + width]
    ref_boxes, boxes = tile_boxes(width, height, tiling)
    boxes[:, 0] += x0
    boxes[:, 1] += y0
    # Scaling to [0, 1], resizing and BGR->grey are linear and commute: resize the raw
    # values first, so that the per-pixel work is done on the small network-scale image.
    img, unit = _raw_float(image)
    factor = spec.tile_pixels / tiling.tile
    ref_w, ref_h = reference_size(width, height, tiling)
    net_w, net_h = round(ref_w * factor), round(ref_h * factor)
    if (net_w, net_h) != (width, height):
        shrinking = net_w < width
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        img = cv2.resize(img, (net_w, net_h), interpolation=interp)
        if img.ndim == 2:
            img = img[:, :, None]
    img = _to_channels(img, spec.channels)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    img = img * (unit / std) - mean / std  # == (img * unit - mean) / std
    s = spec.tile_pixels
    origins = np.round(ref_boxes[:, :2] * factor).astype(np.int64)
    # Clamp for rounding at the far edge, then gather (N, S, S, C) with a strided view.
    origins[:, 0] = np.minimum(origins[:, 0], net_w - s)
    origins[:, 1] = np.minimum(origins[:, 1], net_h - s)
    windows = np.lib.stride_tricks.sliding_window_view(img, (s, s), axis=(0, 1))
    tiles = windows[origins[:, 1], origins[:, 0]]  # (N, C, S, S)
    return TiledFrame(
        tiles=np.ascontiguousarray(tiles, dtype=np.float32),
        boxes=boxes,
        ref_boxes=ref_boxes,
        width=full_width,
        height=full_height,
    )
