"""A classify run over a source: frames streamed one at a time, outputs appended per frame.

:func:`classify_source` is the library entry point behind ``edge classify``; it opens the
bundle and the source and calls :func:`classify_frames`, which takes any iterable of
:class:`~edge.sources.FrameRef` (a generator works: nothing is held beyond one frame).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from edge import __version__
from edge.bundle import load_bundle
from edge.classify import FrameClassifier, decode_ref, tile_records
from edge.contact_sheet import write_contact_sheet
from edge.cpu_info import cpu_info
from edge.csv_output import CsvCodec, tile_columns
from edge.decode import FrameError
from edge.options import UNCERTAIN, ClassifyOptions, OptionsError
from edge.outputs import JsonlCodec, RecordCodec, RunWriter
from edge.overlay import overlay_file_name, render_overlay, write_png
from edge.progress import RunObserver
from edge.rundir import OVERLAY_DIR, finish, locked, prepare
from edge.runners import make_runner
from edge.sources import FrameRef, SourceError, is_camera_index, open_source
from edge.summary import RunSummary
from edge.tiling import crop_box


def make_codecs(formats: tuple[str, ...], best_label: bool) -> list[RecordCodec]:
    """The codecs of the output files: tiles then frames, for each format, in order."""
    codecs: list[RecordCodec] = []
    for fmt in formats:
        if fmt == "jsonl":
            codecs += [JsonlCodec("tiles"), JsonlCodec("frames")]
        else:
            codecs += [CsvCodec("tiles", tile_columns(best_label)), CsvCodec("frames")]
    return codecs


def resume_key(options: ClassifyOptions, classifier: FrameClassifier) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    tiling = classifier.tiling
    return {
        "source": options.source_key(),
        "recursive": options.recursive,
        "model_sha256": classifier.bundle.manifest.sha256,
        # The crop only when there is one, so that runs started before crops existed
        # (``crop`` "none") still resume.
        "tiling": [tiling.reference_width, tiling.tile, tiling.stride]
        + ([tiling.crop] if tiling.crop != "none" else []),
        "min_confidence": options.min_confidence,
        "formats": list(options.formats),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}


class _FrameWork:
    """Classify one frame and write its records (and overlay)."""

    def __init__(self, classifier: FrameClassifier, writer: RunWriter,
                 options: ClassifyOptions):
        self.classifier = classifier
        self.writer = writer
        self.min_confidence = options.min_confidence
        self.overlay_dir = options.out_dir / OVERLAY_DIR if options.overlay else None
        if self.overlay_dir is not None:
            self.overlay_dir.mkdir(exist_ok=True)

    def __call__(self, ref: FrameRef) -> tuple[dict[str, Any], Counter]:
        """Returns the frame record written and its tiles' label counts."""
        image = None
        try:
            image, decode_ms = decode_ref(ref)
            result = self.classifier.classify_image(ref.name, image, decode_ms)
        except FrameError as exc:
            size = (None, None) if image is None else (image.shape[1], image.shape[0])
            record = {"frame": ref.name, "width": size[0], "height": size[1], "tiles": 0,
                      "timings_ms": None, "error": str(exc)}
            self.writer.write_frame(record)
            return record, Counter()
        t0 = time.perf_counter()
        records = tile_records(ref.name, result, self.classifier.classes, self.min_confidence)
        self.writer.write_tiles(records)
        if self.overlay_dir is not None:
            uncertain = np.array([r["label"] == UNCERTAIN for r in records], dtype=bool)
            title = f"{ref.name}  ({len(records)} tiles)"
            picture = render_overlay(image, result.ref_boxes, result.class_ids, uncertain,
                                     self.classifier.classes, title,
                                     show_uncertain=self.min_confidence is not None,
                                     crop=crop_box(result.width, result.height,
                                                   self.classifier.tiling))
            write_png(self.overlay_dir / overlay_file_name(ref.name), picture)
        timings = result.timings_ms | {"write": (time.perf_counter() - t0) * 1e3}
        record = {"frame": ref.name, "width": result.width, "height": result.height,
                  "tiles": len(records), "timings_ms": _rounded(timings), "error": None}
        self.writer.write_frame(record)
        return record, Counter(r["label"] for r in records)


