"""Recover the outputs of an interrupted run so that ``--resume`` can append to them.

A frame is done once its frame record is written (its tile records are written before
it). After a kill, the ``.partial`` files may end with a torn line, with tile records of
a frame that has no frame record yet, or (with two formats) with a frame recorded in one
format and not yet in the other. :func:`recover_outputs` keeps exactly the frames that are
recorded completely in every output file: a frame record present in every frames file,
and in every tiles file as many tile records as that frame record states. Everything else
is dropped, each file is rewritten atomically, and the kept records are accounted in a
:class:`RunSummary`. Memory grows with the number of done frames (a set of names).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.atomic_file import atomic_open
from edge.outputs import PARTIAL, RecordCodec, complete_lines, partial_path
from edge.summary import RunSummary


@dataclass
class Recovered:
    """Frames already done (by name), their accounting, and how many complete lines were
    dropped from the frames and tiles files (a torn last line is cut besides)."""

    done: set[str] = field(default_factory=set)
    summary: RunSummary = field(default_factory=RunSummary)
    dropped_frames: int = 0
    dropped_tiles: int = 0


def _reopen(out_dir: Path, codec: RecordCodec) -> Path:
    """The partial file of ``codec``; a final file left by a commit that was cut short is
    renamed back; a missing one is created empty (with its header)."""
    partial = partial_path(out_dir, codec.file_name)
    final = out_dir / codec.file_name
    if not partial.exists():
        if final.exists():
            os.replace(final, partial)
        else:
            partial.write_text(codec.header(), encoding="utf-8")
    return partial


def _frame_records(path: Path, codec: RecordCodec) -> dict[str, dict[str, Any]]:
    """Valid frame records by name, first occurrence, in file order."""
    records: dict[str, dict[str, Any]] = {}
    for record, _ in codec.decode(complete_lines(path)):
        records.setdefault(str(record["frame"]), record)
    return records


def _tile_counts(path: Path, codec: RecordCodec) -> Counter:
    return Counter(str(record["frame"]) for record, _ in codec.decode(complete_lines(path)))


def _rewrite(path: Path, codec: RecordCodec, keep: set[str], seen: set[str] | None,
             labels: Counter | None) -> tuple[int, int]:
    """Rewrite ``path`` with the records of frames in ``keep`` (frames files: first occurrence
    only, tracked in ``seen``); count kept tiles' labels into ``labels``. Returns
    ``(kept, dropped)`` record counts."""
    total_lines = sum(1 for _ in complete_lines(path)) - (1 if codec.header() else 0)
    kept = dropped = 0
    with atomic_open(path, "w", newline="") as out:
        out.write(codec.header())
        for record, text in codec.decode(complete_lines(path)):
            name = str(record["frame"])
            if name in keep and (seen is None or name not in seen):
                out.write(text)
                kept += 1
                if seen is not None:
                    seen.add(name)
                if labels is not None:
                    labels[record.get("label")] += 1
            else:
                dropped += 1
    # lines that did not decode (a torn or foreign tail) are dropped too
    return kept, dropped + max(0, total_lines - kept - dropped)


def recover_outputs(out_dir: Path, codecs: list[RecordCodec]) -> Recovered:
    """Repair the partial output files of an interrupted run in ``out_dir``; return the frames
    that are done. ``codecs`` lists every output file (tiles and frames, per format), the
    first frames codec being the one whose records are accounted."""
    paths = {codec.file_name: _reopen(out_dir, codec) for codec in codecs}
    frames_codecs = [c for c in codecs if c.kind == "frames"]
    tiles_codecs = [c for c in codecs if c.kind == "tiles"]
    primary = _frame_records(paths[frames_codecs[0].file_name], frames_codecs[0])
    candidates = set(primary)
    for codec in frames_codecs[1:]:
        candidates &= set(_frame_records(paths[codec.file_name], codec))
    done = set(candidates)
    for codec in tiles_codecs:
        counts = _tile_counts(paths[codec.file_name], codec)
        done = {n for n in done if counts.get(n, 0) == int(primary[n].get("tiles") or 0)}

    result = Recovered(done=done)
    labels: Counter = Counter()
    for i, codec in enumerate(tiles_codecs):
        _, dropped = _rewrite(paths[codec.file_name], codec, done, None,
                              labels if i == 0 else None)
        result.dropped_tiles = max(result.dropped_tiles, dropped)
    for codec in frames_codecs:
        _, dropped = _rewrite(paths[codec.file_name], codec, done, set(), None)
        result.dropped_frames = max(result.dropped_frames, dropped)
    for name, record in primary.items():
        if name in done:
            result.summary.add(record, Counter())
    result.summary.class_counts.update(labels)
    result.summary.resumed = len(done)
    return result


def has_partial_outputs(out_dir: Path, names: list[str]) -> bool:
    """Whether any ``NAME.partial`` exists in ``out_dir``."""
    return any((out_dir / (n + PARTIAL)).exists() for n in names)
