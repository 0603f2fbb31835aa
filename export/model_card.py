"""Model cards: the measured half of ``docs/models/<name>.md``, regenerated from bundles.

A card's prose (intended use, limits, how to read the figures) is written by hand; the
figures between :data:`START` and :data:`END` are rewritten by ``edge export card`` from the
shipped bundle and the bundles it is compared with (float teacher, float student...), all
run through ONNX Runtime on the validation data through edge's one preprocessing function:
accuracy, mean per-class recall, the confusion matrix (also as a PNG), parameters, MFLOPs
per tile, bundle size, and end-to-end tiles/s on real frames at each thread count, timed
interleaved so that the speed ratios between bundles are measured side by side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx

from edge.atomic_file import write_bytes_atomic
from edge.bench import BenchConfig, bench_interleaved, markdown_table
from edge.bundle import Bundle, load_bundle
from edge.cpu_info import cpu_info
from edge.decode import read_image
from edge.runners import make_runner
from edge.sources import FrameRef
from export.distill import RUN_FIELDS
from export.student import count_onnx_graph
from train.datasets.ai4mars import load_ai4mars
from train.datasets.msl import load_msl
from train.labelled_sets import LabelledSet, load_labelled
from train.metrics import MIN_SUPPORT, evaluate
from train.tiles import TileDataConfig, default_data_root, spread

START = "<!-- measured: written by `edge export card`; edit the text outside these markers -->"
END = "<!-- end of the measured section -->"


class CardError(Exception):
    """A card cannot be made (unknown bundle, data that does not fit it, malformed card)."""


@dataclass
class CardConfig:
    """``bundle``: the shipped bundle the card is about; ``compare``: (label, bundle) rows
    shown beside it; ``speed_frames`` validation frames are timed ``repeats`` times per bundle
    in each of ``rounds`` interleaved rounds (:func:`edge.bench.bench_interleaved`);
    ``reproduce`` is the command the card quotes for remaking the bundle."""

    bundle: str
    out: str
    compare: tuple[tuple[str, str], ...] = ()
    data_root: str = str(default_data_root())
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 3
    rounds: int = 5
    speed_frames: int = 32
    max_val_frames: int | None = None
    reproduce: str = "bash scripts/make_default_models.sh"
    command: str = "edge export card"


def card_dataset(bundle: Bundle) -> str:
    """'msl-v2.1' for a whole-image bundle (centre-square grid), else 'ai4mars'."""
    return "msl-v2.1" if bundle.manifest.tiling.crop == "centre-square" else "ai4mars"


def validation_set(bundle: Bundle, data_root: str, max_val_frames: int | None = None
                   ) -> LabelledSet:
    """The labelled validation items of the bundle's dataset, cut and normalised as the
    bundle declares; CardError when the bundle's input is not the training pipeline's."""
    m = bundle.manifest
    data = TileDataConfig(root=str(Path(data_root) / "ai4mars-msl-ncam-256"),
                          tile_pixels=m.input.tile_pixels, reference_width=m.tiling.reference_width,
                          tile=m.tiling.tile, stride=m.tiling.stride,
                          max_val_frames=max_val_frames)
    if data.input_spec != m.input:
        raise CardError(f"{bundle.path}: input {m.input} is not the training pipeline's "
                        f"{data.input_spec}; its validation inputs cannot be rebuilt here")
    return load_labelled(card_dataset(bundle), "val", data, str(Path(data_root) / "msl-v2.1"))


def predict(bundle: Bundle, inputs: np.ndarray, threads: int = 2, batch: int = 4096
            ) -> np.ndarray:
    """Predicted class int64 (N,) of the bundle's model on inputs (N, C, S, S), through the
    runtime's runner (which checks the model against the manifest's input and classes)."""
    runner = make_runner(bundle, "onnxruntime", threads)
    return np.concatenate([runner.run(inputs[i:i + batch]).argmax(1)
                           for i in range(0, len(inputs), batch)]).astype(np.int64)


def speed_frames(bundle: Bundle, data_root: str, count: int) -> list[FrameRef]:
    """``count`` validation frames (AI4Mars Navcam, or MSL images) spread over the split."""
    root = Path(data_root)
    if card_dataset(bundle) == "ai4mars":
        data = load_ai4mars(root / "ai4mars-msl-ncam-256")
        paths = [data.image_path(i) for i in spread(data.splits()["val"], count)]
    else:
        msl = load_msl(root / "msl-v2.1")
        paths = [msl.image_path(it) for it in spread(msl.splits["val"], count)]
    return [FrameRef(p.name, lambda p=p: read_image(p)) for p in paths]


def model_figures(bundle: Bundle) -> dict[str, Any]:
    """Parameters, MFLOPs per tile (from the graph) and the bundle's size on disk (bytes)."""
    size = count_onnx_graph(onnx.load(str(bundle.model_path)))
    on_disk = sum(p.stat().st_size for p in bundle.path.iterdir() if p.is_file())
    return {"parameters": size["parameters"], "mflops": size["mflops"], "bytes": on_disk}


