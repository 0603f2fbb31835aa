"""End-to-end speed of the runtime on real frames: decode to written JSON, per frame."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bundle import Bundle
from edge.classify import FrameClassifier, tile_records
from edge.cpu_info import cpu_info
from edge.decode import FrameError
from edge.latency import summarize_ms
from edge.outputs import RunWriter
from edge.run import apply_thread_budget
from edge.runners import make_runner
from edge.sources import FrameRef

#: Untimed frames a model runs each time its turn comes in an interleaved comparison. The
#: model timed before it leaves its thread pool spin-waiting for a while (ONNX Runtime's
#: and OpenMP's), which made the first frames after a switch about twice as slow at 2
#: threads on a 2-core machine and set the p99 of every interleaved round.
SETTLE_FRAMES = 3

#: Seconds each turn waits before its settling frames, so that the thread pools of the model
#: timed before (ONNX Runtime's, torch's OpenMP) stop spin-waiting and sleep. Measured on the
#: AVX-512 VNNI machine, `edge export bench` at 2 threads: with the settling frames alone the
#: fp32 and INT8 students' p99 was 4.7-7.1 ms, with a 0.2 s pause first 2.8-4.0 ms (the
#: INT8 student's timed alone: 3.0 ms), their p50 within the runs' spread (docs/export.md).
SETTLE_PAUSE_S = 0.2


def settle(classifier: FrameClassifier, frames: list[FrameRef]) -> None:
    """Start a timed turn: wait :data:`SETTLE_PAUSE_S`, then classify :data:`SETTLE_FRAMES`
    of ``frames``, untimed."""
    time.sleep(SETTLE_PAUSE_S)
    time_classifier(classifier, frames[:SETTLE_FRAMES], 0, 1)


@dataclass
class BenchConfig:
    """Thread counts to try, passes over the frames, and warm-up frames not timed."""

    threads: tuple[int, ...] = (1, 2)
    repeats: int = 3
    warmup: int = 5
    backend: str = "onnxruntime"


def _one_frame(classifier: FrameClassifier, writer: RunWriter, ref: FrameRef
               ) -> tuple[int, str]:
    """Decode, classify and write one frame's records as ``edge classify`` does;
    returns the tile count and the frame size ``WxH``."""
    result = classifier.classify_ref(ref)
    t0 = time.perf_counter()
    records = tile_records(ref.name, result, classifier.classes)
    writer.write_tiles(records)
    timings = result.timings_ms | {"write": (time.perf_counter() - t0) * 1e3}
    writer.write_frame({"frame": ref.name, "width": result.width, "height": result.height,
                        "tiles": len(records), "error": None,
                        "timings_ms": {k: round(v, 3) for k, v in timings.items()}})
    return len(records), f"{result.width}x{result.height}"


@dataclass
class _Passes:
    """Timed passes of one classifier, accumulated: per-frame ms, tiles, seconds, sizes."""

    latencies: list[float] = field(default_factory=list)
    tiles: int = 0
    wall: float = 0.0
    sizes: set[str] = field(default_factory=set)


def _time_passes(classifier: FrameClassifier, frames: list[FrameRef], warmup: int,
                 repeats: int, into: _Passes) -> _Passes:
    """Add ``repeats`` timed passes over ``frames`` (after ``warmup`` untimed frames) to
    ``into``, end to end: decode to written and flushed JSONL records, in a temporary
    folder (a frame decoded while its source was read, ``ref.decode_ms``, counts that
    decode time in every pass)."""
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        writer = RunWriter(Path(tmp))
        try:
            for ref in frames[:warmup]:
                try:
                    _one_frame(classifier, writer, ref)
                except FrameError:
                    pass
            start = time.perf_counter()
            decoded_before = 0.0
            for _ in range(repeats):
                for ref in frames:
                    # A video or camera frame was decoded once, while the source was read: its
                    # decode time then is counted in every pass, as a file's decode is.
                    before = ref.decode_ms or 0.0
                    t0 = time.perf_counter()
                    try:
                        n, size = _one_frame(classifier, writer, ref)
                    except FrameError:
                        continue
                    into.latencies.append((time.perf_counter() - t0) * 1e3 + before)
                    decoded_before += before
                    into.tiles += n
                    into.sizes.add(size)
            into.wall += time.perf_counter() - start + decoded_before / 1e3
        finally:
            writer.close()
    return into


def _summary(passes: _Passes) -> dict[str, Any]:
    stats = summarize_ms(passes.latencies)
    wall, sizes = passes.wall, set(passes.sizes)
    return {
        "size": sizes.pop() if len(sizes) == 1 else "mixed" if sizes else None,
        "frames": len(passes.latencies),
        "frames_per_s": round(len(passes.latencies) / wall, 2) if wall else None,
        "tiles_per_s": round(passes.tiles / wall, 1) if wall else None,
        "p50_ms": stats["p50"],
        "p99_ms": stats["p99"],
        "max_ms": stats["max"],
    }


def time_classifier(classifier: FrameClassifier, frames: list[FrameRef], warmup: int,
                    repeats: int) -> dict[str, Any]:
    """Time ``repeats`` passes over ``frames`` after ``warmup`` untimed frames, end to end
    (decode to written and flushed JSONL records, in a temporary folder): frames timed,
    frames/s, tiles/s, p50/p99/max ms per frame and the frame size (``WxH`` or 'mixed')."""
    return _summary(_time_passes(classifier, frames, warmup, repeats, _Passes()))


def bench(bundle: Bundle, frames: list[FrameRef], config: BenchConfig) -> list[dict[str, Any]]:
    """One row per thread count: frames/s, tiles/s and per-frame latency percentiles (ms),
    end to end (see :func:`time_classifier`).

    The thread counts are timed interleaved: after ``warmup`` untimed frames each, every one
    of the ``repeats`` passes over the frames times each thread count once, in an order
    rotated by one each pass, so that a slow spell of a shared machine hits them alike;
    each turn starts with :func:`settle`. Every frame is decoded from
    its file in every pass (the OS page cache keeps the bytes in memory, as a rover's frame
    buffer would); a video's frames count the decode time measured when they were read.
    """
    classifiers = []
    for threads in config.threads:
        apply_thread_budget(threads)
        classifier = FrameClassifier(bundle, make_runner(bundle, config.backend, threads))
        _time_passes(classifier, frames[:config.warmup], 0, 1, _Passes())   # warm-up
        classifiers.append(classifier)
    passes = [_Passes() for _ in config.threads]
    order = list(range(len(config.threads)))
    for r in range(config.repeats):
        k = r % len(order)
        for i in order[k:] + order[:k]:
            apply_thread_budget(config.threads[i])
            settle(classifiers[i], frames)
            _time_passes(classifiers[i], frames, 0, 1, passes[i])
    cpu = cpu_info().describe()
    return [{"backend": config.backend, "threads": threads, **_summary(p), "cpu": cpu}
            for threads, p in zip(config.threads, passes, strict=True)]


def _median_ms(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def time_interleaved(classifiers: list[tuple[str, FrameClassifier]], frames: list[FrameRef],
                     warmup: int, repeats: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Per label, the :func:`time_classifier` result of each of ``rounds`` rounds: after
    ``warmup`` untimed frames each, every round times every classifier for ``repeats`` passes
    over ``frames``, in an order rotated by one each round, so that all of them see the same
    load and no one always runs first; each turn starts with :func:`settle` (a pause, then
    :data:`SETTLE_FRAMES` untimed frames)."""
    if not classifiers or rounds < 1:
        raise ValueError("interleaved timing needs at least one model and one round")
    for _, classifier in classifiers:
        time_classifier(classifier, frames[:warmup], 0, 1)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in classifiers}
    for r in range(rounds):
        k = r % len(classifiers)
        for label, classifier in classifiers[k:] + classifiers[:k]:
            settle(classifier, frames)
            runs[label].append(time_classifier(classifier, frames, 0, repeats))
    return runs


