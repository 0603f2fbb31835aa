"""Static post-training INT8 quantization of an fp32 bundle with ONNX Runtime.

Calibration tiles are real frames cut by edge's one preprocessing function
(:func:`edge.preprocess.frame_to_tiles`, with the bundle's own input spec and tiling):
frames of the AI4Mars train split by default, or of any folder of images. Each variant of
the grid (QDQ / QOperator x U8 / S8 activations x per-tensor / per-channel weights x
MinMax / Entropy / Percentile calibration; weights always signed int8) is quantized,
timed with ONNX Runtime on real 64-tile frames (1 and 2 threads, median of repeats) and
scored on the scored validation tiles; the fastest variant (1-thread median) that passes
:mod:`export.accuracy_gate` is written as the INT8 bundle, with the whole table in its
manifest. The TensorRT variant (QDQ, symmetric signed int8 activations and weights,
per-channel) is written as its own bundle, gated the same way with ONNX Runtime.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge.atomic_file import write_bytes_atomic
from edge.bundle import Bundle, BundleError, Manifest, load_bundle, write_bundle
from edge.cpu_info import cpu_info
from edge.decode import FrameError, read_image
from edge.preprocess import frame_to_tiles
from edge.sources import SourceError, list_image_files
from export.accuracy_gate import (
    MAX_ACCURACY_DROP,
    MIN_AGREEMENT,
    GateError,
    GateResult,
    check_gate,
    layer_errors,
    write_layer_report,
)
from train.datasets.errors import DatasetError
from train.metrics import evaluate
from train.revision import git_revision
from train.tiles import TileDataConfig, load_split_tiles, spread

FORMATS = ("qdq", "qoperator")
ACTIVATIONS = ("u8", "s8")
CALIBRATIONS = ("minmax", "entropy", "percentile")
#: Percentile calibration keeps 99.999% of each tensor's values (measured: agreement 0.982 vs
#: 0.976 at 99.99 on 300 val frames, QDQ/U8/per-channel).
PERCENTILE = 99.999


class QuantizeError(Exception):
    """Bad input to the quantizer (bundle, calibration source); nothing was written."""


@dataclass(frozen=True)
class QuantVariant:
    """One point of the grid; ``symmetric`` forces zero-point 0 (TensorRT). ``weights``:
    ``s8`` (int8, ONNX Runtime's U8S8 kernels, which on x86 without VNNI multiply with
    VPMADDUBSW and can saturate its 16-bit pair sums) or ``u8`` (uint8 with zero point 128,
    the U8U8 kernels, which do not saturate; QDQ only); symmetric either way. ``equalize``:
    the float model is channel-equalized with that alpha first (:mod:`export.equalize`)."""

    fmt: str = "qdq"
    activation: str = "u8"
    per_channel: bool = True
    calibration: str = "minmax"
    symmetric: bool = False
    stem_float: bool = False
    head_float: bool = False
    float_nodes: tuple[str, ...] = ()
    weights: str = "s8"
    equalize: float | None = None

    @property
    def name(self) -> str:
        """e.g. ``qdq-u8-pc-minmax`` (``u8u8``: uint8 weights too; ``pt``: per-tensor
        weights; ``-sym``: symmetric;
        ``-stemfp``: the first convolution kept in float; ``-headfp``: the node that makes
        the logits kept in float, so that they are not rounded to an 8-bit grid; ``+Nfp``:
        N more nodes kept in float by :mod:`export.precision_search`; ``-eqA``: channel
        equalization with alpha A/100 first)."""
        weights = "u8" if self.weights == "u8" else ""
        return (f"{self.fmt}-{self.activation}{weights}-{'pc' if self.per_channel else 'pt'}-"
                f"{self.calibration}{'-sym' if self.symmetric else ''}"
                f"{'-stemfp' if self.stem_float else ''}{'-headfp' if self.head_float else ''}"
                f"{f'+{len(self.float_nodes)}fp' if self.float_nodes else ''}"
                f"{f'-eq{round(self.equalize * 100)}' if self.equalize is not None else ''}")


TRT_VARIANT = QuantVariant("qdq", "s8", True, "minmax", symmetric=True)


def variant_grid(full: bool = True) -> list[QuantVariant]:
    """The full grid (24 points, plus 2 with the first convolution kept in float, 2 with
    the first convolution and the logits' node in float, and three QDQ ones of those: with
    uint8 weights, and channel-equalized at alpha 0.5 and 1: 31 in all), or (``full=False``)
    format x activation x per-channel with MinMax plus Entropy and Percentile on
    QDQ/U8/per-channel, and the QDQ mixed-precision points without equalization (13 points).
    """
    grid = [QuantVariant(f, a, pc, c) for f in FORMATS for a in ACTIVATIONS
            for pc in (False, True) for c in CALIBRATIONS]
    # Mixed precision, measured after the per-layer comparison showed the error entering at
    # the first convolution (1 input channel: its int8 input grid costs most).
    grid += [QuantVariant(f, "u8", True, "percentile", stem_float=True) for f in FORMATS]
    # Measured after the QAT student still failed at 98.6%: 2% of tiles have top-two logit
    # margins below one uint8 step of the logits, so the head's output stays float too.
    grid += [QuantVariant(f, "u8", True, "percentile", stem_float=True, head_float=True)
             for f in FORMATS]
    # ONNX Runtime's remedy for U8S8 saturation on AVX2 CPUs without VNNI: uint8 weights
    # (QDQ only: its QOperator converter writes per-channel weights as int8 whatever it is
    # asked). On the shipped terrain student no saturation was measurable (docs/export.md);
    # the uint8 grid's other rounding moves agreement by about 0.1 point either way.
    grid += [QuantVariant("qdq", "u8", True, "percentile", stem_float=True, head_float=True,
                          weights="u8")]
    # Per-tensor activation grids shared by channels of different ranges: channel
    # equalization (alpha 0.5 balances activations and weights, 1 equalizes activations).
    # On the shipped terrain student the channels' ranges differ by only 1.5-2x, and
    # agreement moved by -0.08 to +0.03 points (docs/export.md).
    grid += [QuantVariant("qdq", "u8", True, "percentile", stem_float=True, head_float=True,
                          equalize=alpha) for alpha in (0.5, 1.0)]
    if full:
        return grid
    return [v for v in grid if v.equalize is None and (
        v.calibration == "minmax" or (v.fmt, v.activation, v.per_channel) == ("qdq", "u8", True))]


def select_variants(names: list[str], full: bool = True) -> list[QuantVariant]:
    """The variants to run: the full or short grid, or (``names``) those named, taken from the
    full grid in its order. Raises QuantizeError naming any name that is not a variant."""
    grid = variant_grid(full or bool(names))
    if not names:
        return grid
    known = {v.name for v in grid}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise QuantizeError(f"unknown variant(s) {', '.join(unknown)}; the grid's variants are: "
                            + ", ".join(v.name for v in grid))
    return [v for v in grid if v.name in names]


@dataclass
class QuantizeConfig:
    """Quantize ``bundle`` (fp32) into ``out`` (and the TensorRT variant into ``trt_out``).

    ``float_search`` > 0: when no variant of the grid passes, keep up to that many more layers
    in float (:mod:`export.precision_search`), ranked on ``search_frames`` train frames.
    ``min_speedup``: a variant is written only if it is at least that many times as fast as
    the float model at the first thread count (0 accepts a slower one)."""

    bundle: str = "runs/bundles/student-fp32"
    out: str = "runs/bundles/student-int8"
    trt_out: str | None = "runs/bundles/student-int8-trt"
    data: str = str(TileDataConfig().root)
    calib_dir: str | None = None
    calib_frames: int = 64
    val_frames: int | None = None
    full_grid: bool = True
    repeats: int = 30
    threads: tuple[int, ...] = (1, 2)
    min_agreement: float = MIN_AGREEMENT
    max_accuracy_drop: float = MAX_ACCURACY_DROP
    variants: list[str] = field(default_factory=list)
    float_search: int = 0
    search_frames: int = 400
    min_speedup: float = 1.2


class TileReader:
    """ONNX Runtime CalibrationDataReader over tiles (N, C, S, S) in batches of 64."""

    def __init__(self, input_name: str, tiles: np.ndarray, batch: int = 64):
        self.input_name = input_name
        self.tiles = tiles
        self.batch = batch
        self.pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None at the end."""
        if self.pos >= len(self.tiles):
            return None
        out = {self.input_name: self.tiles[self.pos:self.pos + self.batch]}
        self.pos += self.batch
        return out

    def rewind(self) -> None:
        """Start again from the first batch."""
        self.pos = 0

    def __iter__(self) -> TileReader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _data_config(bundle: Bundle, root: str, max_train: int | None = None,
                 max_val: int | None = None) -> TileDataConfig:
    m = bundle.manifest
    cfg = TileDataConfig(root=root, tile_pixels=m.input.tile_pixels,
                         reference_width=m.tiling.reference_width, tile=m.tiling.tile,
                         stride=m.tiling.stride, max_train_frames=max_train,
                         max_val_frames=max_val)
    if cfg.input_spec != m.input:
        raise QuantizeError(f"{bundle.path}: the bundle's input normalisation {m.input} is not "
                            f"the AI4Mars tiles' {cfg.input_spec}")
    return cfg