def confusion_png_path(card: str | Path) -> Path:
    """Where a card's confusion-matrix PNG goes: ``docs/models/terrain.md`` ->
    ``docs/models/terrain-confusion.png``."""
    card = Path(card)
    return card.with_name(card.with_suffix("").name + "-confusion.png")


def confusion_png(confusion: np.ndarray, classes: list[str], cell: int = 44) -> bytes:
    """Confusion matrix (K, K) counts (rows: true class) -> PNG bytes: cells shaded by the
    row-normalised share, with the count written in each, class names on the left."""
    k = len(classes)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    name_w = 16 + max(cv2.getTextSize(f"{i} {c}", font, scale, 1)[0][0]
                      for i, c in enumerate(classes))
    top = 40
    img = np.full((top + k * cell + 30, name_w + k * cell + 10, 3), 255, dtype=np.uint8)
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    for r in range(k):
        y = top + r * cell
        cv2.putText(img, f"{r} {classes[r]}", (6, y + cell // 2 + 4), font, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for c in range(k):
            x = name_w + c * cell
            shade = int(255 - 200 * shares[r, c])
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), (255, shade, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), (200, 200, 200), 1)
            text = str(int(confusion[r, c]))
            colour = (255, 255, 255) if shares[r, c] > 0.6 else (0, 0, 0)
            tw = cv2.getTextSize(text, font, scale, 1)[0][0]
            cv2.putText(img, text, (x + (cell - tw) // 2, y + cell // 2 + 4), font, scale,
                        colour, 1, cv2.LINE_AA)
    for c in range(k):
        cv2.putText(img, str(c), (name_w + c * cell + cell // 2 - 4, top - 8), font, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "predicted class", (name_w, 14), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true class; shade: share of the row", (6, img.shape[0] - 10), font,
                scale, (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise CardError("OpenCV could not encode the confusion matrix as PNG")
    return png.tobytes()


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def training_lines(provenance: dict[str, Any]) -> list[str]:
    """The card's line on how far each recorded training run went (a manifest's
    ``training_runs``: distill, then QAT); none for bundles made before they were recorded."""
    runs = provenance.get("training_runs") or {}
    parts = [f"{name} {run['steps']:,} steps ({run['epochs_seen']:g} passes over "
             f"{run['train_tiles']:,} tiles, {run['train_seconds']:.0f} s), stopped by "
             f"{run['stopped_by']}" for name, run in runs.items()
             if set(RUN_FIELDS) <= set(run)]
    if not parts:
        return []
    clock = any(run.get("stopped_by") == "time budget" for run in runs.values())
    return [f"- Trained: {'; '.join(parts)}." + (
        " A run stopped by its time budget followed the clock: remade on another machine, it "
        "gives another model." if clock else "")]


def measured_section(cfg: CardConfig, log: Callable[[str], None] = print) -> tuple[str, bytes]:
    """The Markdown of the measured section and the confusion-matrix PNG of the shipped
    bundle (see the module docstring)."""
    shipped = load_bundle(cfg.bundle)
    if any(label == "shipped" for label, _ in cfg.compare):
        raise CardError("'shipped' names the card's own bundle; label the compared one otherwise")
    rows = [("shipped", shipped)] + [(label, load_bundle(path)) for label, path in cfg.compare]
    val = validation_set(shipped, cfg.data_root, cfg.max_val_frames)
    dataset = card_dataset(shipped)
    unit = "tiles" if dataset == "ai4mars" else "images"
    log(f"{len(val.labels)} validation {unit}")
    frames = speed_frames(shipped, cfg.data_root, cfg.speed_frames)
    table, preds, results = [], {}, []
    for label, b in rows:
        if b.manifest.classes != shipped.manifest.classes:
            raise CardError(f"{b.path}: classes differ from the shipped bundle's")
        preds[label] = predict(b, val.inputs)
        m = evaluate(preds[label], val.labels, val.classes, MIN_SUPPORT[dataset])
        results.append(m)
        log(f"{label}: accuracy {m['accuracy']:.4f}, mean recall {m['mean_recall']:.4f}")
    speeds = bench_interleaved(rows, frames, BenchConfig(
        threads=cfg.threads, repeats=cfg.repeats, warmup=min(5, len(frames))), cfg.rounds)
    for (label, b), m in zip(rows, results, strict=True):
        speed = {r["threads"]: r for r in speeds[label]}
        fig = model_figures(b)
        table.append({
            "model": f"{label} ({b.path.name})", "precision": b.manifest.precision,
            "accuracy": _pct(m["accuracy"]), "mean recall": _pct(m["mean_recall"]),
            "agrees with shipped": _pct(float((preds[label] == preds["shipped"]).mean())),
            "parameters": f"{fig['parameters']:,}", "MFLOPs/tile": fig["mflops"],
            "size (KB)": round(fig["bytes"] / 1024, 1),
            **{f"tiles/s, {t} thr": speed[t]["tiles_per_s"] for t in cfg.threads},
            **{f"x shipped, {t} thr": speed[t]["speed_vs_first"] for t in cfg.threads},
            **{f"p50 ms, {t} thr": speed[t]["p50_ms"] for t in cfg.threads},
        })
    main = results[0]
    confusion = np.array(main["confusion"])
    classes = val.classes
    cm_rows = [{"true \\ predicted": f"{i} {c}", **{str(j): int(confusion[i, j])
                                                     for j in range(len(classes))},
                "recall": _pct(main["per_class_recall"].get(c)),
                "items": int(confusion[i].sum())} for i, c in enumerate(classes)]
    png_name = confusion_png_path(cfg.out).name
    man = shipped.manifest
    prov = man.provenance
    split = ("AI4Mars Navcam, clock-ordered latest 20% of frames" if unit == "tiles"
             else "MSL v2.1 val-set-v2.1.txt")
    lines = [
        START, "",
        f"Measured by `{cfg.command}` on "
        f"{cpu_info().describe()}, {os.cpu_count()} cores: validation "
        f"figures only (the test sets are withheld).", "",
        "### The shipped bundle", "",
        f"- Bundle `{shipped.path.name}`: {man.precision}, {len(man.classes)} classes, "
        f"input {man.input.channels}x{man.input.tile_pixels}x{man.input.tile_pixels} "
        f"(mean {list(man.input.mean)}, std {list(man.input.std)}), tiling "
        f"{man.tiling.tile} px every {man.tiling.stride} px at width "
        f"{man.tiling.reference_width}, crop `{man.tiling.crop}`.",
        f"- model.onnx sha256 `{man.sha256}`.",
        f"- Made by: `{prov.get('command')}` at revision `{prov.get('git_revision')}`.",
        (f"- Labelled data: {prov['data']['labels']}." if "labels" in prov.get("data", {})
         else f"- Made from: the {prov.get('kind', 'model')} of "
              f"`{prov.get('teacher_checkpoint', 'see the manifest')}`."),
        *training_lines(prov), "",
        f"### Validation: {len(val.labels)} {unit} ({split})", "",
        f"Accuracy **{_pct(main['accuracy'])}**, mean per-class recall "
        f"**{_pct(main['mean_recall'])}** (over classes with at least "
        f"{MIN_SUPPORT[dataset]} {unit[:-1] if MIN_SUPPORT[dataset] == 1 else unit}: "
        f"{', '.join(main['recall_classes'])}).", "",
        markdown_table(cm_rows, list(cm_rows[0])), "",
        f"![confusion matrix]({png_name})", "",
        "### Side by side (same validation inputs, ONNX Runtime)", "",
        markdown_table(table, list(table[0])), "",
        f"tiles/s and p50 are end to end (decode, preprocessing, inference, JSONL records) "
        f"over {len(frames)} validation frames, timed interleaved: {cfg.rounds} rounds of "
        f"{cfg.repeats} pass(es) per bundle, the bundles' order rotated each round; figures "
        "are medians over the rounds, and 'x shipped' is the median of each round's tiles/s "
        "ratio to the shipped bundle in the same round.", "",
        f"Reproduce the shipped bundle: `{cfg.reproduce}`; every bundle's manifest "
        "records the command that made it.", "",
        END,
    ]
    return "\n".join(lines) + "\n", confusion_png(confusion, classes)


def splice(card: str, section: str) -> str:
    """``card`` with its measured section replaced by ``section`` (appended when the card has
    none); CardError when only one marker is present."""
    has_start, has_end = START in card, END in card
    if has_start != has_end or (has_start and card.index(START) > card.index(END)):
        raise CardError("the card has a broken measured section (one marker missing or out "
                        "of order); restore both markers")
    if not has_start:
        return card.rstrip("\n") + ("\n\n" if card.strip() else "") + section
    head, rest = card.split(START, 1)
    tail = rest.split(END, 1)[1]
    return head + section.rstrip("\n") + tail


def write_card(cfg: CardConfig, log: Callable[[str], None] = print) -> Path:
    """Regenerate the measured section of ``cfg.out`` (atomically) and its PNG beside it."""
    out = Path(cfg.out)
    section, png = measured_section(cfg, log)
    card = out.read_text() if out.exists() else f"# Model card: {Path(cfg.bundle).name}\n"
    text = splice(card, section)
    write_bytes_atomic(confusion_png_path(out), png)
    write_bytes_atomic(out, text.encode())
    return out
