"""Encoded image headers that claim a size without the pixels, for the decoders' size checks
(shared by tests/edge and tests/reliability; on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

import struct
import zlib


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