def calibration_tiles(bundle: Bundle, calib_dir: str | None, data_root: str, frames: int
                      ) -> tuple[np.ndarray, str]:
    """Calibration tiles float32 (N, C, S, S) through edge's preprocessing, and where they came
    from: ``frames`` frames spread over ``calib_dir`` (any images), else over the AI4Mars
    train split of ``data_root``. A folder without images raises QuantizeError naming it."""
    m = bundle.manifest
    if calib_dir is None:
        cfg = _data_config(bundle, data_root, max_train=frames)
        tiles = load_split_tiles(cfg, "train", with_labels=False).tiles
        return tiles, f"{frames} frames spread over the AI4Mars train split of {data_root}"
    folder = Path(calib_dir)
    if not folder.is_dir():
        raise QuantizeError(f"calibration folder {calib_dir}: not a directory")
    try:
        _, files = list_image_files(str(folder))
    except SourceError as exc:
        raise QuantizeError(f"calibration folder {calib_dir}: no images to calibrate on "
                            f"({exc})") from None
    picks = spread([str(p) for p in files], frames)
    tiles = []
    for path in picks:
        try:
            tiles.append(frame_to_tiles(read_image(Path(path)), m.input, m.tiling).tiles)
        except FrameError:
            continue
    if not tiles:
        raise QuantizeError(f"calibration folder {calib_dir}: none of its {len(files)} images "
                            "could be decoded")
    return np.concatenate(tiles), f"{len(tiles)} frames spread over {calib_dir}"


