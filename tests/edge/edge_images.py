"""Tiny synthetic frames for the edge/ tests (a module of its own, not conftest, so that test
files can import it whatever other conftest.py files pytest has loaded)."""

from __future__ import annotations

import struct
import zlib
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


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def huge_png(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming ``width`` x ``height`` grey pixels, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def huge_jpeg(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 claiming ``width`` x ``height``, EOI."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\x00" * 8 + b"\xff\xd9"


def huge_tiff(width: int, height: int) -> bytes:
    """A little-endian TIFF whose first IFD claims ``width`` x ``height`` (LONG tags)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (262, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries
    ) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64
