"""The simulator's report: one versioned JSON document per replay, written atomically.

Schema version 1 (top-level keys): ``schema_version``, ``kind``, ``created``,
``git_revision``, ``host``, ``source``, ``model`` (path, name, sha256, precision),
``config`` (the :class:`~firmware_sim.replay.ReplayConfig`), ``frames`` (counts),
``error_frames`` (frame, error), ``offered_fps``, ``throughput_fps``, ``utilization``,
``busy_s``, ``makespan_s``, ``measure_wall_s``, ``stage_ms``, ``service_ms``,
``latency_ms``, ``queue_delay_ms`` (statistics from :func:`edge.latency.summarize_ms`),
``deadline_ms``, ``deadline_misses``, ``miss_rate`` and ``timeline`` (one entry per
replayed frame, in stream order).

Latency, queue-delay and stage statistics and the miss rate cover the classified
frames; error frames still occupied the server, so they count in ``busy_s``,
``throughput_fps`` and in the queueing of the frames behind them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.latency import summarize_ms
from firmware_sim.replay import ReplayResult

SCHEMA_VERSION = 1
REPORT_KIND = "firmware_sim.replay"
REPORT_FILE = "report.json"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def git_revision() -> str | None:
    """The git commit of this checkout, or None when it cannot be told."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else None


def stage_names(result: ReplayResult) -> list[str]:
    """Stage names of the classified frames, in the order the runtime reports them."""
    names: list[str] = []
    for frame in result.frames:
        for stage in frame.stage_ms or {}:
            if stage not in names:
                names.append(stage)
    return names


def build_report(result: ReplayResult, source: str, bundle: Bundle) -> dict[str, Any]:
    """The JSON-ready report of one replay of ``source`` with ``bundle``."""
    config = result.config
    trace = result.trace
    ok = result.ok
    classified = [f for f in result.frames if f.error is None]
    busy_s = float(trace.service.sum()) / 1e3
    replayed = len(result.frames)
    throughput = replayed / busy_s if busy_s > 0 else None
    misses = result.misses
    deadline = config.deadline_ms is not None
    manifest = bundle.manifest
    timeline = []
    for i, frame in enumerate(result.frames):
        timeline.append({
            "frame": frame.name,
            "arrival_ms": _r(trace.arrival[i]),
            "start_ms": _r(trace.start[i]),
            "finish_ms": _r(trace.finish[i]),
            "service_ms": _r(trace.service[i]),
            "queue_delay_ms": _r(trace.queue_delay[i]),
            "latency_ms": _r(trace.latency[i]),
            "missed": bool(misses[i]) if deadline and frame.error is None else None,
            "error": frame.error,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "source": str(source),
        "model": {
            "path": str(Path(bundle.path).resolve()),
            "name": manifest.name,
            "sha256": manifest.sha256,
            "precision": manifest.precision,
        },
        "config": asdict(config),
        "frames": {
            "replayed": replayed,
            "classified": len(classified),
            "errors": replayed - len(classified),
            "warmup": result.warmed_up,
            "tiles": sum(f.tiles for f in classified),
        },
        "error_frames": [{"frame": f.name, "error": f.error} for f in result.errors],
        "offered_fps": float(config.fps),
        "throughput_fps": _r(throughput),
        "utilization": _r(config.fps / throughput, 4) if throughput else None,
        "busy_s": _r(busy_s, 4),
        "makespan_s": _r((trace.finish[-1] - trace.arrival[0]) / 1e3, 4),
        "measure_wall_s": _r(result.wall_s, 4),
        "stage_ms": {
            s: summarize_ms([f.stage_ms[s] for f in classified if s in f.stage_ms])
            for s in stage_names(result)
        },
        "service_ms": summarize_ms(trace.service[ok].tolist()),
        "latency_ms": summarize_ms(trace.latency[ok].tolist()),
        "queue_delay_ms": summarize_ms(trace.queue_delay[ok].tolist()),
        "deadline_ms": config.deadline_ms,
        "deadline_misses": int(np.count_nonzero(misses)) if deadline else None,
        "miss_rate": _r(np.count_nonzero(misses) / len(classified), 4)
        if deadline and classified else None,
        "timeline": timeline,
    }


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/report.json`` atomically (temporary file in ``out_dir``, then renamed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / REPORT_FILE
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{REPORT_FILE}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def format_summary(report: dict[str, Any]) -> list[str]:
    """A few human-readable lines: frames, end-to-end p50/p99, throughput, misses."""
    frames = report["frames"]
    lat = report["latency_ms"]
    lines = [
        f"replayed {frames['replayed']} frames at {report['offered_fps']:g} fps: "
        f"{frames['classified']} classified, {frames['errors']} skipped for bad input",
        f"end-to-end latency p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, "
        f"max {_ms(lat['max'])}; queue delay p99 {_ms(report['queue_delay_ms']['p99'])}",
    ]
    throughput = report["throughput_fps"]
    if throughput is not None:
        lines.append(f"host sustains {throughput:.1f} frames/s "
                     f"(utilization {report['utilization']:.1%} at the offered rate)")
    if report["deadline_ms"] is not None:
        rate = report["miss_rate"]
        rate_text = "n/a" if rate is None else f"{rate:.1%}"
        lines.append(f"deadline {report['deadline_ms']:g} ms: "
                     f"{report['deadline_misses']} misses ({rate_text})")
    return lines
