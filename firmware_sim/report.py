"""The simulator's report: one versioned JSON document per replay, written atomically.

Schema version 2 (top-level keys):

- identity: ``schema_version``, ``kind``, ``created``, ``git_revision``, ``command``,
  ``host`` (platform, CPU, cores), ``source``, ``model`` (path, name, sha256, precision),
  ``config`` (the :class:`~firmware_sim.replay.ReplayConfig`), ``clock``;
- ``emulation``: the profile (published figures and sources), the stage factors, the
  host calibration measured for them, the derivation and the disclaimer;
- ``frames`` (replayed, classified, errors, dropped, late, warmup, tiles),
  ``error_frames`` (frame, error), ``dropped_frames`` (names);
- rates: ``offered_fps``, ``throughput_fps`` (served frames per second of busy server:
  what the emulated target sustains), ``completed_fps`` (classified frames over the
  makespan), ``utilization``, ``busy_s``, ``makespan_s``, ``measure_wall_s``;
- statistics (:func:`firmware_sim.stats.summarize`: count, min, mean, p50, p90, p95, p99,
  p99.9, max, std, cv), all in ms on the emulated target: ``stage_ms`` (decode,
  preprocess, inference, postprocess), ``host_stage_ms`` (as measured here),
  ``service_ms``, ``latency_ms`` (end to end, capture to result), ``queue_delay_ms``
  (capture to start of service), ``camera_stall_ms`` (block policy);
- deadline: ``deadline_ms``, ``late_frames``, ``deadline_misses`` (late + dropped),
  ``miss_rate`` (misses / (classified + dropped)), ``max_miss_rate``, ``gate``
  ("pass", "fail" or null);
- ``resources``: peak RSS, memory cap, CPU time and use; ``realtime_lag_ms`` (real clock);
- ``warnings`` (too few frames for a percentile, memory cap exceeded, rough profile...),
  ``exit_code`` and ``timeline`` (one entry per replayed frame, in replay order).

Statistics cover the classified frames; error frames still occupied the server, so they
count in ``busy_s``, ``throughput_fps`` and in the queueing of the frames behind them.
Dropped frames were never served: they count as deadline misses, not in the statistics.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic_file import write_bytes_atomic
from edge.bundle import Bundle
from edge.cpu_info import cpu_info
from firmware_sim.calibration import host_cpus
from firmware_sim.profiles import DISCLAIMER, STAGES
from firmware_sim.replay import ReplayResult
from firmware_sim.stats import percentile_warnings, summarize

SCHEMA_VERSION = 2
REPORT_KIND = "firmware_sim.replay"
REPORT_FILE = "report.json"


def _r(value: float | None, digits: int = 3) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


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


def _status(result: ReplayResult, i: int) -> str:
    if result.dropped[i]:
        return "dropped"
    if result.frames[i].error is not None:
        return "error"
    return "late" if result.late[i] else "ok"


def _warnings(result: ReplayResult, classified: int, resources: dict[str, Any]) -> list[str]:
    warnings = percentile_warnings(classified)
    emulation = result.emulation
    if emulation is not None and emulation.profile.rough:
        warnings.append(f"profile '{emulation.profile.key}' is rough: its factor rests on "
                        f"assumptions beyond vendor figures (see its notes)")
    if resources.get("over_memory_cap"):
        warnings.append(f"peak RSS {resources['peak_rss_mb']:.0f} MB exceeds the profile's "
                        f"memory cap of {resources['memory_cap_mb']:g} MB")
    if result.lag_ms is not None:
        lag = result.lag_ms[np.isfinite(result.lag_ms)]
        if lag.size and float(lag.max()) > max(5.0, 0.05 * (result.config.period_ms or 0.0)):
            warnings.append(f"real clock: service started up to {float(lag.max()):.1f} ms late "
                            "on the wall clock (the host cannot run as fast as the emulated "
                            "target, or was busy); the emulated timeline is still exact")
    if result.dropped.any() and result.config.deadline_ms is None:
        warnings.append(f"{int(result.dropped.sum())} frames were dropped by the capture queue")
    warnings.extend(result.notes)
    return warnings


def build_report(result: ReplayResult, source: str, bundle: Bundle) -> dict[str, Any]:
    """The JSON-ready report of one replay of ``source`` with ``bundle``."""
    config = result.config
    trace = result.trace
    ok = result.ok
    dropped = result.dropped
    served = ~dropped
    classified = [f for f, k in zip(result.frames, ok, strict=True) if k]
    busy_s = float(np.nansum(trace.service[served])) / 1e3
    n_served = int(served.sum())
    throughput = n_served / busy_s if busy_s > 0 else None
    deadline = config.deadline_ms is not None
    misses = result.misses
    late = result.late
    manifest = bundle.manifest
    finish = trace.finish[served]
    makespan_s = (float(np.nanmax(finish)) - float(trace.arrival[0])) / 1e3 if finish.size else None
    timeline = []
    for i, frame in enumerate(result.frames):
        timeline.append({
            "frame": frame.name,
            "arrival_ms": _r(trace.arrival[i]),
            "enqueue_ms": _r(trace.enqueue[i]),
            "start_ms": _r(trace.start[i]),
            "finish_ms": _r(trace.finish[i]),
            "service_ms": _r(trace.service[i]),
            "queue_delay_ms": _r(trace.queue_delay[i]),
            "latency_ms": _r(trace.latency[i]),
            "status": _status(result, i),
            # A dropped frame is a miss even if it was bad input (the virtual clock decodes
            # every frame), as the totals count it; a bad frame that was served is an error.
            "missed": (bool(misses[i]) if deadline and (dropped[i] or frame.error is None)
                       else None),
            "error": frame.error if not dropped[i] else None,
        })
    usage = result.usage
    emulation = result.emulation
    cap = emulation.profile.memory_cap_mb if emulation is not None else None
    resources: dict[str, Any] = {
        "peak_rss_mb": _r(usage.peak_rss_mb, 1) if usage and usage.peak_rss_mb else None,
        "memory_cap_mb": cap,
        "over_memory_cap": bool(usage and cap and usage.peak_rss_mb
                                and usage.peak_rss_mb > cap),
        "cpu_s": _r(usage.cpu_s, 3) if usage else None,
        "wall_s": _r(usage.wall_s, 3) if usage else None,
        "cpu_percent": _r(usage.cpu_percent, 1) if usage and usage.cpu_percent else None,
        "note": "peak RSS of the simulator process (Python, ONNX Runtime, frames); CPU use is "
                "process CPU time over wall time while measuring (above 100 % with threads)",
    }
    rate = result.miss_rate
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "command": " ".join(["edge", *sys.argv[1:]]) if sys.argv else None,
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu": cpu_info().name,
            "cpu_features": list(cpu_info().features),
            "int8_dot": cpu_info().int8_dot,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "cpus_usable": host_cpus(),
        },
        "source": str(source),
        "model": {
            "path": str(Path(bundle.path).resolve()),
            "name": manifest.name,
            "sha256": manifest.sha256,
            "precision": manifest.precision,
        },
        "config": asdict(config),
        "clock": config.clock,
        "emulation": emulation.to_json() if emulation is not None else None,
        "disclaimer": DISCLAIMER,
        "frames": {
            "replayed": len(result.frames),
            "classified": len(classified),
            "errors": len(result.errors),
            "dropped": int(dropped.sum()),
            "late": int(late.sum()),
            "warmup": result.warmed_up,
            "tiles": sum(f.tiles for f in classified),
        },
        "error_frames": [{"frame": f.name, "error": f.error} for f in result.errors],
        "dropped_frames": [f.name for f, d in zip(result.frames, dropped, strict=True) if d],
        "offered_fps": _r(offered_fps(result), 6),
        "throughput_fps": _r(throughput),
        "completed_fps": _r(len(classified) / makespan_s) if makespan_s else None,
        "utilization": _r(offered_fps(result) / throughput, 4)
        if throughput and offered_fps(result) else None,
        "busy_s": _r(busy_s, 4),
        "makespan_s": _r(makespan_s, 4),
        "measure_wall_s": _r(result.wall_s, 4),
        "stage_ms": {s: summarize([f.stage_ms[s] for f in classified if s in f.stage_ms])
                     for s in _ordered_stages(result)},
        "host_stage_ms": {s: summarize([(f.host_stage_ms or f.stage_ms)[s] for f in classified
                                        if s in (f.host_stage_ms or f.stage_ms)])
                          for s in _ordered_stages(result)},
        "service_ms": summarize(trace.service[ok]),
        "latency_ms": summarize(trace.latency[ok]),
        "queue_delay_ms": summarize(trace.queue_delay[ok]),
        "camera_stall_ms": summarize(trace.blocked[ok]),
        "deadline_ms": config.deadline_ms,
        "late_frames": int(late.sum()) if deadline else None,
        "deadline_misses": int(np.count_nonzero(misses)) if deadline else None,
        "miss_rate": _r(rate, 4),
        "max_miss_rate": config.max_miss_rate,
        "gate": None if config.max_miss_rate is None or rate is None
        else ("fail" if result.gate_failed else "pass"),
        "resources": resources,
        "realtime_lag_ms": summarize(result.lag_ms) if result.lag_ms is not None else None,
        "warnings": _warnings(result, len(classified), resources),
        "exit_code": result.exit_code,
        "timeline": timeline,
    }


def offered_fps(result: ReplayResult) -> float | None:
    """The configured cadence, or for the clock timing the mean rate of the schedule."""
    if result.config.timing == "fixed":
        return float(result.config.fps)
    arrival = result.trace.arrival
    span_s = (float(arrival[-1]) - float(arrival[0])) / 1e3 if arrival.size > 1 else 0.0
    return (arrival.size - 1) / span_s if span_s > 0 else None


def _ordered_stages(result: ReplayResult) -> list[str]:
    names = stage_names(result)
    return [s for s in STAGES if s in names] + [s for s in names if s not in STAGES]


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    return write_bytes_atomic(path, data)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/report.json`` atomically (temporary file in ``out_dir``, then renamed)."""
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    return write_atomic(Path(out_dir) / REPORT_FILE, text.encode("utf-8"))


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _fps(value: float | None) -> str:
    return "n/a fps" if value is None else f"{value:.4g} fps"


