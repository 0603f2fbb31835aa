"""``edge sim``: replay a frame stream at camera cadence and report latency against a deadline.

``edge sim`` is a command group whose default command is ``run``: when the first
argument is not the name of a sub-command (nor ``--help``), ``run`` is inserted,
so ``edge sim SOURCE --fps 2`` and ``edge sim run SOURCE --fps 2`` are the same.
The sub-commands (``compare``, ``loadgen``, ``profiles``) take precedence over a
source of the same name (write ``edge sim run compare`` to replay a folder called
``compare``).
"""

from __future__ import annotations

from pathlib import Path

import typer
from typer import _click
from typer.core import TyperGroup

from edge.bundle import DEFAULT_MODEL, BundleError, load_bundle
from edge.classify import FrameClassifier
from edge.commands import fail
from edge.decode import FrameError
from edge.runners import BACKENDS, make_runner
from edge.sources import SourceError, open_source
from firmware_sim.capture_queue import POLICIES
from firmware_sim.compare import CompareError, format_table, load_report
from firmware_sim.loadgen import SCENARIOS, LoadGenConfig, LoadGenUnavailable, run_loadgen
from firmware_sim.plots import write_plots
from firmware_sim.profiles import (
    DEFAULT_PROFILE,
    ProfileError,
    derive_emulation,
    get_profile,
    host_threads_for,
    load_profiles,
    profile_table,
)
from firmware_sim.replay import CLOCKS, DEFAULT_QUEUE_SIZE, FrameTiming, ReplayConfig, replay
from firmware_sim.report import (
    REPORT_FILE,
    build_report,
    format_summary,
    write_atomic,
    write_report,
)
from firmware_sim.report_md import REPORT_MD, write_markdown
from firmware_sim.streams import TIMINGS

DEFAULT_COMMAND = "run"


