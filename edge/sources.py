"""Frame sources: a directory, a glob, one image file, or a video file.

A source yields :class:`FrameRef` items in a stable order; each names its frame
relative to the source and decodes it only when asked, so that a bad frame
costs one error record and never the run.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.decode import IMAGE_SUFFIXES, FrameError, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
_GLOB_CHARS = "*?["


class SourceError(Exception):
    """The source does not exist, cannot be opened, or holds no frames."""


@dataclass
class FrameRef:
    """One frame of a source: ``name`` relative to the source, ``load()`` decodes it.

    ``decode_ms`` is set when the frame was already decoded while iterating (video).
    """

    name: str
    load: Callable[[], np.ndarray]
    decode_ms: float | None = None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _image_ref(path: Path, name: str) -> FrameRef:
    return FrameRef(name=name, load=lambda: read_image(path, name))


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    static: list[str] = []
    for part in parts:
        if any(c in part for c in _GLOB_CHARS):
            break
        static.append(part)
    return Path(*static) if static else Path(".")


def list_image_files(source: str, recursive: bool = False) -> tuple[Path, list[Path]]:
    """``(root, files)``: the image files of a directory or glob, sorted, and the root that
    their names are relative to. Raises SourceError when there is nothing to read."""
    if any(c in source for c in _GLOB_CHARS) and not Path(source).exists():
        root = _glob_root(source)
        files = sorted(Path(p) for p in glob.glob(source, recursive=recursive) if Path(p).is_file())
        files = [p for p in files if _is_image(p)]
        if not files:
            raise SourceError(
                f"glob '{source}' matches no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return root, files
    path = Path(source)
    if not path.exists():
        raise SourceError(f"source '{source}' does not exist")
    if path.is_dir():
        walker = path.rglob("*") if recursive else path.iterdir()
        files = sorted(p for p in walker if p.is_file() and _is_image(p))
        if not files:
            hint = "" if recursive else " (use --recursive for sub-folders)"
            raise SourceError(
                f"directory '{source}' holds no image files ({', '.join(IMAGE_SUFFIXES)}){hint}"
            )
        return path, files
    return path.parent, [path]


def _video_frames(path: Path) -> Iterator[FrameRef]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"video '{path}' cannot be opened (unreadable or unsupported codec)")
    index = 0
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            decode_ms = (time.perf_counter() - t0) * 1e3
            if not ok:
                if index == 0:
                    raise SourceError(f"video '{path}' holds no readable frame")
                return
            image = frame
            yield FrameRef(f"{path.name}#{index:06d}", lambda image=image: image, decode_ms)
            index += 1
    finally:
        cap.release()


def open_source(source: str | os.PathLike, recursive: bool = False) -> Iterator[FrameRef]:
    """Frames of ``source`` in order. Errors that concern the whole source (missing, empty,
    unopenable video) raise SourceError before the first frame is yielded."""
    src = str(source)
    path = Path(src)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _video_frames(path)
        first = next(frames)  # raises SourceError for an unreadable video, eagerly

        def chain() -> Iterator[FrameRef]:
            yield first
            yield from frames

        return chain()
    if path.is_file() and not _is_image(path):
        raise SourceError(
            f"'{source}' is neither an image ({', '.join(IMAGE_SUFFIXES)}) "
            f"nor a video ({', '.join(VIDEO_SUFFIXES)})"
        )
    root, files = list_image_files(src, recursive)
    return (_image_ref(p, os.path.relpath(p, root)) for p in files)


__all__ = ["FrameError", "FrameRef", "SourceError", "open_source", "list_image_files"]
