"""``edge sim``: replay a frame stream at camera cadence and report latency against a deadline.

``edge sim`` is a command group whose default command is ``run``: when the first
argument is not the name of a sub-command (nor ``--help``), ``run`` is inserted,
so ``edge sim SOURCE --fps 2`` and ``edge sim run SOURCE --fps 2`` are the same.
Further sub-commands (``edge sim compare A B``, ...) are added with
``@app.command(...)`` and take precedence over a source of the same name
(write ``edge sim run compare`` to replay a folder called ``compare``).
"""

from __future__ import annotations

from pathlib import Path

import typer
from typer import _click
from typer.core import TyperGroup

from edge.bundle import DEFAULT_MODEL, BundleError, load_bundle
from edge.classify import FrameClassifier
from edge.commands import fail
from edge.runners import BACKENDS, make_runner
from edge.sources import SourceError, open_source
from firmware_sim.replay import FrameTiming, ReplayConfig, replay
from firmware_sim.report import REPORT_FILE, build_report, format_summary, write_report

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
    """Replay frame streams at camera cadence through the edge runtime.

    `edge sim SOURCE --fps F` is short for `edge sim run SOURCE --fps F`.

    Example: edge sim ../shared/data/ai4mars-msl-ncam-256/images --fps 2 --deadline-ms 400
    """


@app.command(DEFAULT_COMMAND)
def run_command(
    source: str = typer.Argument(..., help="Directory, quoted glob, image file or video file."),
    fps: float = typer.Option(..., "--fps", help="Camera cadence in frames per second (> 0)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder, or the name of a shipped bundle."),
    deadline_ms: float = typer.Option(None, "--deadline-ms",
                                      help="End-to-end budget per frame (arrival to result)."),
    threads: int = typer.Option(1, "--threads", help="Inference threads."),
    max_frames: int = typer.Option(None, "--max-frames", help="Replay at most N frames."),
    warmup: int = typer.Option(2, "--warmup",
                               help="Frames classified once, untimed, before the replay."),
    backend: str = typer.Option("onnxruntime", "--backend", help=f"One of: {', '.join(BACKENDS)}."),
    report_dir: Path = typer.Option(Path("out/sim"), "--report",
                                    help=f"Folder for {REPORT_FILE}."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary (for scripts)."),
) -> None:
    """Replay SOURCE at --fps through the edge runtime and report end-to-end latency.

    Each frame's service time is measured on this host (decode, preprocess,
    inference, postprocess); frames arrive every 1/fps s on a virtual clock and
    queue first in, first out. Writes REPORT/report.json. Exit status: 0 every
    frame classified, 2 some frames skipped for bad input (listed in the report,
    the rest are replayed), 1 usage, source or model error (no report).

    Example: edge sim run ../shared/data/ai4mars-msl-ncam-256/images --fps 2 --deadline-ms 400
    """
    try:
        config = ReplayConfig(fps=fps, deadline_ms=deadline_ms, threads=threads,
                              max_frames=max_frames, warmup=warmup, backend=backend)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        bundle = load_bundle(model)
        classifier = FrameClassifier(bundle, make_runner(bundle, config.backend, config.threads))
        frames = open_source(source)
        result = replay(frames, classifier, config)
    except (BundleError, SourceError) as exc:
        raise fail(str(exc)) from None
    report = build_report(result, source, bundle)
    try:
        path = write_report(report, report_dir)
    except OSError as exc:
        raise fail(f"cannot write the report under '{report_dir}' ({exc})") from None
    if not quiet:
        for line in format_summary(report):
            typer.echo(line)
        typer.echo(f"report -> {path}")
    _print_errors(result.errors)
    raise typer.Exit(code=result.exit_code)


def _print_errors(errors: list[FrameTiming]) -> None:
    for frame in errors:
        typer.echo(f"skipped {frame.name}: {frame.error}", err=True)