def float_nodes_of(float_path: Path, variant: QuantVariant) -> list[str]:
    """Names of the nodes of the float model ``float_path`` that ``variant`` keeps in float:
    the first convolution (``stem_float``), the node that makes the logits (``head_float``)
    and ``float_nodes``."""
    exclude = list(variant.float_nodes)
    if variant.stem_float or variant.head_float:
        model = onnx.load(str(float_path))
        if variant.stem_float:
            exclude += [n.name for n in model.graph.node if n.op_type == "Conv"
                        and n.input[0] == model.graph.input[0].name][:1]
        if variant.head_float:
            exclude += [n.name for n in model.graph.node
                        if model.graph.output[0].name in n.output][:1]
    return list(dict.fromkeys(exclude))


def float_source(float_path: Path, variant: QuantVariant, tiles: np.ndarray, work: Path
                 ) -> Path:
    """The float model that ``variant`` quantizes: ``float_path`` itself, or its channel-
    equalized copy (same function, :mod:`export.equalize`, ranges from ``tiles``) written in
    the folder ``work``."""
    if variant.equalize is None:
        return float_path
    from export.equalize import equalize_file

    out = work / f"{float_path.stem}.eq{round(variant.equalize * 100)}.onnx"
    equalize_file(float_path, out, tiles, variant.equalize)
    return out


def quantize_model(float_path: Path, out_path: Path, variant: QuantVariant,
                   tiles: np.ndarray, input_name: str) -> Path:
    """Write the ``variant`` INT8 model of ``float_path`` calibrated on ``tiles``."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if variant.weights == "u8" and variant.fmt != "qdq":
        raise QuantizeError(f"{variant.name}: uint8 weights need the QDQ format (ONNX "
                            "Runtime's QOperator converter writes per-channel weights as int8)")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[variant.calibration]
    act = QuantType.QUInt8 if variant.activation == "u8" else QuantType.QInt8
    weight = QuantType.QUInt8 if variant.weights == "u8" else QuantType.QInt8
    fmt = QuantFormat.QDQ if variant.fmt == "qdq" else QuantFormat.QOperator
    extra = {"WeightSymmetric": True, "ActivationSymmetric": variant.symmetric}
    if variant.calibration == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    exclude = float_nodes_of(float_path, variant)
    if variant.symmetric:
        # TensorRT's explicit quantization: int8 Q/DQ with zero points 0 on activations and
        # weights; biases stay float (TensorRT does not take int32 DequantizeLinear biases).
        extra |= {"QuantizeBias": False, "CalibTensorRangeSymmetric": True}
    with tempfile.TemporaryDirectory(prefix="edge-eq-") as work:
        source = float_source(float_path, variant, tiles, Path(work))
        quantize_static(str(source), str(out_path), TileReader(input_name, tiles),
                        quant_format=fmt, per_channel=variant.per_channel,
                        activation_type=act, weight_type=weight, calibrate_method=method,
                        extra_options=extra, nodes_to_exclude=exclude or None)
    return out_path


def cpu_session(model: Path | bytes, threads: int, optimize: bool = True) -> Any:
    """An ONNX Runtime CPU session of a model file or model bytes: ``threads`` intra-op
    threads, sequential execution, all graph optimisations unless ``optimize`` is False."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def logits(model_path: Path, tiles: np.ndarray, input_name: str, threads: int = 2,
           batch: int = 4096, optimize: bool = True) -> np.ndarray:
    """Logits (N, K) of an ONNX model on tiles (N, C, S, S); ``optimize=False`` runs the graph
    as written (a QDQ model then computes in float on dequantized values)."""
    sess = cpu_session(model_path, threads, optimize)
    return np.concatenate([sess.run(None, {input_name: tiles[i:i + batch]})[0]
                           for i in range(0, len(tiles), batch)])


