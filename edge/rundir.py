"""The output folder of a classify run: one writer at a time, and what a run finds there.

- ``OUT/.lock`` is held (``fcntl.flock``) for the whole run; a second run into the same
  folder is refused. The file stays after the run (removing it would race).
- ``OUT/run.json.partial`` is written when a run starts (what it classifies, with which
  model and options) and removed only after ``OUT/run.json`` is written at the end.
  A folder holding any ``*.partial`` output is an *incomplete* run; one holding
  ``run.json`` and no partial file, a *complete* run.
- A new run into a folder with an incomplete run is refused unless ``--resume``
  (continue it) or ``--overwrite`` (discard it); into a folder with a complete run,
  unless ``--overwrite`` (replace it) or ``--resume`` (continue it: classifies the frames
  not yet in it, if any). ``--resume`` into a folder holding no run starts a new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.outputs import PARTIAL, RUN_FILE, RecordCodec, write_json_atomic
from edge.resume import Recovered, recover_outputs

LOCK_FILE = ".lock"
RUN_PARTIAL = RUN_FILE + PARTIAL
OVERLAY_DIR = "overlays"
CONTACT_SHEET = "contact_sheet.html"
OUTPUT_NAMES = ["tiles.jsonl", "frames.jsonl", "tiles.csv", "frames.csv"]


class RunDirError(Exception):
    """The output folder cannot take this run (busy, or holds a run that would be lost)."""


def folder_state(out_dir: Path) -> str:
    """``empty`` (no run), ``incomplete`` (a run was interrupted) or ``complete``."""
    if (out_dir / RUN_PARTIAL).exists() or any(
        (out_dir / (n + PARTIAL)).exists() for n in OUTPUT_NAMES
    ):
        return "incomplete"
    if (out_dir / RUN_FILE).exists() or any((out_dir / n).exists() for n in OUTPUT_NAMES):
        return "complete"
    return "empty"


@contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` and hold an exclusive lock on ``out_dir/.lock`` while inside."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"another edge classify is writing to '{out_dir}' (it holds "
                f"{out_dir / LOCK_FILE}); wait for it to finish or give another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def clear_outputs(out_dir: Path) -> None:
    """Delete a previous run's outputs from ``out_dir`` (only the files a run writes)."""
    for name in [*OUTPUT_NAMES, RUN_FILE, CONTACT_SHEET]:
        for path in (out_dir / name, out_dir / (name + PARTIAL)):
            if path.is_file():
                path.unlink()
    if (out_dir / OVERLAY_DIR).is_dir():
        shutil.rmtree(out_dir / OVERLAY_DIR)


def prepare(out_dir: Path, key: dict[str, Any], started: dict[str, Any], codecs: list[RecordCodec],
            resume: bool, overwrite: bool) -> Recovered | None:
    """Make ``out_dir`` ready for a run (call while :func:`locked`).

    ``key`` says what the run classifies and how (source, model hash, tiling, labelling,
    formats): a run is resumed only with the same key. ``started`` goes into
    ``run.json.partial``. Returns the recovered state when resuming, else None (fresh run).
    Raises RunDirError when the folder holds a run that this one must not silently replace.
    """
    state = folder_state(out_dir)
    if state != "empty" and resume:
        previous = _read_json(out_dir / (RUN_PARTIAL if state == "incomplete" else RUN_FILE))
        if previous is None or not isinstance(previous.get("resume_key"), dict):
            raise RunDirError(
                f"cannot resume the run in '{out_dir}': it has no readable {RUN_PARTIAL} or "
                f"{RUN_FILE} saying what it classified; use --overwrite to start again"
            )
        diffs = _differences(previous["resume_key"], key)
        if diffs:
            raise RunDirError(
                f"cannot resume the run in '{out_dir}' with different settings ("
                + "; ".join(diffs) + "); rerun with the same ones, or give a new --out"
            )
        # the key is saved first, so that a kill from here on leaves a resumable folder
        write_json_atomic(out_dir / RUN_PARTIAL, {**started, "resume_key": key})
        recovered = recover_outputs(out_dir, codecs)
        if (out_dir / RUN_FILE).exists():
            (out_dir / RUN_FILE).unlink()
        return recovered
    if state == "incomplete" and not overwrite:
        raise RunDirError(
            f"'{out_dir}' holds an interrupted run (*.partial files); continue it with "
            "--resume, discard it with --overwrite, or give a new --out"
        )
    if state == "complete" and not overwrite:
        raise RunDirError(
            f"'{out_dir}' already holds a completed run ({RUN_FILE}); replace it with "
            "--overwrite, add frames to it with --resume, or give a new --out"
        )
    if state != "empty":
        clear_outputs(out_dir)
    write_json_atomic(out_dir / RUN_PARTIAL, {**started, "resume_key": key})
    return None


def finish(out_dir: Path, run: dict[str, Any]) -> Path:
    """Write ``run.json`` (the run is then complete) and remove ``run.json.partial``."""
    path = write_json_atomic(out_dir / RUN_FILE, run)
    partial = out_dir / RUN_PARTIAL
    if partial.exists():
        partial.unlink()
    return path
