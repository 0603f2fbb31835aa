"""``OUT/contact_sheet.html``: the run at a glance, one card per frame.

Each card shows the frame's overlay PNG as a thumbnail linking to the full picture,
the frame's name, its tile count and a bar of its class shares (or its error). The
page is built at the end of a run by streaming the run's frames and tiles files in
step (tiles of a frame are contiguous and in frame order), so memory stays flat.
"""

from __future__ import annotations

import html
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edge.atomic_file import atomic_open
from edge.options import UNCERTAIN
from edge.outputs import RecordCodec, complete_lines
from edge.overlay import class_colours, overlay_file_name

STYLE = """
body { font-family: sans-serif; background: #1e1e1e; color: #eee; margin: 1em; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #2b2b2b; padding: 6px; width: 260px; font-size: 12px; }
.card img { width: 260px; display: block; }
.bar { display: flex; height: 10px; margin-top: 4px; }
.err { color: #ff8080; }
.key span { display: inline-block; padding: 2px 6px; margin-right: 6px; color: #000; }
.name { word-break: break-all; }
"""


def _css(colour: tuple[int, int, int]) -> str:
    b, g, r = colour
    return f"rgb({r},{g},{b})"


def frame_label_counts(frames_path: Path, tiles_path: Path, frames_codec: RecordCodec,
                       tiles_codec: RecordCodec) -> Iterator[tuple[dict[str, Any], Counter]]:
    """``(frame record, label counts of its tiles)`` for each frame, in order."""
    tiles = (record for record, _ in tiles_codec.decode(complete_lines(tiles_path)))
    groups = itertools.groupby(tiles, key=lambda t: t["frame"])
    current = next(groups, None)
    for frame, _ in frames_codec.decode(complete_lines(frames_path)):
        counts: Counter = Counter()
        if current is not None and current[0] == frame["frame"]:
            counts.update(t["label"] for t in current[1])
            current = next(groups, None)
        yield frame, counts


def _card(frame: dict[str, Any], counts: Counter, colours: dict[str, str],
          overlay_dir: Path) -> str:
    name = str(frame["frame"])
    text = html.escape(name)
    png = overlay_file_name(name)
    href = html.escape(f"{overlay_dir.name}/{quote(png)}")
    parts = ['<div class="card">']
    if (overlay_dir / png).exists():
        parts.append(f'<a href="{href}"><img src="{href}" loading="lazy" alt="{text}"></a>')
    else:
        parts.append("<div>(no overlay)</div>")
    parts.append(f'<div class="name">{text}</div>')
    if frame.get("error"):
        parts.append(f'<div class="err">{html.escape(str(frame["error"]))}</div>')
    else:
        total = sum(counts.values()) or 1
        shares = ", ".join(f"{html.escape(k)} {v / total:.0%}" for k, v in counts.most_common())
        parts.append(f"<div>{frame.get('tiles')} tiles: {shares}</div>")
        bar = "".join(
            f'<span style="width:{100 * v / total:.1f}%;background:{colours.get(k, "#888")}">'
            "</span>" for k, v in counts.most_common())
        parts.append(f'<div class="bar">{bar}</div>')
    parts.append("</div>\n")
    return "".join(parts)


def write_contact_sheet(out_dir: Path, frames_path: Path, tiles_path: Path,
                        frames_codec: RecordCodec, tiles_codec: RecordCodec,
                        classes: list[str], report: dict[str, Any], overlay_dir: Path) -> Path:
    """Write ``out_dir/contact_sheet.html`` (via a temporary file) and return its path."""
    colours = {c: _css(v) for c, v in zip(classes, class_colours(classes), strict=True)}
    colours[UNCERTAIN] = "repeating-linear-gradient(45deg,#fff 0 3px,#666 3px 6px)"
    path = out_dir / "contact_sheet.html"
    shares = ", ".join(f"{html.escape(k)} {v:.1%}" for k, v in report["class_shares"].items())
    key = "".join(f'<span style="background:{colours[c]}">{html.escape(c)}</span>'
                  for c in [*classes, UNCERTAIN])
    with atomic_open(path, "w", fsync=False) as fh:
        fh.write("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                 f"<title>edge classify: {html.escape(str(out_dir))}</title>"
                 f"<style>{STYLE}</style></head><body>\n")
        fh.write(f"<h2>{report['frames']} frames, {report['classified']} classified, "
                 f"{report['skipped_count']} skipped, {report['tiles']} tiles</h2>\n")
        fh.write(f"<p>class shares: {shares or 'none'}</p><p class=\"key\">{key}</p>\n")
        fh.write('<div class="cards">\n')
        for frame, counts in frame_label_counts(frames_path, tiles_path, frames_codec,
                                                tiles_codec):
            fh.write(_card(frame, counts, colours, overlay_dir))
        fh.write("</div></body></html>\n")
    return path
