"""Hostile inputs for ``edge classify``: a seeded, deterministic generator.

:func:`write_hostile_folder` writes one or more files of every kind into a folder and
returns a manifest of :class:`Hostile` entries (file name as the outputs name it, kind,
expected outcome). :func:`write_corrupt_video` writes an MJPG ``.avi`` whose middle frames
are corrupted (a video is a source of its own, not a file of a folder).

Expected outcomes:

- ``error``: one frame record with ``error`` naming the file (and ``match`` in it), no tiles;
- ``classified``: one frame record with ``error: null`` and its tiles;
- ``any``: exactly one frame record, either of the two (bit flips inside entropy-coded data
  may still decode, as garbage pixels);
- ``not_listed``: not a frame of the source at all (a directory symlink loop: ``--recursive``
  does not follow directory symlinks, so it neither hangs nor yields anything).

Non-UTF-8 file names (bytes such as ``b'bad\\xff.png'``) are named in the outputs by
:func:`edge.sources.frame_name`: each undecodable byte as the four characters ``\\xNN``
(``bad\\xff.png``), so that JSONL, CSV, overlay file names and the terminal all stay valid
UTF-8 (a surrogate-escaped ``'bad\\udcff.png'`` could not be written as UTF-8 at all, and
JSON's ``\\udcff`` escape is a lone surrogate that strict parsers reject).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from image_headers import huge_jpeg, huge_png, huge_tiff
from reliability_data import encode, synthetic_frame

from edge.sources import frame_name

TOO_LARGE = "more than the"
NOT_READABLE = "not a readable image"


@dataclass(frozen=True)
class Hostile:
    """One hostile input: ``name`` as the outputs name it (relative, ``os.fsdecode`` form)."""

    name: str
    kind: str
    expected: str  # "error", "classified", "any" or "not_listed"
    match: str = ""  # a substring of the error message, for "error"


def flip_bits(data: bytes, rng: np.random.Generator, start: int, stop: int, n: int) -> bytes:
    """``data`` with ``n`` random bits flipped at byte offsets in ``[start, stop)``."""
    buf = bytearray(data)
    for pos in rng.integers(start, stop, size=n):
        buf[int(pos)] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def _png_idat_span(data: bytes) -> tuple[int, int]:
    i = 8
    while i < len(data):
        length = int.from_bytes(data[i:i + 4], "big")
        if data[i + 4:i + 8] == b"IDAT":
            return i + 8, i + 8 + length
        i += 12 + length
    raise ValueError("no IDAT")


def write_hostile_folder(folder: Path, seed: int = 0) -> list[Hostile]:
    """Write every hostile kind into ``folder`` (created); return the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out: list[Hostile] = []

    def put(name: str | bytes, data: bytes, kind: str, expected: str, match: str = "") -> None:
        path = os.path.join(os.fsencode(folder), os.fsencode(name))
        with open(path, "wb") as fh:
            fh.write(data)
        out.append(Hostile(frame_name(os.fsdecode(name)), kind, expected, match))

    grey = synthetic_frame(96, 96, seed=seed)
    colour = synthetic_frame(96, 96, 3, seed=seed + 1)
    jpg, png = encode(colour, ".jpg"), encode(grey, ".png")

    # truncated JPEG and PNG: cut at several points, the end marker gone
    for frac in (0.1, 0.5, 0.9):
        put(f"trunc_{int(frac * 100):02d}.jpg", jpg[:int(len(jpg) * frac)], "truncated_jpeg",
            "error", "truncated JPEG")
        put(f"trunc_{int(frac * 100):02d}.png", png[:int(len(png) * frac)], "truncated_png",
            "error", "truncated PNG")
    # bit flips: JPEG entropy data (may decode as garbage), JPEG header, PNG image data
    # (zlib/CRC errors), PNG header (IHDR CRC)
    for i in range(3):
        put(f"flip_scan_{i}.jpg", flip_bits(jpg, rng, len(jpg) // 2, len(jpg) - 4, 8),
            "bitflip_jpeg", "any")
        put(f"flip_head_{i}.jpg", flip_bits(jpg, rng, 2, 160, 16), "bitflip_jpeg", "any")
        lo, hi = _png_idat_span(png)
        put(f"flip_data_{i}.png", flip_bits(png, rng, lo, hi, 8), "bitflip_png", "any")
        put(f"flip_head_{i}.png", flip_bits(png, rng, 12, 33, 4), "bitflip_png", "any")
    # zero-byte files
    for ext in ("png", "jpg", "tif"):
        put(f"empty.{ext}", b"", "zero_byte", "error", "empty file")
    # random bytes with an image extension (no image signature at the start)
    for i, ext in enumerate(("png", "jpg", "jpeg", "tif", "PNG")):
        data = rng.integers(0, 256, size=int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        put(f"random_{i}.{ext}", b"\x00" + data, "random_bytes", "error", NOT_READABLE)
    put("text.jpg", b"this is not a picture\n" * 10, "random_bytes", "error", NOT_READABLE)
    # headers claiming enormous dimensions
    put("huge.png", huge_png(100_000, 100_000), "huge_header", "error", TOO_LARGE)
    put("huge.jpg", huge_jpeg(65_535, 65_535), "huge_header", "error", TOO_LARGE)
    put("huge.tif", huge_tiff(1_000_000, 1_000_000), "huge_header", "error", TOO_LARGE)
    # degenerate sizes: 1x1 is scaled up and classified; one pixel high is less than a tile
    # high; one pixel wide would scale to an absurdly tall frame and is refused
    put("one_by_one.png", encode(np.full((1, 1), 128, np.uint8), ".png"), "tiny_1x1",
        "classified")
    put("one_by_one.jpg", encode(np.full((1, 1, 3), 90, np.uint8), ".jpg"), "tiny_1x1",
        "classified")
    put("row_1x300.png", encode(synthetic_frame(1, 300, seed=3), ".png"), "thin_1xN", "error",
        "smaller than one tile")
    put("column_300x1.png", encode(synthetic_frame(300, 1, seed=4), ".png"), "thin_1xN",
        "error", "too tall")
    put("column_5000x1.png", encode(synthetic_frame(5000, 1, seed=5), ".png"), "thin_1xN",
        "error", "too tall")
    # 16-bit and 4-channel images: classified
    put("grey16.png", encode(synthetic_frame(64, 64, dtype=np.uint16, seed=6), ".png"),
        "deep_16bit", "classified")
    put("bgr16.png", encode(synthetic_frame(64, 64, 3, np.uint16, seed=7), ".png"),
        "deep_16bit", "classified")
    put("grey16.tif", encode(synthetic_frame(64, 64, dtype=np.uint16, seed=8), ".tif"),
        "deep_16bit", "classified")
    put("bgra8.png", encode(synthetic_frame(64, 64, 4, seed=9), ".png"), "four_channel",
        "classified")
    put("bgra16.png", encode(synthetic_frame(64, 64, 4, np.uint16, seed=10), ".png"),
        "four_channel", "classified")
    # a whole PNG with padding after its IEND chunk (block-padded transfers): classified
    put("padded.png", png + b"\x00" * 512, "padded_png", "classified")
    # float TIFFs marking missing data with NaN or infinity: refused, never labelled
    for bad, label in ((np.nan, "nan"), (np.inf, "inf")):
        image = synthetic_frame(64, 64, seed=11).astype(np.float32) / 255.0
        image[10:12, 20:30] = bad
        put(f"float_{label}.tif", encode(image, ".tif"), "non_finite_float", "error",
            "NaN or infinite")
    # non-UTF-8 names: a good image and a corrupt one
    put(b"bad\xff.png", png, "non_utf8_name", "classified")
    put(b"caf\xe9_broken.jpg", jpg[: len(jpg) // 2], "non_utf8_name", "error", "truncated JPEG")
    # symlink loops: a -> b -> a (image names, unreadable), and a directory loop
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    for name in ("loop_a.png", "loop_b.png"):
        out.append(Hostile(name, "symlink_loop", "error", "cannot read file"))
    sub = folder / "sub"
    sub.mkdir()
    os.symlink("..", sub / "up")  # sub/up/sub/up/... : never followed
    os.symlink(".", sub / "self")
    out.append(Hostile("sub/up", "dir_symlink_loop", "not_listed"))
    (sub / "inner.png").write_bytes(png)
    out.append(Hostile("sub/inner.png", "dir_symlink_loop", "classified"))
    return out


def write_corrupt_video(path: Path, frames: int = 12, corrupt: tuple[int, ...] = (4, 5, 8),
                        size: int = 64, seed: int = 0) -> tuple[int, list[int]]:
    """An MJPG ``.avi`` of ``frames`` frames whose JPEG frames at indices ``corrupt`` have
    random bytes written over their middle. Returns ``(frames, corrupt)``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(frames):
        writer.write(synthetic_frame(size, size, 3, seed=seed + i))
    writer.release()
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    starts = [i for i in range(len(data) - 1) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) >= frames, f"found {len(starts)} JPEG frames in the video"
    for k in corrupt:
        begin = starts[k]
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        mid = (begin + end) // 2
        span = (end - begin) // 4
        data[mid - span:mid + span] = rng.integers(0, 256, 2 * span, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return frames, list(corrupt)