def format_summary(report: dict[str, Any]) -> list[str]:
    """A few human-readable lines: frames, end-to-end p50/p99, throughput, misses."""
    frames = report["frames"]
    lat = report["latency_ms"]
    emulation = report.get("emulation")
    where = (f" on profile '{emulation['profile']['key']}' ({report.get('clock', 'virtual')} "
             "clock)") if emulation else ""
    lines = [
        f"replayed {frames['replayed']} frames at {_fps(report['offered_fps'])}{where}: "
        f"{frames['classified']} classified, {frames['errors']} skipped for bad input, "
        f"{frames.get('dropped', 0)} dropped by the capture queue",
        f"end-to-end latency p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, "
        f"max {_ms(lat['max'])}; queue delay p99 {_ms(report['queue_delay_ms']['p99'])}",
    ]
    throughput = report["throughput_fps"]
    if throughput is not None:
        util = report["utilization"]
        util_text = "" if util is None else f" (utilization {util:.1%} at the offered rate)"
        lines.append(f"sustains {throughput:.4g} frames/s{util_text}")
    if report["deadline_ms"] is not None:
        rate = report["miss_rate"]
        rate_text = "n/a" if rate is None else f"{rate:.1%}"
        gate = report.get("gate")
        gate_text = (f"; gate {gate.upper()} (max {report['max_miss_rate']:.1%})"
                     if gate else "")
        lines.append(f"deadline {report['deadline_ms']:g} ms: "
                     f"{report['deadline_misses']} misses ({rate_text}, "
                     f"{report.get('late_frames', 0)} late + {frames.get('dropped', 0)} "
                     f"dropped){gate_text}")
    for warning in report.get("warnings", []):
        lines.append(f"warning: {warning}")
    return lines
