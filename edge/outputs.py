"""Run outputs ``tiles.jsonl`` and ``frames.jsonl``, written so that nothing half-written passes
for a result: lines go to ``*.partial`` files, flushed frame by frame, renamed on completion."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

TILES_FILE = "tiles.jsonl"
FRAMES_FILE = "frames.jsonl"
RUN_FILE = "run.json"
PARTIAL = ".partial"


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON to ``path.partial``, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + PARTIAL)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


class RunWriter:
    """Appends one frame's records at a time; :meth:`commit` publishes the finished files."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, TextIO] = {
            name: open(self.out_dir / (name + PARTIAL), "w", encoding="utf-8")
            for name in (TILES_FILE, FRAMES_FILE)
        }

    def write_tiles(self, tiles: list[dict[str, Any]]) -> None:
        """Append one frame's tile records and flush (call before :meth:`write_frame`)."""
        fh = self._files[TILES_FILE]
        fh.write("".join(json.dumps(t, separators=(",", ":")) + "\n" for t in tiles))
        fh.flush()

    def write_frame(self, frame: dict[str, Any]) -> None:
        """Append one frame record and flush; it marks the frame's tiles as complete."""
        fh = self._files[FRAMES_FILE]
        fh.write(json.dumps(frame, separators=(",", ":")) + "\n")
        fh.flush()

    def commit(self) -> dict[str, Path]:
        """fsync, close and rename the partial files to their final names."""
        final = {}
        for name, fh in self._files.items():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            target = self.out_dir / name
            os.replace(self.out_dir / (name + PARTIAL), target)
            final[name] = target
        return final

    def close(self) -> None:
        """Close without publishing (the ``.partial`` files stay, marked as incomplete)."""
        for fh in self._files.values():
            if not fh.closed:
                fh.close()
