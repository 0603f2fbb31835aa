"""``edge classify`` and ``edge bench``: thin CLI over :mod:`edge.classify`, :mod:`edge.bench`."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import typer

from edge import __version__
from edge.bench import BenchConfig, bench, format_table
from edge.bundle import DEFAULT_MODEL, BundleError, load_bundle
from edge.classify import FrameClassifier, classify_frames
from edge.outputs import RUN_FILE, write_json_atomic
from edge.runners import BACKENDS, make_runner
from edge.sources import SourceError, open_source


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit-1 exception for the caller to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _print_summary(report: dict, out: Path) -> None:
    typer.echo(
        f"classified {report['classified']}/{report['frames']} frames, {report['tiles']} tiles "
        f"in {report['wall_s']:.1f} s -> {out}"
    )
    shares = ", ".join(f"{k} {v:.1%}" for k, v in report["class_shares"].items())
    if shares:
        typer.echo(f"class shares: {shares}")
    stages = ", ".join(
        f"{s} {v['mean']:.2f}" for s, v in report["stage_ms"].items() if v["mean"] is not None
    )
    if stages:
        typer.echo(f"mean ms per frame: {stages}")
    for item in report["skipped"]:
        typer.echo(f"skipped {item['error']}", err=True)  # the error begins with the frame name


def classify_command(
    source: str = typer.Argument(..., help="Directory, quoted glob, image file or video file."),
    out: Path = typer.Option(Path("out/classify"), "--out", "-o", help="Output directory."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder, or the name of a shipped bundle."),
    threads: int = typer.Option(1, "--threads", min=1, help="Inference threads."),
    backend: str = typer.Option("onnxruntime", "--backend", help=f"One of: {', '.join(BACKENDS)}."),
    max_frames: int = typer.Option(None, "--max-frames", min=1, help="Stop after N frames."),
    recursive: bool = typer.Option(False, "--recursive", help="Descend into sub-folders."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary (for scripts)."),
) -> None:
    """Classify the terrain tiles of every frame in SOURCE.

    Writes OUT/tiles.jsonl (one line per tile), OUT/frames.jsonl (one line per
    frame) and OUT/run.json (model, options, summary). Exit status: 0 all frames
    classified, 2 some frames skipped for bad input (the rest are classified),
    1 usage or model error.

    Example: edge classify ../shared/data/ai4mars-msl-ncam-256/images --out out/demo
    """
    try:
        bundle = load_bundle(model)
        classifier = FrameClassifier(bundle, make_runner(bundle, backend, threads))
        frames = open_source(source, recursive=recursive)
    except (BundleError, SourceError) as exc:
        raise fail(str(exc)) from None
    try:
        summary = classify_frames(frames, classifier, out, max_frames=max_frames)
    except OSError as exc:  # --out is a file, not writable, disk full: no result is published
        raise fail(f"cannot write the results to '{out}' ({exc.strerror or exc})") from None
    report = summary.report()
    run = {
        "edge_version": __version__,
        "command": " ".join(["edge", *sys.argv[1:]]),
        "source": source,
        "model": {"path": str(bundle.path), "name": bundle.manifest.name,
                  "sha256": bundle.manifest.sha256, "precision": bundle.manifest.precision},
        "options": {"threads": threads, "backend": backend, "max_frames": max_frames,
                    "recursive": recursive},
        "summary": report,
    }
    try:
        write_json_atomic(out / RUN_FILE, run)
    except OSError as exc:
        raise fail(f"cannot write '{out / RUN_FILE}' ({exc.strerror or exc})") from None
    if not quiet:
        _print_summary(report, out)
    raise typer.Exit(code=summary.exit_code)


def bench_command(
    source: str = typer.Argument(..., help="Directory, quoted glob or image file of frames."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Bundle folder or shipped name."),
    threads: str = typer.Option("1,2", "--threads", help="Comma-separated thread counts."),
    max_frames: int = typer.Option(100, "--max-frames", min=1, help="Frames per pass."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Passes over the frames."),
    json_out: Path = typer.Option(None, "--json", help="Also write the rows as JSON here."),
) -> None:
    """Measure end-to-end speed (decode to postprocess) per frame: frames/s, tiles/s, p50/p99.

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
        rows = bench(bundle, frames, BenchConfig(threads=counts, repeats=repeats))
    except (BundleError, SourceError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"model {bundle.path} ({bundle.manifest.precision}), {len(frames)} frames, "
               f"{repeats} passes, python {sys.version.split()[0]}")
    typer.echo(format_table(rows))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rows, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Add ``classify`` and ``bench`` to the root app."""
    app.command("classify")(classify_command)
    app.command("bench")(bench_command)
