"""``edge classify`` and ``edge bench``: thin CLI over :mod:`edge.run` and :mod:`edge.bench`."""

from __future__ import annotations

import itertools
import shlex
import sys
from pathlib import Path

import typer

from edge.bench import BenchConfig, bench, format_table
from edge.bundle import DEFAULT_MODEL, BundleError, load_bundle
from edge.cpu_info import cpu_info
from edge.options import ClassifyOptions, OptionsError, parse_formats
from edge.outputs import write_json_atomic
from edge.progress import ProgressBar, skipped_lines, summary_lines
from edge.run import classify_frames, open_run
from edge.rundir import RunDirError
from edge.runners import BACKENDS
from edge.sources import SourceError, open_source


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit-1 exception for the caller to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def classify_command(
    source: str = typer.Argument(
        ..., help="Directory, quoted glob, image file, video file, or camera index (0, 1...)."),
    out: Path = typer.Option(Path("out/classify"), "--out", "-o", help="Output directory."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder, or the name of a shipped bundle."),
    threads: int = typer.Option(1, "--threads", min=1,
                                help="CPU threads for inference and for OpenCV."),
    backend: str = typer.Option("onnxruntime", "--backend", help=f"One of: {', '.join(BACKENDS)}."),
    max_frames: int = typer.Option(None, "--max-frames", min=1,
                                   help="Only the first N frames of the source."),
    recursive: bool = typer.Option(False, "--recursive", help="Descend into sub-folders."),
    stride: int = typer.Option(None, "--stride", min=1,
                               help="Tile stride in reference pixels (default: the bundle's); "
                                    "smaller than the tile size gives overlapping tiles."),
    min_confidence: float = typer.Option(
        None, "--min-confidence",
        help="Label tiles whose best class has a lower probability 'uncertain' "
             "(class_id, confidence and best_label keep the best class)."),
    output_format: str = typer.Option("jsonl", "--format",
                                      help="jsonl, csv, or jsonl,csv for both."),
    overlay: bool = typer.Option(False, "--overlay",
                                 help="Also write OUT/overlays/*.png and OUT/contact_sheet.html."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the run in OUT: classify only frames not in it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in OUT."),
    progress: bool = typer.Option(False, "--progress",
                                  help="Progress line on stderr even when it is not a terminal."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No progress line and no summary (for scripts)."),
) -> None:
    """Classify the terrain tiles of every frame in SOURCE.

    Writes OUT/tiles.jsonl (one line per tile), OUT/frames.jsonl (one line per
    frame) and OUT/run.json (model, options, summary); while running, the files are
    OUT/*.partial. Exit status: 0 all frames classified, 2 some frames skipped for
    bad input (the rest are classified), 1 usage, model or output-folder error.

    Example: edge classify ../shared/data/ai4mars-msl-ncam-256/images --out out/demo
    """
    try:
        options = ClassifyOptions(
            source=source, out_dir=out, model=model, backend=backend, threads=threads,
            recursive=recursive, max_frames=max_frames, stride=stride,
            min_confidence=min_confidence, formats=parse_formats(output_format),
            overlay=overlay, resume=resume, overwrite=overwrite)
        classifier, frames = open_run(options)
    except (BundleError, SourceError, OptionsError) as exc:
        raise fail(str(exc)) from None
    show_progress = not quiet and (progress or sys.stderr.isatty())
    observer = ProgressBar(sys.stderr) if show_progress else None
    command = shlex.join(["edge", *sys.argv[1:]])
    try:
        summary = classify_frames(frames, classifier, options, observer=observer,
                                  command=command)
    except (RunDirError, OptionsError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # --out is a file, not writable, disk full: no result is published
        raise fail(f"cannot write the results to '{out}' ({exc.strerror or exc})") from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted; the frames done so far are kept in '{out}': continue with "
                   "the same command and --resume", err=True)
        raise typer.Exit(code=130) from None
    report = summary.report()
    if not quiet:
        for line in summary_lines(report, str(out)):
            typer.echo(line)
        for line in skipped_lines(report):
            typer.echo(line, err=True)
    raise typer.Exit(code=summary.exit_code)


def bench_command(
    source: str = typer.Argument(..., help="Directory, quoted glob or image file of frames."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder or shipped name."),
    threads: str = typer.Option("1,2", "--threads", help="Comma-separated thread counts."),
    backend: str = typer.Option("onnxruntime", "--backend", help=f"One of: {', '.join(BACKENDS)}."),
    max_frames: int = typer.Option(100, "--max-frames", min=1, help="Frames per pass."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Passes over the frames."),
    json_out: Path = typer.Option(None, "--json", help="Also write the rows as JSON here."),
) -> None:
    """Measure end-to-end speed per frame (decode to written JSON): frames/s, tiles/s, p50/p99.

    Example: edge bench ../shared/data/ai4mars-msl-ncam-256/images --threads 1,2
    """
    try:
        counts = tuple(int(t) for t in threads.split(","))
        if min(counts) < 1:
            raise ValueError
    except ValueError:
        raise fail(f"--threads must be positive integers separated by commas, got '{threads}'") \
            from None
    try:
        bundle = load_bundle(model)
        frames = list(itertools.islice(open_source(source), max_frames))
        rows = bench(bundle, frames, BenchConfig(threads=counts, repeats=repeats,
                                                 backend=backend))
    except (BundleError, SourceError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"model {bundle.path} ({bundle.manifest.precision}), {len(frames)} frames, "
               f"{repeats} passes, python {sys.version.split()[0]}, {cpu_info().describe()}")
    typer.echo(format_table(rows))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(json_out, rows)


def env_command(
    json_out: bool = typer.Option(False, "--json", help="Print the facts as JSON instead."),
) -> None:
    """What this machine offers the runtime: versions, the CPU's features (int8 dot product,
    bfloat16), whether TensorRT can run, whether torch is installed, the shipped bundles.

    Example: edge env
    """
    import json

    from edge.environment import environment_report, format_report

    report = environment_report()
    typer.echo(json.dumps(report, indent=2) if json_out else format_report(report))


def register(app: typer.Typer) -> None:
    """Add ``classify``, ``bench`` and ``env`` to the root app."""
    app.command("classify")(classify_command)
    app.command("bench")(bench_command)
    app.command("env")(env_command)
