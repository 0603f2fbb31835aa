"""``report.md``: the report.json of a replay rendered for people (Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware_sim.plots import PLOT_FILES
from firmware_sim.report import write_atomic
from firmware_sim.stats import PERCENTILES, percentile_key

REPORT_MD = "report.md"
LIST_LIMIT = 50
STAT_COLUMNS = ("count", "min", "mean", *(percentile_key(p) for p in PERCENTILES), "max", "cv")


def _v(value: Any, fmt: str = "{:.3g}") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return fmt.format(value)
    return str(value)


def _stats_row(name: str, stats: dict[str, Any]) -> str:
    cells = [str(stats.get(key)) if key == "count" else _v(stats.get(key), "{:.2f}")
             for key in STAT_COLUMNS]
    return f"| {name} | " + " | ".join(cells) + " |"


def _names(items: list[str], limit: int = LIST_LIMIT) -> list[str]:
    lines = [f"- {name}" for name in items[:limit]]
    if len(items) > limit:
        lines.append(f"- ... and {len(items) - limit} more (all listed in report.json)")
    return lines


def render_markdown(report: dict[str, Any], plots: bool = True) -> str:
    """The Markdown text of a report (schema version 2); ``plots``: whether the run drew
    its latency plots beside it (else the section says they were not drawn)."""
    frames = report["frames"]
    emulation = report.get("emulation") or {}
    profile = emulation.get("profile") or {}
    config = report["config"]
    out = [
        f"# Firmware simulation: {report['source']}",
        "",
        f"> **{report['disclaimer']}**",
        "",
        f"- created {report['created']}, git revision {report.get('git_revision') or 'unknown'}",
        f"- command: `{report.get('command') or 'n/a'}`",
        f"- model: {report['model']['name']} ({report['model']['precision']}, sha256 "
        f"{report['model']['sha256'][:16]}...)",
        f"- host: {report['host']['cpu']}, {report['host']['cpus_usable']} usable cores "
        f"({report['host']['platform']})",
        f"- profile: **{profile.get('key', 'host')}**: {profile.get('title', '')}"
        f"{' (rough)' if profile.get('rough') else ''}",
        f"- clock: {report['clock']}; stream: {config['timing']} timing"
        + (f" at {config['fps']:g} fps" if config.get("fps") else "")
        + (f", bursts of {config['burst']}" if config.get("burst", 1) > 1 else "")
        + (f", time compression {config['time_compression']:g}"
           if config["timing"] == "clock" else ""),
        f"- capture queue: {config['queue_size'] or 'unbounded'} slots, policy "
        f"{config['queue_policy']}",
        "",
        "## Verdict",
        "",
    ]
    if report["deadline_ms"] is not None:
        rate = report["miss_rate"]
        gate = report.get("gate")
        out.append(f"Deadline {report['deadline_ms']:g} ms: **{report['deadline_misses']} "
                   f"misses** ({'n/a' if rate is None else f'{rate:.2%}'}) = "
                   f"{report['late_frames']} late + {frames['dropped']} dropped"
                   + (f"; gate **{gate.upper()}** (max miss rate {report['max_miss_rate']:.2%})"
                      if gate else "") + ".")
    else:
        out.append("No deadline given (--deadline-ms): latency only.")
    out += [
        "",
        f"Frames: {frames['replayed']} replayed, {frames['classified']} classified, "
        f"{frames['errors']} error frames, {frames['dropped']} dropped by the capture queue "
        f"({frames['warmup']} warm-up frames classified untimed first).",
        "",
        f"Offered {_v(report['offered_fps'], '{:.4g}')} fps; the emulated target sustains "
        f"{_v(report['throughput_fps'])} frames/s (utilization "
        f"{_v(report['utilization'], '{:.1%}')}); completed {_v(report['completed_fps'])} "
        f"frames/s over a makespan of {_v(report['makespan_s'])} s.",
        "",
        "## Latency on the emulated target (ms)",
        "",
        "| | " + " | ".join(STAT_COLUMNS) + " |",
        "|---|" + "---:|" * len(STAT_COLUMNS),
    ]
    for stage, stats in report["stage_ms"].items():
        out.append(_stats_row(stage, stats))
    out.append(_stats_row("service (all stages)", report["service_ms"]))
    out.append(_stats_row("queueing delay", report["queue_delay_ms"]))
    if (report.get("camera_stall_ms") or {}).get("max"):
        out.append(_stats_row("camera stall (block)", report["camera_stall_ms"]))
    out.append(_stats_row("**end to end**", report["latency_ms"]))
    if report.get("realtime_lag_ms"):
        out.append(_stats_row("real-clock lag", report["realtime_lag_ms"]))
    out += ["", "Measured on this host, before scaling (ms):", "",
            "| | " + " | ".join(STAT_COLUMNS) + " |", "|---|" + "---:|" * len(STAT_COLUMNS)]
    for stage, stats in report["host_stage_ms"].items():
        out.append(_stats_row(stage, stats))
    res = report["resources"]
    out += [
        "",
        "## Resources",
        "",
        f"- peak RSS {_v(res['peak_rss_mb'], '{:.0f}')} MB"
        + (f" against a memory cap of {res['memory_cap_mb']:g} MB"
           f" ({'EXCEEDED' if res['over_memory_cap'] else 'within'})"
           if res["memory_cap_mb"] else " (the profile has no memory cap)"),
        f"- CPU {_v(res['cpu_s'])} s over {_v(res['wall_s'])} s of wall time "
        f"({_v(res['cpu_percent'], '{:.0f}')} %)",
        f"- {res['note']}",
        "",
        "## Emulation",
        "",
    ]
    for key, factor in (emulation.get("stage_factors") or {}).items():
        out.append(f"- {key}: x{factor:.4g}")
    out.append("")
    for line in emulation.get("derivation") or []:
        out.append(f"- {line}")
    for name, cal in (emulation.get("calibration") or {}).items():
        out.append(f"- host calibration ({name.replace('_', ' ')}): {cal['gflops']:.2f} GFLOP/s "
                   f"best, {cal['median_gflops']:.2f} median ({cal['workload']}, N={cal['size']}, "
                   f"{cal['cpu']})")
    for unit_key in ("cpu", "accelerator"):
        unit = profile.get(unit_key)
        if unit:
            out.append(f"- target {unit_key}: {unit['name']}: {unit['derivation']}")
    if profile.get("published"):
        out += ["", "Published figures:", ""]
        for item in profile["published"]:
            out.append(f"- {item.get('figure', '')} ({item.get('source', 'source not given')})")
    if profile.get("notes"):
        out += ["", f"Notes: {profile['notes']}"]
    if report.get("warnings"):
        out += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    if report["error_frames"]:
        out += ["", "## Error frames", ""]
        out += _names([f"{e['frame']}: {e['error']}" for e in report["error_frames"]])
    if report["dropped_frames"]:
        out += ["", f"## Dropped frames ({len(report['dropped_frames'])})", ""]
        out += _names(report["dropped_frames"])
    out += ["", "## Plots", ""]
    if not plots:
        out.append("Not drawn for this run (`--no-plots`).")
    for name, file in PLOT_FILES.items() if plots else ():
        out.append(f"![{name.replace('_', ' ')}]({file})")
    out.append("")
    return "\n".join(out)


def write_markdown(report: dict[str, Any], out_dir: str | Path, plots: bool = True) -> Path:
    """Write ``out_dir/report.md`` atomically. Without ``plots``, an earlier run's plot
    files in ``out_dir`` are removed first, so that they are not read as this run's."""
    if not plots:
        for file in PLOT_FILES.values():
            (Path(out_dir) / file).unlink(missing_ok=True)
    return write_atomic(Path(out_dir) / REPORT_MD, render_markdown(report, plots).encode("utf-8"))