class DefaultCommandGroup(TyperGroup):
    """A Typer group that runs ``default_command`` when no sub-command is named."""

    default_command = DEFAULT_COMMAND

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        """Insert the default command unless ``args`` start with a sub-command or --help."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultCommandGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def sim_callback() -> None:
    """Replay frame streams at camera cadence through the edge runtime, under a hardware
    profile (an emulation, not cycle-accurate), and report latency against deadlines.

    `edge sim SOURCE --fps F` is short for `edge sim run SOURCE --fps F`.

    Example: edge sim ../shared/data/ai4mars-msl-ncam-256/images --fps 2 --profile rad750
    """


@app.command(DEFAULT_COMMAND)
def run_command(
    source: str = typer.Argument(..., help="Directory, quoted glob, image file or video file."),
    fps: float = typer.Option(None, "--fps",
                              help="Camera cadence in frames per second (> 0); required "
                                   "unless --timing clock."),
    profile_name: str = typer.Option(DEFAULT_PROFILE, "--profile", "-p",
                                     help="Hardware profile (edge sim profiles lists them)."),
    profiles_file: Path = typer.Option(None, "--profiles",
                                       help="JSON file of extra or overriding profiles."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder, or the name of a shipped bundle."),
    deadline_ms: float = typer.Option(None, "--deadline-ms",
                                      help="End-to-end budget per frame (capture to result)."),
    max_miss_rate: float = typer.Option(None, "--max-miss-rate",
                                        help="Exit 3 when the deadline-miss rate (late + "
                                             "dropped frames) exceeds this fraction."),
    clock: str = typer.Option("virtual", "--clock",
                              help=f"One of: {', '.join(CLOCKS)} (virtual: measure once, then "
                                   "simulate; real: frames arrive on the wall clock)."),
    timing: str = typer.Option("fixed", "--timing",
                               help=f"One of: {', '.join(TIMINGS)} (clock: the spacecraft "
                                    "clock in AI4Mars frame names)."),
    time_compression: float = typer.Option(1.0, "--time-compression",
                                           help="--timing clock: spacecraft seconds per "
                                                "replayed second."),
    burst: int = typer.Option(1, "--burst", help="Frames captured together (bursts at the "
                                                 "same mean rate)."),
    queue_size: int = typer.Option(DEFAULT_QUEUE_SIZE, "--queue-size",
                                   help="Capture-queue slots (0: unbounded)."),
    queue_policy: str = typer.Option("drop-oldest", "--queue-policy",
                                     help=f"When the queue is full: {', '.join(POLICIES)}."),
    threads: int = typer.Option(None, "--threads",
                                help="Inference threads on this host (default: the "
                                     "profile's, at most the host's cores)."),
    max_frames: int = typer.Option(None, "--max-frames", help="Replay at most N frames."),
    warmup: int = typer.Option(2, "--warmup",
                               help="Frames classified once, untimed, before the replay."),
    backend: str = typer.Option("onnxruntime", "--backend", help=f"One of: {', '.join(BACKENDS)}."),
    recursive: bool = typer.Option(False, "--recursive", help="Descend into sub-folders."),
    report_dir: Path = typer.Option(Path("out/sim"), "--report",
                                    help=f"Folder for {REPORT_FILE}, {REPORT_MD} and the plots."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw the PNG plots."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary (for scripts)."),
) -> None:
    """Replay SOURCE through the edge runtime under a hardware profile and report latency.

    Each frame's stages (decode, preprocess, inference, postprocess) are measured on this
    host through the same code as `edge classify`, scaled to the profile's target, and
    queued in a bounded capture queue on the virtual clock (or live, --clock real).
    Writes REPORT/report.json, REPORT/report.md and three PNG plots.

    Exit status: 0 every frame classified; 2 some frames skipped for bad input (listed
    in the report, the rest are replayed); 3 the deadline-miss rate exceeds
    --max-miss-rate (before 2); 1 usage, profile, source or model error (no report).

    Example: edge sim run ../shared/data/ai4mars-msl-ncam-256/images --fps 2 --deadline-ms 400
    """
    try:
        profiles = load_profiles(profiles_file)
        profile = get_profile(profile_name, profiles)
        config = ReplayConfig(
            fps=fps, deadline_ms=deadline_ms, threads=host_threads_for(profile, threads),
            max_frames=max_frames, warmup=warmup, backend=backend, timing=timing,
            time_compression=time_compression, burst=burst,
            queue_size=queue_size or None, queue_policy=queue_policy, clock=clock,
            max_miss_rate=max_miss_rate,
        )
    except ValueError as exc:  # ProfileError and ScheduleError are ValueErrors too
        raise fail(str(exc)) from None
    try:
        bundle = load_bundle(model)
        classifier = FrameClassifier(bundle, make_runner(bundle, config.backend, config.threads))
        frames = open_source(source, recursive=recursive)
        emulation = derive_emulation(profile, config.threads)
        result = replay(frames, classifier, config, emulation=emulation)
    except (BundleError, SourceError, ValueError) as exc:
        raise fail(str(exc)) from None
    report = build_report(result, source, bundle)
    try:
        path = write_report(report, report_dir)
        write_markdown(report, report_dir, plots)
        if plots:
            write_plots(report, report_dir)
    except OSError as exc:
        raise fail(f"cannot write the report under '{report_dir}' ({exc})") from None
    if not quiet:
        for line in format_summary(report):
            typer.echo(line)
        typer.echo(f"report -> {path} (and {REPORT_MD}{', plots' if plots else ''})")
    _print_errors(result.errors)
    if result.gate_failed:
        typer.echo(f"gate failed: deadline-miss rate {result.miss_rate:.2%} exceeds "
                   f"--max-miss-rate {config.max_miss_rate:.2%}", err=True)
    raise typer.Exit(code=result.exit_code)


def _print_errors(errors: list[FrameTiming]) -> None:
    for frame in errors:
        typer.echo(f"skipped {frame.name}: {frame.error}", err=True)


@app.command("compare")
def compare_command(
    report_a: Path = typer.Argument(..., help="First report.json (or its folder)."),
    report_b: Path = typer.Argument(..., help="Second report.json (or its folder)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the table to this file."),
) -> None:
    """Show two simulator reports side by side (two bundles, two profiles...), with B / A.

    Example: edge sim compare out/sim-host/report.json out/sim-rad750/report.json
    """
    try:
        a, b = load_report(report_a), load_report(report_b)
    except CompareError as exc:
        raise fail(str(exc)) from None
    table = format_table(a, b, name_a=f"A: {report_a}", name_b=f"B: {report_b}")
    typer.echo(table)
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(out, (table + "\n").encode("utf-8"))
        except OSError as exc:
            raise fail(f"cannot write '{out}' ({exc.strerror or exc})") from None


@app.command("profiles")
def profiles_command(
    profiles_file: Path = typer.Option(None, "--profiles",
                                       help="JSON file of extra or overriding profiles."),
) -> None:
    """List the hardware profiles (shipped, plus those of --profiles FILE).

    Example: edge sim profiles
    """
    try:
        profiles = load_profiles(profiles_file)
    except ProfileError as exc:
        raise fail(str(exc)) from None
    for line in profile_table(profiles):
        typer.echo(line)


@app.command("loadgen")
def loadgen_command(
    source: str = typer.Argument(..., help="Directory, quoted glob, image file or video file."),
    scenario: str = typer.Option("SingleStream", "--scenario",
                                 help=f"One of: {', '.join(SCENARIOS)}."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder, or the name of a shipped bundle."),
    threads: int = typer.Option(1, "--threads", min=1, help="Inference threads."),
    max_frames: int = typer.Option(None, "--max-frames", min=1,
                                   help="Load at most N frames into the sample library."),
    min_duration_ms: int = typer.Option(10_000, "--min-duration-ms",
                                        help="LoadGen minimum duration (MLPerf: 600000)."),
    min_query_count: int = typer.Option(64, "--min-query-count",
                                        help="LoadGen minimum query count (MLPerf "
                                             "SingleStream: 1024)."),
    max_query_count: int = typer.Option(0, "--max-query-count", help="Stop after N queries "
                                                                     "(0: no limit)."),
    expected_latency_ms: float = typer.Option(10.0, "--expected-latency-ms",
                                              help="SingleStream hint."),
    offline_qps: float = typer.Option(100.0, "--offline-qps", help="Offline hint."),
    recursive: bool = typer.Option(False, "--recursive", help="Descend into sub-folders."),
    report_dir: Path = typer.Option(Path("out/loadgen"), "--report",
                                    help="Folder for mlperf_log_summary.txt and the detail log."),
) -> None:
    """Drive the edge runtime with MLPerf LoadGen (optional extra 'sim': mlcommons-loadgen).

    The frames are decoded into memory first (LoadGen's sample library); each query
    classifies its frames with the same FrameClassifier as `edge classify`, on this host.

    Example: edge sim loadgen ../shared/data/ai4mars-msl-ncam-256/images --max-frames 64
    """
    try:
        config = LoadGenConfig(scenario=scenario, min_duration_ms=min_duration_ms,
                               min_query_count=min_query_count, max_query_count=max_query_count,
                               expected_latency_ms=expected_latency_ms,
                               offline_expected_qps=offline_qps)
        bundle = load_bundle(model)
        classifier = FrameClassifier(bundle, make_runner(bundle, "onnxruntime", threads))
        samples = []
        for i, ref in enumerate(open_source(source, recursive=recursive)):
            if max_frames is not None and i >= max_frames:
                break
            try:
                samples.append((ref.name, ref.load()))
            except FrameError as exc:
                typer.echo(f"skipped {exc}", err=True)
        if not samples:
            raise SourceError(f"'{source}' holds no readable frame to load")
        result = run_loadgen(samples, classifier, config, report_dir)
    except (ValueError, BundleError, SourceError, LoadGenUnavailable) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write under '{report_dir}' ({exc.strerror or exc})") from None
    summary = result["summary"]
    for key in ("Scenario", "Result is", "90.0th percentile latency (ns)",
                "Samples per second", "QPS w/o loadgen overhead"):
        if key in summary:
            typer.echo(f"{key}: {summary[key]}")
    typer.echo(f"LoadGen logs -> {Path(report_dir) / 'mlperf_log_summary.txt'}")