def predict(model_path: Path, tiles: np.ndarray, input_name: str, threads: int = 2,
            batch: int = 4096) -> np.ndarray:
    """Class predictions (N,) of an ONNX model on tiles (N, C, S, S)."""
    return logits(model_path, tiles, input_name, threads, batch).argmax(1)


def time_model(model_path: Path, frames: list[np.ndarray], input_name: str, threads: int,
               repeats: int) -> dict[str, float]:
    """Inference ms per 64-tile frame: median and p90 over ``repeats`` passes over ``frames``
    (each (64, C, S, S)), after one warm-up pass."""
    sess = cpu_session(model_path, threads)
    for f in frames:
        sess.run(None, {input_name: f})
    times = []
    for _ in range(repeats):
        for f in frames:
            t0 = time.perf_counter()
            sess.run(None, {input_name: f})
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3)}


def side_by_side_speedup(float_path: Path, quant_path: Path, frames: list[np.ndarray],
                         input_name: str, threads: int, repeats: int, rounds: int = 5,
                         timer: Callable[..., dict[str, Any]] | None = None) -> float:
    """Speed of ``quant_path`` relative to ``float_path`` timed side by side: in each of
    ``rounds`` rounds both models are timed by ``timer`` (default :func:`time_model`, same
    arguments; ``repeats`` passes over ``frames``), in alternating order; the median over
    rounds of float / INT8 median ms, so a slow spell of a shared CPU hits both alike."""
    timer = timer or time_model
    ratios = []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        ms = [0.0, 0.0]
        for k in order:
            path = (float_path, quant_path)[k]
            ms[k] = timer(path, frames, input_name, threads, repeats)["median_ms"]
        if ms[1] > 0:  # median_ms is rounded to microseconds
            ratios.append(ms[0] / ms[1])
    return round(statistics.median(ratios), 2) if ratios else 0.0


def _op_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _class_metrics(pred: np.ndarray, labels: np.ndarray, classes: list[str]
                   ) -> dict[str, Any]:
    """Per-class recall and the confusion matrix of predictions (N,) against labels (N,)."""
    result = evaluate(pred, labels, classes)
    return {"per_class_recall": result["per_class_recall"], "confusion": result["confusion"]}


