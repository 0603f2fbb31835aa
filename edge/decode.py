"""Safe image decoding: every failure becomes a :class:`FrameError` naming the file and problem."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# Refuse frames whose decoded size would exceed this many pixels (a 16k x 16k frame);
# rover cameras are at most a few megapixels and a hostile header can claim anything.
MAX_PIXELS = 1 << 28
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class FrameError(Exception):
    """One frame cannot be classified; the run records why and goes on."""


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _png_has_iend(data: bytes) -> bool:
    """Whether the PNG's chunk list, walked from the signature, reaches a whole IEND chunk
    (bytes after it, such as transfer padding, are allowed)."""
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Frame size from the first SOF marker, without decoding."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg_len = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return w, h
        i += 2 + seg_len
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Frame size from the first IFD's ImageWidth/ImageLength tags (classic TIFF only)."""
    order = {b"II*\x00": "little", b"MM\x00*": "big"}.get(data[:4])
    if order is None or len(data) < 8:
        return None

    def num(at: int, size: int) -> int:
        return int.from_bytes(data[at : at + size], order)

    ifd = num(4, 4)
    if ifd + 2 > len(data):
        return None
    found: dict[int, int] = {}
    for k in range(num(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(data):
            break
        tag, kind = num(entry, 2), num(entry + 2, 2)
        if tag in (256, 257):
            found[tag] = num(entry + 8, 2) if kind == 3 else num(entry + 8, 4)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def check_bytes(data: bytes, name: str) -> None:
    """Reject empty, truncated or oversized JPEG/PNG data (and TIFF claiming too many
    pixels) before decoding it."""
    if not data:
        raise FrameError(f"{name}: empty file (0 bytes)")
    if data[:2] == b"\xff\xd8":
        # A complete JPEG ends with the EOI marker (some writers pad a few bytes after it).
        if b"\xff\xd9" not in data[-64:]:
            raise FrameError(f"{name}: truncated JPEG (no end-of-image marker)")
        size = _jpeg_size(data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if not _png_has_iend(data):
            raise FrameError(f"{name}: truncated PNG (its chunk list ends before an "
                             "IEND chunk)")
        size = _png_size(data)
    else:
        size = _tiff_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise FrameError(
            f"{name}: header claims {size[0]}x{size[1]} pixels, more than the "
            f"{MAX_PIXELS} this runtime decodes safely"
        )


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Encoded bytes -> image array (H, W) or (H, W, 3|4), BGR order, uint8 or uint16."""
    check_bytes(data, name)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise FrameError(
            f"{name}: not a readable image (corrupt, or a format OpenCV cannot decode)"
        )
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise FrameError(f"{name}: unsupported channel count {image.shape[2]}")
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise FrameError(f"{name}: unsupported pixel type {image.dtype}")
    return image


def read_image(path: str | os.PathLike, name: str | None = None) -> np.ndarray:
    """Read and decode an image file; raises FrameError naming ``name`` (default: the path)."""
    label = name or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FrameError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, label)
