"""The INT8 accuracy gate, and the per-layer comparison written when it fails.

Gate: on the scored validation tiles, the INT8 model predicts the same class as the float
model on at least ``min_agreement`` (99%) of them, and its accuracy against the reference
labels is at most ``max_accuracy_drop`` (0.5 points) below the float model's.

Per-layer comparison: every float tensor that both graphs carry (in a QDQ model, a tensor
``X`` is read after its QuantizeLinear/DequantizeLinear pair, ``X_DequantizeLinear_Output``,
where it has one) is added as a graph output and both models run, unoptimised, on the same
tiles; per tensor, in graph order: relative L2 error, SQNR (dB) and cosine similarity.
The report names the first tensor whose SQNR falls below 20 dB and the tensor where the SQNR
drops most from the previous one (where the most error is added).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge.atomic_file import write_bytes_atomic
from train.metrics import evaluate

MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.005
SQNR_ALARM_DB = 20.0


class GateError(Exception):
    """The INT8 model failed the accuracy gate; no bundle was written."""

    def __init__(self, message: str, report: Path | None = None):
        super().__init__(message)
        self.report = report


@dataclass
class GateResult:
    """Agreement and accuracy of the INT8 model against the float model on scored tiles."""

    tiles: int
    agreement: float
    float_accuracy: float
    int8_accuracy: float
    float_mean_recall: float
    int8_mean_recall: float
    min_agreement: float = MIN_AGREEMENT
    max_accuracy_drop: float = MAX_ACCURACY_DROP
    failures: list[str] = field(default_factory=list)

    @property
    def accuracy_drop(self) -> float:
        """Float accuracy minus INT8 accuracy (positive: INT8 is worse)."""
        return self.float_accuracy - self.int8_accuracy

    @property
    def passed(self) -> bool:
        """True when both conditions hold."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the drop and the verdict."""
        return asdict(self) | {"accuracy_drop": self.accuracy_drop, "passed": self.passed}


def check_gate(float_pred: np.ndarray, int8_pred: np.ndarray, labels: np.ndarray,
               classes: list[str], min_agreement: float = MIN_AGREEMENT,
               max_accuracy_drop: float = MAX_ACCURACY_DROP) -> GateResult:
    """Gate on predictions (N,) of both models and reference labels (N,)."""
    if not len(labels):
        raise ValueError("the accuracy gate needs at least one scored tile")
    fm = evaluate(float_pred, labels, classes)
    qm = evaluate(int8_pred, labels, classes)
    agreement = float((float_pred == int8_pred).mean())
    result = GateResult(len(labels), agreement, fm["accuracy"], qm["accuracy"],
                        fm["mean_recall"], qm["mean_recall"], min_agreement, max_accuracy_drop)
    if agreement < min_agreement:
        # Rounded down, and with the counts: a ratio just under the bar must not read as equal.
        differ = int((float_pred != int8_pred).sum())
        allowed = math.floor(len(labels) * (1 - min_agreement) + 1e-9)
        shown = math.floor(agreement * 1e5) / 1e5
        result.failures.append(f"agreement with the float model {shown:.5f} < "
                               f"{min_agreement} ({differ} of {len(labels)} tiles differ, "
                               f"at most {allowed} may)")
    if result.accuracy_drop > max_accuracy_drop + 1e-12:
        result.failures.append(f"accuracy drop {result.accuracy_drop * 100:.2f} points > "
                               f"{max_accuracy_drop * 100:.1f}")
    return result


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.ValueInfoProto(name=name))
    return out


