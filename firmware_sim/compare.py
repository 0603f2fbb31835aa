"""``edge sim compare A/report.json B/report.json``: two runs side by side.

Typical use: the same stream on two profiles, or two bundles on one profile. The table
lists what differs in the setup, then the figures, with B / A for the numeric ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from firmware_sim.report import REPORT_FILE, SCHEMA_VERSION


class CompareError(ValueError):
    """A report cannot be read or is not a simulator report this version understands."""


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read a report.json (a folder holding one is accepted too)."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CompareError(f"cannot read '{p}' ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(f"'{p}' is not a JSON report ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "firmware_sim.replay":
        raise CompareError(f"'{p}' is not an edge sim report (no kind 'firmware_sim.replay')")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise CompareError(f"'{p}' has report schema version {data.get('schema_version')!r}; "
                           f"this version compares version {SCHEMA_VERSION} (re-run edge sim)")
    return data


def _get(report: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = report
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _p(dotted: str) -> tuple[str, ...]:
    head, _, last = dotted.rpartition(".p99.9")
    return (*head.split("."), "p99.9") if last == "" and head else tuple(dotted.split("."))


# (label, dotted path in the report, format, whether a B / A ratio means something)
ROWS = [
    ("source", "source", "{}", False),
    ("model", "model.name", "{}", False),
    ("model sha256", "model.sha256", "{:.12}", False),
    ("profile", "emulation.profile.key", "{}", False),
    ("clock", "clock", "{}", False),
    ("queue policy", "config.queue_policy", "{}", False),
    ("queue size", "config.queue_size", "{}", False),
    ("host threads", "emulation.host_threads", "{}", False),
    ("inference factor", "emulation.stage_factors.inference", "{:.4g}", True),
    ("CPU-stage factor", "emulation.stage_factors.decode", "{:.4g}", True),
    ("offered fps", "offered_fps", "{:g}", True),
    ("frames replayed", "frames.replayed", "{}", True),
    ("frames classified", "frames.classified", "{}", True),
    ("frames dropped", "frames.dropped", "{}", True),
    ("error frames", "frames.errors", "{}", True),
    ("sustained fps", "throughput_fps", "{:.4g}", True),
    ("utilization", "utilization", "{:.1%}", True),
    ("latency p50 (ms)", "latency_ms.p50", "{:.4g}", True),
    ("latency p90 (ms)", "latency_ms.p90", "{:.4g}", True),
    ("latency p99 (ms)", "latency_ms.p99", "{:.4g}", True),
    ("latency p99.9 (ms)", "latency_ms.p99.9", "{:.4g}", True),
    ("latency max (ms)", "latency_ms.max", "{:.4g}", True),
    ("latency cv", "latency_ms.cv", "{:.3g}", True),
    ("inference p50 (ms)", "stage_ms.inference.p50", "{:.4g}", True),
    ("queueing p99 (ms)", "queue_delay_ms.p99", "{:.4g}", True),
    ("deadline (ms)", "deadline_ms", "{:g}", False),
    ("deadline misses", "deadline_misses", "{}", True),
    ("miss rate", "miss_rate", "{:.2%}", True),
    ("gate", "gate", "{}", False),
    ("peak RSS (MB)", "resources.peak_rss_mb", "{:.0f}", True),
    ("CPU use (%)", "resources.cpu_percent", "{:.0f}", True),
]


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _ratio(a: Any, b: Any) -> str:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numeric or a == 0:
        return ""
    return f"{b / a:.3g}x"


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(label, A, B, B / A) rows: the setup, then the figures."""
    rows = []
    for label, dotted, fmt, ratio in ROWS:
        va, vb = _get(a, _p(dotted)), _get(b, _p(dotted))
        rows.append((label, _fmt(va, fmt), _fmt(vb, fmt), _ratio(va, vb) if ratio else ""))
    return rows


def format_table(a: dict[str, Any], b: dict[str, Any], name_a: str = "A",
                 name_b: str = "B") -> str:
    """A Markdown table of :func:`compare_rows` (readable as plain text too)."""
    rows = compare_rows(a, b)
    header = ("", name_a, name_b, "B / A")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     + " |")
    return "\n".join(lines)
