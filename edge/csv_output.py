"""CSV versions of the run outputs (``--format csv``): ``tiles.csv`` and ``frames.csv``.

The columns are those of the JSONL records; ``frames.csv`` flattens ``timings_ms`` into
``timing_decode_ms``, ..., ``timing_write_ms``. A missing value (null in JSONL) is an
empty cell. Files start with a header row and use RFC 4180 quoting.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edge.outputs import TILE_FIELDS
from edge.summary import STAGES

TIMING_COLUMNS = tuple(f"timing_{s}_ms" for s in STAGES)
FRAME_COLUMNS = ("frame", "width", "height", "tiles", *TIMING_COLUMNS, "error")
_INTS = {"x", "y", "w", "h", "class_id", "width", "height", "tiles"}
_FLOATS = {"confidence", *TIMING_COLUMNS}


def tile_columns(best_label: bool = False) -> tuple[str, ...]:
    """Columns of ``tiles.csv`` (``best_label`` last in runs with ``--min-confidence``)."""
    return (*TILE_FIELDS, "best_label") if best_label else TILE_FIELDS


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _parse(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _INTS:
        return int(text)
    if column in _FLOATS:
        return float(text)
    return text


@dataclass
class CsvCodec:
    """Records of one kind (``tiles`` or ``frames``) as CSV rows with fixed columns."""

    kind: str
    columns: tuple[str, ...] = field(default=())
    suffix: str = "csv"

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = FRAME_COLUMNS if self.kind == "frames" else tile_columns()

    @property
    def file_name(self) -> str:
        """``KIND.csv``."""
        return f"{self.kind}.{self.suffix}"

    def _text(self, rows: Iterable[list[Any]]) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(rows)
        return buf.getvalue()

    def header(self) -> str:
        """The header row."""
        return self._text([list(self.columns)])

    def row(self, record: dict[str, Any]) -> list[Any]:
        """One record as a row of cells (timings flattened for frames)."""
        if self.kind == "frames":
            timings = record.get("timings_ms") or {}
            flat = {**record, **{f"timing_{s}_ms": timings.get(s) for s in STAGES}}
            return [_cell(flat.get(c)) for c in self.columns]
        return [_cell(record.get(c)) for c in self.columns]

    def encode(self, records: list[dict[str, Any]]) -> str:
        """Rows of the records."""
        return self._text(self.row(r) for r in records)

    def record(self, row: list[str]) -> dict[str, Any]:
        """A row of cells -> the record it came from (the JSONL shape)."""
        values = {c: _parse(c, v) for c, v in zip(self.columns, row, strict=True)}
        if self.kind != "frames":
            return values
        timings = {s: values.pop(f"timing_{s}_ms") for s in STAGES}
        record = {k: values[k] for k in ("frame", "width", "height", "tiles")}
        record["timings_ms"] = None if all(v is None for v in timings.values()) else timings
        record["error"] = values["error"]
        return record

    def decode(self, lines: Iterable[str]) -> Iterator[tuple[dict[str, Any], str]]:
        """Rows after the header; stops at a header that differs, a row with the wrong
        number of cells or cells that do not parse, or a quoted field left open."""
        reader = csv.reader(lines, strict=True)
        try:
            if next(reader, None) != list(self.columns):
                return
            for row in reader:
                if len(row) != len(self.columns):
                    return
                try:
                    record = self.record(row)
                except ValueError:
                    return
                yield record, self._text([row])
        except csv.Error:
            return