def layer_errors(float_model: str | Path, quant_model: str | Path, tiles: np.ndarray
                 ) -> list[dict[str, Any]]:
    """Per shared tensor, in the float graph's order: relative L2 error, SQNR (dB) and cosine
    of the quantized model's value against the float model's on ``tiles`` (N, C, S, S)."""
    fmodel = onnx.load(str(float_model))
    qmodel = onnx.load(str(quant_model))
    qnames = {o for n in qmodel.graph.node for o in n.output}
    pairs: list[tuple[str, str, str]] = []  # (float name, quant name, op type)
    for node in fmodel.graph.node:
        for name in node.output:
            deq = f"{name}_DequantizeLinear_Output"
            if deq in qnames:
                pairs.append((name, deq, node.op_type))
            elif name in qnames:
                pairs.append((name, name, node.op_type))
    if not pairs:
        return []
    input_name = fmodel.graph.input[0].name
    fsess = _session(_with_outputs(fmodel, [p[0] for p in pairs]))
    qsess = _session(_with_outputs(qmodel, [p[1] for p in pairs]))
    fvals = fsess.run([p[0] for p in pairs], {input_name: tiles})
    qvals = qsess.run([p[1] for p in pairs], {qmodel.graph.input[0].name: tiles})
    rows = []
    for (fname, qname, op), a, b in zip(pairs, fvals, qvals, strict=True):
        a = np.asarray(a, np.float64).ravel()
        b = np.asarray(b, np.float64).ravel()
        signal = float(np.sum(a * a))
        noise = float(np.sum((a - b) ** 2))
        denom = math.sqrt(signal * float(np.sum(b * b)))
        rows.append({
            "tensor": fname, "quantized_tensor": qname, "op": op,
            "relative_error": math.sqrt(noise / signal) if signal else None,
            "sqnr_db": 10 * math.log10(signal / noise) if noise and signal else None,
            "cosine": float(np.dot(a, b) / denom) if denom else None,
        })
    return rows


def largest_sqnr_step(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The tensor whose SQNR falls most below the previous tensor's (where the most error is
    added), as ``{"tensor", "op", "drop_db"}``; None with fewer than two finite SQNRs."""
    best, prev = None, None
    for r in rows:
        if r["sqnr_db"] is None:
            continue
        if prev is not None and (best is None or prev - r["sqnr_db"] > best["drop_db"]):
            best = {"tensor": r["tensor"], "op": r["op"], "drop_db": prev - r["sqnr_db"]}
        prev = r["sqnr_db"]
    return best


def write_layer_report(path: str | Path, gate: GateResult, rows: list[dict[str, Any]],
                       variant: str, note: str = "",
                       kernels: dict[str, Any] | None = None,
                       sources: dict[str, Any] | None = None) -> Path:
    """Write the gate verdict, the per-layer rows, (``kernels``) the fused-vs-reference
    kernel check and (``sources``) the weights-only / activations-only split of the flipped
    decisions as JSON and a Markdown table beside it; returns the JSON path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = next((r["tensor"] for r in rows
                  if r["sqnr_db"] is not None and r["sqnr_db"] < SQNR_ALARM_DB), None)
    step = largest_sqnr_step(rows)
    data = {"variant": variant, "gate": gate.to_dict(), "error_enters_at": entry,
            "largest_sqnr_drop": step, "sqnr_alarm_db": SQNR_ALARM_DB, "note": note,
            "kernel_check": kernels, "error_sources": sources, "layers": rows}
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    lines = [f"# INT8 gate failure: {variant}", "", *[f"- {f}" for f in gate.failures],
             f"- first tensor below {SQNR_ALARM_DB:g} dB SQNR: {entry or 'none'}",
             "- largest SQNR drop from one tensor to the next: "
             + (f"{step['tensor']} ({step['drop_db']:.1f} dB)" if step else "none"),
             *([f"- {note}"] if note else []),
             *([f"- fused INT8 kernels vs the same Q/DQ graph in float arithmetic: "
                f"{kernels['fused_vs_reference']} of {kernels['tiles']} val tiles predicted "
                f"differently, largest logit difference {kernels['max_abs_logit_diff']:.3g} "
                "(many: the kernels; few: the quantization grid)"]
               if kernels else []),
             *([f"- decisions changed by rounding the weights alone: {sources['weights_only']} "
                f"of {sources['tiles']} val tiles; by the activations' rounding once the "
                f"weights are on their grid: {sources['activations_only']}; by both: "
                f"{sources['both']}"] if sources else []), "",
             "| tensor | op | relative error | SQNR dB | cosine |", "|---|---|---|---|---|"]
    for r in rows:
        fmt = [f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k])
               for k in ("relative_error", "sqnr_db", "cosine")]
        lines.append(f"| {r['tensor']} | {r['op']} | " + " | ".join(fmt) + " |")
    write_bytes_atomic(path.with_suffix(".md"), ("\n".join(lines) + "\n").encode())
    return path