def median_ratio(runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float | None:
    """Median over rounds of tiles/s in ``runs`` divided by ``reference``'s in the same round
    (a speed ratio measured side by side); None without a usable round."""
    ratios = [x["tiles_per_s"] / f["tiles_per_s"] for x, f in zip(runs, reference, strict=True)
              if x["tiles_per_s"] and f["tiles_per_s"]]
    return round(statistics.median(ratios), 3) if ratios else None


def summarize_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one model: frames timed in all, medians over the rounds of tiles/s, p50 and
    p99 ms, and the rounds' tiles/s range."""
    tps = [x["tiles_per_s"] or 0.0 for x in runs]
    return {"rounds": len(runs), "size": runs[0]["size"],
            "frames": sum(x["frames"] for x in runs),
            "tiles_per_s": round(statistics.median(tps), 1),
            "tiles_per_s_min": round(min(tps), 1), "tiles_per_s_max": round(max(tps), 1),
            "p50_ms": _median_ms([x["p50_ms"] for x in runs]),
            "p99_ms": _median_ms([x["p99_ms"] for x in runs])}


def bench_interleaved(bundles: list[tuple[str, Bundle]], frames: list[FrameRef],
                      config: BenchConfig, rounds: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Several bundles timed side by side: per label, one row per thread count as in
    :func:`bench`, measured by :func:`time_interleaved` and summarised by
    :func:`summarize_rounds`, plus ``speed_vs_first``: :func:`median_ratio` to the first
    bundle."""
    if not bundles:
        raise ValueError("bench_interleaved needs at least one bundle")
    out: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in bundles}
    for threads in config.threads:
        apply_thread_budget(threads)
        runs = time_interleaved(
            [(label, FrameClassifier(b, make_runner(b, config.backend, threads)))
             for label, b in bundles], frames, config.warmup, config.repeats, rounds)
        first = runs[bundles[0][0]]
        for label, _ in bundles:
            out[label].append({"backend": config.backend, "threads": threads,
                               **summarize_rounds(runs[label]),
                               "speed_vs_first": median_ratio(runs[label], first),
                               "cpu": cpu_info().describe()})
    return out


def markdown_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """``rows`` as a Markdown table of the columns ``cols``."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows from :func:`bench` as a Markdown table."""
    return markdown_table(rows, ["backend", "threads", "size", "frames", "frames_per_s",
                                 "tiles_per_s", "p50_ms", "p99_ms", "max_ms"])


