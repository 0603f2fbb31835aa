"""Frame sources: a directory, a glob, one image file, a video file, or a camera index.

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
_INDEXED_VIDEO = (".mp4", ".avi", ".mov", ".m4v")
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


def frame_name(name: str) -> str:
    """A file name as the outputs name it: valid Unicode whatever the file system holds.

    Python lists a name that is not valid UTF-8 with surrogate escapes (``b'bad\\xff.png'``
    becomes ``'bad\\udcff.png'``), which no UTF-8 file, CSV cell or terminal can carry;
    each undecodable byte is written as the four characters ``\\xNN`` instead
    (``'bad\\\\xff.png'``, shown as ``bad\\xff.png``). Valid names are unchanged."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _listed(path: Path) -> bool:
    """An image file of a folder or glob: a file with an image name, or a symlink with an
    image name that leads nowhere (a loop, a dangling link). Such a link is listed so that it
    gets an error record naming it ("cannot read file"), not silently left out."""
    if not _is_image(path):
        return False
    return path.is_file() or (path.is_symlink() and not path.exists())


def _image_ref(path: Path, name: str) -> FrameRef:
    name = frame_name(name)
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
        files = sorted(p for p in map(Path, glob.glob(source, recursive=recursive))
                       if _listed(p))
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
        files = sorted(p for p in walker if _listed(p))
        if not files:
            hint = "" if recursive else " (use --recursive for sub-folders)"
            raise SourceError(
                f"directory '{source}' holds no image files ({', '.join(IMAGE_SUFFIXES)}){hint}"
            )
        return path, files
    return path.parent, [path]


class FrameStream:
    """Frames of a source, in order: an iterator of :class:`FrameRef`.

    ``total`` is the number of frames when known in advance (files; a video's frame count
    as its container states it), else None (camera). ``kind`` is ``files``, ``video`` or
    ``camera``.
    """

    def __init__(self, frames: Iterator[FrameRef], total: int | None, kind: str):
        self._frames = frames
        self.total = total
        self.kind = kind

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> FrameRef:
        return next(self._frames)


def _error_ref(name: str, message: str) -> FrameRef:
    def load() -> np.ndarray:
        raise FrameError(f"{name}: {message}")

    return FrameRef(name=name, load=load)


def _capture_frames(cap: cv2.VideoCapture, prefix: str, what: str,
                    expected: int | None = None) -> Iterator[FrameRef]:
    """Frames ``PREFIX#000000``, ... read one at a time from an opened capture. A stream that
    stops before the ``expected`` frames its container states (a truncated or corrupt
    video) ends with one error frame, named after the first frame that could not be read."""
    index = 0
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            decode_ms = (time.perf_counter() - t0) * 1e3
            if not ok or frame is None:
                if index == 0:
                    yield _error_ref(prefix, f"{what} holds no readable frame")
                elif expected is not None and index < expected:
                    yield _error_ref(
                        f"{prefix}#{index:06d}",
                        f"{what} ended after {index} of the {expected} frames its container "
                        "states (truncated or corrupt); the rest cannot be read")
                return
            yield FrameRef(f"{prefix}#{index:06d}", lambda image=frame: image, decode_ms)
            index += 1
    finally:
        cap.release()


def _video_stream(path: Path) -> FrameStream:
    """A video file. One that cannot be opened or read yields a single error frame named
    after the file (bad input: the run records it and exits 2), never a SourceError."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        message = "video cannot be opened (unreadable, or a codec OpenCV lacks)"
        return FrameStream(iter([_error_ref(frame_name(path.name), message)]), 1, "video")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    # AVI and MP4/MOV index every frame, so their count is exact; Matroska's is an estimate
    expected = count if count and path.suffix.lower() in _INDEXED_VIDEO else None
    frames = _capture_frames(cap, frame_name(path.name), "video", expected)
    return FrameStream(frames, count or None, "video")


def is_camera_index(source: str) -> bool:
    """A source that is all digits and not an existing path names a camera (``0``, ``1``)."""
    return source.isdigit() and not Path(source).exists()


def _camera_stream(index: int) -> FrameStream:
    """Live frames of camera ``index`` (cv2.VideoCapture(int)), until it stops delivering."""
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        raise SourceError(
            f"camera {index} cannot be opened (no such device, no permission, or busy); "
            "a source that is all digits names a camera index"
        )
    return FrameStream(_capture_frames(cap, f"camera{index}", f"camera {index}"), None, "camera")


def open_source(source: str | os.PathLike, recursive: bool = False) -> FrameStream:
    """Frames of ``source`` in order: a directory, a glob, an image file, a video file or a
    camera index. Errors that concern the whole source (missing, holds no image, camera
    that does not open) raise SourceError before the first frame is yielded; a bad frame
    (corrupt image, unreadable video) fails when loaded, with a FrameError."""
    src = str(source)
    path = Path(src)
    if is_camera_index(src):
        return _camera_stream(int(src))
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_stream(path)
    if path.is_file() and not _is_image(path):
        raise SourceError(
            f"'{source}' is neither an image ({', '.join(IMAGE_SUFFIXES)}) "
            f"nor a video ({', '.join(VIDEO_SUFFIXES)})"
        )
    root, files = list_image_files(src, recursive)
    refs = (_image_ref(p, os.path.relpath(p, root)) for p in files)
    return FrameStream(refs, len(files), "files")


__all__ = ["FrameError", "FrameRef", "FrameStream", "SourceError", "frame_name",
           "is_camera_index", "list_image_files", "open_source"]