def classify_frames(
    frames: Iterable[FrameRef],
    classifier: FrameClassifier,
    options: ClassifyOptions,
    observer: RunObserver | None = None,
    command: str | None = None,
) -> RunSummary:
    """Classify the frames of a stream into ``options.out_dir`` and return the summary.

    Per frame: decode, preprocess, inference, postprocess, then its tile records, (its
    overlay) and its frame record are appended and flushed. A frame that fails gets an
    ``error`` record and the run goes on. The output folder is locked for the run, and
    prepared as :func:`edge.rundir.prepare` says (fresh, ``--overwrite`` or ``--resume``:
    frames already recorded are not classified again). The outputs are published when the
    stream ends; ``run.json`` is written last. The tiling is the classifier's (build it
    with ``stride=options.stride``, as :func:`classify_source` does).
    Raises RunDirError (folder busy or holding a run), OSError (cannot write).
    """
    out = options.out_dir
    start = time.perf_counter()
    codecs = make_codecs(options.formats, options.min_confidence is not None)
    key = resume_key(options, classifier)
    bundle = classifier.bundle
    run: dict[str, Any] = {
        "edge_version": __version__,
        "command": command,
        "source": options.source,
        "model": {"path": str(bundle.path), "name": bundle.manifest.name,
                  "sha256": bundle.manifest.sha256, "precision": bundle.manifest.precision},
        "options": options.to_json(),
        "tiling": key["tiling"],
        # frames.jsonl's timings depend on the CPU's features, not only its name
        "host": {"cpu": cpu_info().to_json(), "cpus": os.cpu_count()},
        "started": _now(),
        "resume_key": key,
    }
    if options.min_confidence is not None and UNCERTAIN in classifier.classes:
        raise OptionsError(f"the model has a class named '{UNCERTAIN}'; --min-confidence "
                           "cannot label tiles with it")
    with locked(out):
        recovered = prepare(out, key, run, codecs, options.resume, options.overwrite)
        summary = recovered.summary if recovered is not None else RunSummary()
        done = recovered.done if recovered is not None else set()
        writer = RunWriter(out, codecs, append=recovered is not None)
        work = _FrameWork(classifier, writer, options)
        stream: Iterable[FrameRef] = frames
        if options.max_frames is not None:
            stream = itertools.islice(frames, options.max_frames)
        if observer is not None:
            total = getattr(frames, "total", None)
            if total is not None and options.max_frames is not None:
                total = min(total, options.max_frames)
            observer.start(total)
        try:
            for ref in stream:
                if ref.name in done:
                    if observer is not None:
                        observer.frame(ref.name, None, True)
                    continue
                record, labels = work(ref)
                summary.add(record, labels)
                if observer is not None:
                    observer.frame(ref.name, record["error"], False)
            summary.outputs = writer.commit()
        finally:
            writer.close()
            if observer is not None:
                observer.finish()
        summary.wall_s = time.perf_counter() - start
        if options.overlay:
            frames_codec = next(c for c in codecs if c.kind == "frames")
            tiles_codec = next(c for c in codecs if c.kind == "tiles")
            summary.outputs["contact_sheet.html"] = write_contact_sheet(
                out, out / frames_codec.file_name, out / tiles_codec.file_name, frames_codec,
                tiles_codec, classifier.classes, summary.report(), out / OVERLAY_DIR)
        run["completed"] = _now()
        run["summary"] = summary.report()
        finish(out, run)
    return summary


def apply_thread_budget(threads: int) -> None:
    """Hold OpenCV (decoding, resizing, colour conversion) to ``threads`` threads, as the
    runner holds inference: ``--threads`` is the process's whole CPU budget."""
    cv2.setNumThreads(max(1, threads))


def open_run(options: ClassifyOptions) -> tuple[FrameClassifier, Iterable[FrameRef]]:
    """The classifier and frame stream of ``options`` (bundle checked, source opened).
    Raises BundleError, SourceError or OptionsError."""
    if options.resume and is_camera_index(options.source):
        raise SourceError("--resume cannot continue a live camera stream (its frames are "
                          "new each time); give a new --out")
    bundle = load_bundle(options.model)
    apply_thread_budget(options.threads)
    try:
        classifier = FrameClassifier(bundle, make_runner(bundle, options.backend, options.threads),
                                     stride=options.stride)
    except ValueError as exc:
        raise OptionsError(str(exc)) from None
    frames = open_source(options.source, recursive=options.recursive)
    return classifier, frames


def classify_source(options: ClassifyOptions, observer: RunObserver | None = None,
                    command: str | None = None) -> RunSummary:
    """``edge classify`` as a function: open the bundle and source, classify, write outputs.
    Raises BundleError, SourceError, OptionsError, RunDirError, OSError."""
    classifier, frames = open_run(options)
    return classify_frames(frames, classifier, options, observer=observer, command=command)


__all__ = ["ClassifyOptions", "classify_frames", "classify_source", "open_run"]