def _int8_manifest(base: Manifest, precision: str, variant: QuantVariant, row: dict[str, Any],
                   extra: dict[str, Any], float_bundle: Bundle) -> Manifest:
    prov = dict(base.provenance)
    prov["created"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    prov["command"] = " ".join(["edge", *sys.argv[1:]]) if sys.argv else None
    # the revision that ran this command; the float bundle's own stays with its record
    prov["float_bundle"] = {"path": str(float_bundle.path), "sha256": float_bundle.manifest.sha256,
                            "git_revision": base.provenance.get("git_revision")}
    prov["git_revision"] = git_revision()
    prov["quantization"] = {"variant": variant.name, **asdict(variant), **extra}
    metrics = dict(base.metrics)
    # The float bundle's relation to its teacher keeps its name only under "float_"; every
    # figure of the INT8 model itself is its own (per-class recall and confusion included).
    for key in ("agreement_with_teacher", "accuracy_kept"):
        if key in metrics:
            metrics[f"float_{key}"] = metrics.pop(key)
    # The INT8 figures are on the gate's tiles (fewer with --val-frames); the float bundle's
    # own figures keep their count under "float_tiles" where it differs.
    tiles = row["gate"]["tiles"]
    if metrics.get("tiles") not in (None, tiles):
        metrics["float_tiles"] = metrics["tiles"]
    metrics.update({"tiles": tiles, "accuracy": row["accuracy"], "mean_recall": row["mean_recall"],
                    "per_class_recall": row["per_class_recall"], "confusion": row["confusion"],
                    "agreement_with_float": row["agreement"],
                    "float_accuracy": row["float_accuracy"],
                    "gate": row["gate"]})
    return Manifest(name=base.name, classes=base.classes, input=base.input, tiling=base.tiling,
                    precision=precision, sha256="", model_file=base.model_file,
                    input_name=base.input_name, output_name=base.output_name,
                    provenance=prov, metrics=metrics)


def kernel_check(quant_path: Path, qdq_path: Path, tiles: np.ndarray, input_name: str
                 ) -> dict[str, Any]:
    """Whether an INT8 model's error comes from the target's INT8 kernels or from the
    quantization grid: its predictions (fused kernels) against the QDQ graph ``qdq_path`` run
    as written (float arithmetic on the dequantized values) on ``tiles`` (N, C, S, S). Many
    differing tiles point at the kernels (e.g. U8S8 saturation on x86 without VNNI); few,
    at the grid itself. Also the largest |logit difference|."""
    fused = logits(quant_path, tiles, input_name)
    reference = logits(qdq_path, tiles, input_name, optimize=False)
    return {"tiles": int(len(tiles)),
            "fused_vs_reference": int((fused.argmax(1) != reference.argmax(1)).sum()),
            "max_abs_logit_diff": round(float(np.abs(fused - reference).max()), 6)}


def snap_weights(model: onnx.ModelProto, keep_float: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose Conv weights, and Gemm weights with ``transB`` = 1, are
    replaced by their values on ONNX Runtime's per-output-channel symmetric int8 grid
    (``scale = max|w_c| / 127``), except the nodes named in ``keep_float``: the float model
    with only its weights quantized."""
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    for node in out.graph.node:
        trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
        if node.name in keep_float or len(node.input) < 2 or node.input[1] not in inits or not (
                node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b)):
            continue
        init = inits[node.input[1]]
        w = numpy_helper.to_array(init).astype(np.float64)
        absmax = np.abs(w).reshape(len(w), -1).max(axis=1)
        scale = np.where(absmax > 0, absmax / 127, 1.0).reshape((-1,) + (1,) * (w.ndim - 1))
        init.CopyFrom(numpy_helper.from_array(
            (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32), init.name))
    return out


def error_sources(float_path: Path, variant: QuantVariant, calib: np.ndarray,
                  tiles: np.ndarray, input_name: str, work: Path,
                  float_pred: np.ndarray | None = None) -> dict[str, Any] | None:
    """Which 8-bit grid flips the decisions, for a variant with per-channel int8 weights: on
    ``tiles`` (N, C, S, S), how many predictions change when only the weights are rounded
    (:func:`snap_weights`), and how many the variant's quantization of that weight-rounded
    model then changes (its weights are on the grid already, so: the activations' rounding).
    ``float_pred`` (N,): the float model's predictions on ``tiles``, if already made.
    None for other variants."""
    if variant.weights != "s8" or not variant.per_channel or variant.equalize is not None:
        return None
    snapped = work / "weights-only.onnx"
    onnx.save(snap_weights(onnx.load(str(float_path)), float_nodes_of(float_path, variant)),
              str(snapped))
    fp = predict(float_path, tiles, input_name) if float_pred is None else float_pred
    wq = predict(snapped, tiles, input_name)
    quantized = quantize_model(snapped, work / "weights-only.q.onnx", variant, calib,
                               input_name)
    aq = predict(quantized, tiles, input_name)
    return {"tiles": int(len(tiles)), "weights_only": int((wq != fp).sum()),
            "activations_only": int((aq != wq).sum()), "both": int((aq != fp).sum())}


def _failure_report(cfg_out: Path, float_path: Path, variant: QuantVariant, gate: GateResult,
                    calib: np.ndarray, val: np.ndarray, input_name: str, tmp: Path,
                    float_pred: np.ndarray) -> Path:
    """Per-layer comparison, :func:`kernel_check` and :func:`error_sources` for a failed
    variant on the val tiles (N, C, S, S), ``float_pred`` (N,) being the float model's
    predictions on them (a QOperator model is compared through its QDQ twin with the same
    settings: QOperator tensors carry no float names)."""
    note = ""
    quantized = model = tmp / f"{variant.name}.onnx"
    if variant.fmt == "qoperator":
        twin = replace(variant, fmt="qdq")
        model = quantize_model(float_path, tmp / f"{twin.name}.twin.onnx", twin, calib,
                               input_name)
        note = f"QOperator model compared through its QDQ twin {twin.name}"
    # an equalized variant's tensors are compared with the equalized float model's
    rows = layer_errors(float_source(float_path, variant, calib, tmp), model, val[:512])
    return write_layer_report(cfg_out.parent / f"{cfg_out.name}.gate-report.json", gate, rows,
                              variant.name, note,
                              kernel_check(quantized, model, val, input_name),
                              error_sources(float_path, variant, calib, val, input_name, tmp,
                                            float_pred))


def quantize_bundle(cfg: QuantizeConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the grid, write the chosen INT8 bundle (and the TensorRT one); returns the summary.

    Raises QuantizeError for bad inputs and GateError (with the per-layer report written
    beside ``cfg.out``, no bundle) when no variant passes the gate."""
    try:
        bundle = load_bundle(cfg.bundle)
    except BundleError as exc:
        raise QuantizeError(str(exc)) from None
    m = bundle.manifest
    if m.precision != "fp32":
        raise QuantizeError(f"{bundle.path}: precision is '{m.precision}'; quantize an fp32 "
                            "bundle")
    grid = select_variants(cfg.variants, cfg.full_grid)
    try:
        onnx.checker.check_model(onnx.load(str(bundle.model_path)))
    except Exception as exc:  # onnx raises several types for bad files
        raise QuantizeError(f"{bundle.model_path}: not a valid ONNX model ({exc})") from None
    calib, calib_from = calibration_tiles(bundle, cfg.calib_dir, cfg.data, cfg.calib_frames)
    log(f"calibration: {len(calib)} tiles ({calib_from})")
    try:
        val = load_split_tiles(_data_config(bundle, cfg.data, max_val=cfg.val_frames),
                               "val").scored()
    except DatasetError as exc:
        raise QuantizeError(str(exc)) from None
    if not len(val.labels):
        raise QuantizeError(f"{cfg.data}: no scored validation tiles for the accuracy gate")
    name = m.input_name
    frames = [val.tiles[i:i + 64] for i in range(0, min(len(val.tiles), 64 * 16), 64)]
    frames = [f for f in frames if len(f) == 64] or [val.tiles[:64]]
    float_pred = predict(bundle.model_path, val.tiles, name)
    float_speed = {t: time_model(bundle.model_path, frames, name, t, cfg.repeats)
                   for t in cfg.threads}
    log(f"float: {len(val.labels)} scored val tiles, speed {float_speed}")
    rows: list[dict[str, Any]] = []
    out, tmp = Path(cfg.out), Path(tempfile.mkdtemp(prefix="edge-quant-"))
    try:
        def run_variant(variant: QuantVariant) -> tuple[dict[str, Any], GateResult, Path]:
            path = tmp / f"{variant.name}.onnx"
            t0 = time.perf_counter()
            quantize_model(bundle.model_path, path, variant, calib, name)
            quant_s = time.perf_counter() - t0
            pred = predict(path, val.tiles, name)
            gate = check_gate(float_pred, pred, val.labels, m.classes, cfg.min_agreement,
                              cfg.max_accuracy_drop)
            speed = {t: time_model(path, frames, name, t, cfg.repeats) for t in cfg.threads}
            ops = _op_counts(path)
            row = {"variant": variant.name, **asdict(variant),
                   "accuracy": gate.int8_accuracy, "mean_recall": gate.int8_mean_recall,
                   **_class_metrics(pred, val.labels, m.classes),
                   "agreement": gate.agreement, "float_accuracy": gate.float_accuracy,
                   "accuracy_drop": gate.accuracy_drop, "passed": gate.passed,
                   "gate": gate.to_dict(),
                   **{f"ms_{t}t": s["median_ms"] for t, s in speed.items()},
                   **{f"speedup_{t}t": round(float_speed[t]["median_ms"] / s["median_ms"], 2)
                      for t, s in speed.items()},
                   "quantize_s": round(quant_s, 1),
                   "qlinear_ops": sum(v for k, v in ops.items() if k.startswith("QLinear")),
                   "qdq_ops": ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0)}
            log(f"{variant.name}: agreement {gate.agreement:.4f} accuracy {gate.int8_accuracy:.4f}"
                f" ms " + " ".join(f"{t}t={s['median_ms']}" for t, s in speed.items())
                + (" PASS" if gate.passed else " fail"))
            return row, gate, path

        results = {}

        def run_and_keep(variant: QuantVariant) -> bool:
            row, gate, path = run_variant(variant)
            rows.append(row)
            results[variant.name] = (variant, gate, path)
            return gate.passed

        for variant in grid:
            run_and_keep(variant)
        search: dict[str, Any] | None = None
        if cfg.float_search > 0 and rows and not any(r["passed"] for r in rows):
            best = max(rows, key=lambda r: r["agreement"])["variant"]
            search = _float_search(cfg, bundle, calib, results[best][0], tmp, run_and_keep, log,
                                   quantized={r[0]: r[2] for r in results.values()})
        key = f"ms_{cfg.threads[0]}t"
        # An INT8 model no faster than its float source is no deployment gain: a variant must
        # also be at least ``min_speedup`` x the float model's speed (default 1.2: timings on
        # a shared 2-core box vary by about 20%, so a smaller gain may be noise). The grid's
        # timings are taken minutes apart, so the gate-passing variants, fastest first, are
        # timed again side by side with the float model until one clears the floor.
        gate_passing = sorted((r for r in rows if r["passed"]), key=lambda r: r[key])
        passing = []
        for r in gate_passing:
            r["speedup_side_by_side"] = side_by_side_speedup(
                bundle.model_path, results[r["variant"]][2], frames, name, cfg.threads[0],
                cfg.repeats)
            log(f"{r['variant']}: {r['speedup_side_by_side']}x the float model, timed side by "
                f"side at {cfg.threads[0]} thread(s)")
            if r["speedup_side_by_side"] >= cfg.min_speedup:
                passing.append(r)
                break
        float_row = {"variant": "fp32", "float_accuracy": float(
            (float_pred == val.labels).mean()),
            **{f"ms_{t}t": s["median_ms"] for t, s in float_speed.items()}}
        table = {"float": float_row, "variants": [{k: v for k, v in r.items() if k != "gate"}
                                                  for r in rows],
                 "calibration": calib_from, "calibration_tiles": int(len(calib)),
                 "val_tiles": int(len(val.labels)),
                 # speed and the INT8 kernels' rounding both depend on the CPU's features
                 "cpu": cpu_info().to_json(),
                 "timing": f"ONNX Runtime CPU, median ms per 64-tile real val frame over "
                           f"{cfg.repeats} passes of {len(frames)} frames",
                 "gate": {"min_agreement": cfg.min_agreement,
                          "max_accuracy_drop": cfg.max_accuracy_drop}}
        if search is not None:
            table["float_search"] = search
        trt: dict[str, Any] | None = None
        trt_error: GateError | None = None
        if cfg.trt_out:
            try:
                trt = _write_trt(cfg, bundle, calib, val, float_pred, frames, tmp, table, log)
            except GateError as exc:
                trt_error = exc
        if not passing:
            also = f"; {trt_error}" if trt_error else (
                f"; TensorRT bundle written at {trt['bundle']}" if trt else "")
            table_path = out.parent / f"{out.name}.variants.json"
            write_bytes_atomic(table_path, (json.dumps(table, indent=2) + "\n").encode())
            if gate_passing:
                fastest = max(gate_passing, key=lambda r: r["speedup_side_by_side"])
                raise GateError(
                    f"{len(gate_passing)} INT8 variant(s) pass the accuracy gate, but none is "
                    f"at least {cfg.min_speedup:g}x as fast as the float model at "
                    f"{cfg.threads[0]} thread(s) (fastest: {fastest['variant']}, "
                    f"{fastest['speedup_side_by_side']}x, timed side by side); variant table "
                    f"in {table_path}; no bundle written{also}")
            best = max(rows, key=lambda r: r["agreement"])
            variant, gate, _ = results[best["variant"]]
            report = _failure_report(out, bundle.model_path, variant, gate, calib, val.tiles,
                                     name, tmp, float_pred)
            also += (f"; float search: {search['stopped']}" if search else
                     "; --float-search N keeps up to N more layers in float")
            raise GateError(f"no INT8 variant passes the accuracy gate (best: {variant.name}: "
                            f"{'; '.join(gate.failures)}); per-layer comparison in {report}; "
                            f"no bundle written{also}", report)
        chosen = passing[0]
        reason = (f"fastest at {cfg.threads[0]} thread(s) ({chosen[key]} ms per 64-tile frame) "
                  f"of the {len(gate_passing)} of {len(rows)} variants that pass the gate "
                  f"(agreement >= {cfg.min_agreement}, accuracy drop <= "
                  f"{cfg.max_accuracy_drop * 100:g} points) to be at least "
                  f"{cfg.min_speedup:g}x the float model's speed timed side by side "
                  f"({chosen['speedup_side_by_side']}x)")
        if (cfg.min_agreement, cfg.max_accuracy_drop) != (MIN_AGREEMENT, MAX_ACCURACY_DROP):
            reason += (f"; RELAXED gate: the default is agreement >= {MIN_AGREEMENT}, drop <= "
                       f"{MAX_ACCURACY_DROP * 100:g} points")
        variant, _, path = results[chosen["variant"]]
        summary = {"chosen": chosen["variant"], "reason": reason, "table": table}
        manifest = _int8_manifest(m, "int8", variant, chosen, {"chosen_because": reason,
                                                              "variant_table": table}, bundle)
        written = write_bundle(out, path.read_bytes(), manifest)
        summary["bundle"] = str(written.path)
        log(f"chosen {chosen['variant']}: {reason}; bundle {written.path}")
        if trt_error is not None:
            raise GateError(f"INT8 bundle written at {written.path}, but {trt_error}",
                            trt_error.report)
        if trt is not None:
            summary["trt"] = trt
        return summary
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _float_search(cfg: QuantizeConfig, bundle: Bundle, calib: np.ndarray, base: QuantVariant,
                  tmp: Path, run_step: Callable[[QuantVariant], bool],
                  log: Callable[[str], None],
                  quantized: dict[QuantVariant, Path] | None = None
                  ) -> dict[str, Any]:
    """:func:`export.precision_search.float_search` from ``base``, scoring single-layer
    candidates on train frames outside the calibration; returns its record. ``quantized``:
    models already written (the grid's), by variant, scored without quantizing again."""
    from export.precision_search import candidate_nodes, float_search, search_tiles

    m = bundle.manifest
    try:
        tiles, source = search_tiles(_data_config(bundle, cfg.data), cfg.calib_frames,
                                     cfg.search_frames)
    except DatasetError as exc:
        raise QuantizeError(str(exc)) from None
    float_pred = predict(bundle.model_path, tiles, m.input_name)

    def agreement_of(variant: QuantVariant) -> float:
        path = (quantized or {}).get(variant) or quantize_model(
            bundle.model_path, tmp / "search.onnx", variant, calib, m.input_name)
        return float((predict(path, tiles, m.input_name) == float_pred).mean())

    candidates = candidate_nodes(bundle.model_path, float_nodes_of(bundle.model_path, base))
    log(f"float search from {base.name}: {len(candidates)} candidate layers ranked on "
        f"{len(tiles)} tiles of {source}")
    record = float_search(base, candidates, agreement_of, run_step, cfg.float_search, log)
    return {**record, "search_tiles": int(len(tiles)), "search_from": source}


def _write_trt(cfg: QuantizeConfig, bundle: Bundle, calib: np.ndarray, val: Any,
               float_pred: np.ndarray, frames: list[np.ndarray], tmp: Path,
               table: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The TensorRT variant: symmetric signed QDQ, gated with ONNX Runtime, its own bundle."""
    m = bundle.manifest
    variant = TRT_VARIANT
    path = tmp / f"{variant.name}.onnx"
    quantize_model(bundle.model_path, path, variant, calib, m.input_name)
    pred = predict(path, val.tiles, m.input_name)
    gate = check_gate(float_pred, pred, val.labels, m.classes, cfg.min_agreement,
                      cfg.max_accuracy_drop)
    speed = {t: time_model(path, frames, m.input_name, t, cfg.repeats) for t in cfg.threads}
    row = {"variant": variant.name, "accuracy": gate.int8_accuracy,
           "mean_recall": gate.int8_mean_recall,
           **_class_metrics(pred, val.labels, m.classes), "agreement": gate.agreement,
           "float_accuracy": gate.float_accuracy, "gate": gate.to_dict(),
           **{f"ms_{t}t_onnxruntime": s["median_ms"] for t, s in speed.items()}}
    log(f"TensorRT variant {variant.name}: agreement {gate.agreement:.4f} accuracy "
        f"{gate.int8_accuracy:.4f} {'PASS' if gate.passed else 'fail'}")
    out = Path(cfg.trt_out or "")
    if not gate.passed:
        report = _failure_report(out, bundle.model_path, variant, gate, calib, val.tiles,
                                 m.input_name, tmp, float_pred)
        raise GateError(f"the TensorRT INT8 variant fails the accuracy gate "
                        f"({'; '.join(gate.failures)}); per-layer comparison in {report}; "
                        f"no bundle written at {out}", report)
    manifest = _int8_manifest(m, "int8-qdq-trt", variant, row, {
        "for": "TensorRT explicit quantization (symmetric signed int8 Q/DQ, zero points 0, "
               "per-channel weights); checked here with ONNX Runtime only",
        "onnxruntime_check": row, "cpu_variant_table": table}, bundle)
    written = write_bundle(out, path.read_bytes(), manifest)
    log(f"TensorRT bundle {written.path}")
    return {"bundle": str(written.path), **row}
