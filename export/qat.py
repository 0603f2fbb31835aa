"""Quantization-aware fine-tuning (QAT) of a distilled student, mimicking ONNX Runtime's static
QDQ INT8 quantization, written back as an ordinary float 'student' checkpoint.

Why: post-training INT8 of the student agrees with the float model on at most 98.5% of the
validation tiles (docs/export.md); the error is ordinary 8-bit noise spread over every layer,
on a model whose decisions sit near a class boundary on ~2% of tiles. QAT trains the weights
with that noise in the forward pass, so that the network's decisions become insensitive to it.

What is simulated (what ``edge export quantize`` does to the exported float graph, variants
``qdq-u8-pc-*``, checked against the Q/DQ graph ONNX Runtime writes for this student):

- batch norm is **folded first** (:func:`export.student.fold_batchnorm`): the network trained
  here is the BN-free network that is exported and quantized, so the trained weights are
  exactly the weights that get quantized (no BN statistics to drift during fine-tuning);
- **weights**: per output channel, symmetric signed int8 on ONNX Runtime's symmetric grid
  [-127, 127], ``scale = max|w_c| / 127``, zero point 0, recomputed from the current weights
  at every step (what ``WeightSymmetric`` per-channel quantization computes at export);
  convolutions and the linear head;
- **activations**: per tensor, asymmetric uint8, ``scale = (max(hi, 0) - min(lo, 0)) / 255``,
  ``zero_point = round(-min(lo, 0) / scale)`` (ONNX Runtime's ``compute_scale_zp``), on every
  tensor ONNX Runtime puts a Q/DQ pair on: the network input, the (ReLU'd) input of every
  convolution and of the head, both signed inputs of each residual Add (the second
  convolution's and the 1x1 skip convolution's outputs, the worst tensors of the
  post-training report), the block outputs, the pooled features and the logits;
- biases stay float (ONNX Runtime quantizes them to int32 at ``s_in * s_w``: negligible).

Both use :func:`torch.fake_quantize_per_tensor_affine` /
:func:`torch.fake_quantize_per_channel_affine`: quantize-dequantize in the forward pass,
straight-through gradient inside the range (zero outside it).

Activation ranges are **observed, then frozen**, not learned: the first ``calib_batches``
batches run the float network (no weight update) while each quantizer tracks its tensor's
range (``observer='ema'``: an exponential moving average of the per-batch min and max;
``'minmax'``: the running min and max over all calibration batches, which is exactly ONNX
Runtime's MinMax calibrator); the ranges are then frozen for training. Learned ranges
(LSQ/PACT) are not used on purpose: the ranges are not exported (the checkpoint and the ONNX
graph are float; ``edge export quantize`` recalibrates every variant on its own calibration
tiles), so a learned range would train the network for a grid that the deployed model never
uses, while observed ranges are what the export-time calibration will find on the same data
(the weights move little at this learning rate, so freezing them costs little).

Loss (logits, temperature T, :func:`export.distill.distill_loss`):

    KL_T(teacher || qat)  +  float_weight * KL_T(original float student || qat)
                          +  self_weight  * KL_T(float path of the same weights || qat)
                          [+ margin_weight * agreement_hinge(qat, float path; margin)]

The first term is the distillation objective; the second keeps the fine-tuned model's
decisions where the shipped student had them; the third is the gate itself in differentiable
form: the INT8 model is gated on agreeing with the float graph *of the same weights*, so the
quantized forward is pulled toward the unquantized forward of the current weights (computed
without gradient; the targets in the last two terms are constants).

The written checkpoint is a plain 'student' (``folded_bn=True``) whose float weights are the
fine-tuned ones: ``edge export onnx`` and ``edge export quantize`` take it unchanged.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from export.distill import (
    DistillConfig,
    _train_targets,
    compare_on_val,
    distill_loss,
    load_teacher,
    recorded_data,
    resample_views,
    scored_val,
    student_from_checkpoint,
    teacher_val_logits,
    teacher_view,
    training_run,
)
from export.student import Student, fold_batchnorm
from train.checkpoint import CheckpointError, git_revision, load_checkpoint, save_atomic
from train.datasets.errors import DatasetError
from train.tiles import TileDataConfig

CL = torch.channels_last
ACT_QMIN, ACT_QMAX = 0, 255      # uint8 activations (ONNX Runtime QUInt8)
W_QMIN, W_QMAX = -127, 127       # symmetric int8 weights (ONNX Runtime's symmetric INT8 range)
OBSERVERS = ("ema", "minmax")


@dataclass
class QatConfig:
    """Fine-tune the student checkpoint ``student`` with fake quantization; write ``out``.

    ``teacher`` None: the teacher recorded in the student checkpoint. ``data`` None: the data
    config the student was distilled with (so that ``teacher_cache`` written by the distill run
    matches); ``data_root`` / ``max_train_frames`` / ``max_val_frames`` override parts of it.
    ``resample_prob`` None: the student's own distillation setting. ``stem_float`` /
    ``head_float``: simulate the quantize variants that keep the first convolution / the head
    in float (``-stemfp`` / ``-headfp``), so that training targets the deployed graph.
    ``margin`` > 0 adds ``margin_weight`` x :func:`agreement_hinge` to the loss.
    ``snap_weights``: the float model is the one whose quantized weights lie on their int8
    grid (see :meth:`QatStudent.to_student`); its forward is the float path of the loss, and
    the checkpoint holds those weights.
    """

    student: str = "runs/distill/student.pt"
    out: str = "runs/qat/student-qat.pt"
    teacher: str | None = None
    teacher_cache: str | None = None
    data: TileDataConfig | None = None
    data_root: str | None = None
    max_train_frames: int | None = None
    max_val_frames: int | None = None
    steps: int = 2000
    max_minutes: float | None = None
    batch_size: int = 256
    lr: float = 1e-4
    temperature: float = 2.0
    float_weight: float = 1.0
    self_weight: float = 1.0
    calib_batches: int = 16
    observer: str = "ema"
    ema_momentum: float = 0.1
    resample_prob: float | None = None
    threads: int = 2
    seed: int = 0
    eval_batch: int = 2048
    stem_float: bool = False
    head_float: bool = False
    margin: float = 0.0
    margin_weight: float = 1.0
    snap_weights: bool = False

    def __post_init__(self) -> None:
        if self.observer not in OBSERVERS:
            raise ValueError(f"observer must be one of {OBSERVERS}, got '{self.observer}'")
        if self.steps < 0 or self.calib_batches < 1 or self.batch_size < 1:
            raise ValueError("steps must be >= 0, calib_batches and batch_size >= 1")


def activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """ONNX Runtime's asymmetric uint8 (scale, zero point) for the range [lo, hi] (widened to
    hold 0; a zero-width range gets scale 1, zero point 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / (ACT_QMAX - ACT_QMIN)
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0
    scale = float(np.float32(scale))
    return scale, int(np.clip(round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX))


def agreement_hinge(q_logits: torch.Tensor, float_logits: torch.Tensor, margin: float
                    ) -> torch.Tensor:
    """Mean over the batch of ``max(0, margin - (q[y] - max_{k != y} q[k]))``, y the float
    logits' (B, K) class: zero where the quantized logits (B, K) pick the float model's class
    by at least ``margin``. The gate counts flipped decisions; a KL between two nearly flat
    distributions hardly sees them, this term pushes those tiles away from the boundary."""
    y = float_logits.argmax(1, keepdim=True)
    chosen = q_logits.gather(1, y).squeeze(1)
    rival = q_logits.scatter(1, y, float("-inf")).amax(1)
    return F.relu(margin - (chosen - rival)).mean()


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel (axis 0) symmetric int8 fake quantization of a weight (O, ...):
    ``scale_c = max|w_c| / 127``, zero point 0, straight-through gradient."""
    absmax = w.detach().abs().flatten(1).amax(1)
    scale = torch.where(absmax > 0, absmax / W_QMAX, torch.ones_like(absmax)).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, W_QMIN, W_QMAX)


class ActFakeQuant(nn.Module):
    """Per-tensor asymmetric uint8 fake quantization of an activation.

    ``mode``: 'observe' (track the range, pass the float tensor through), 'quant' (fake-quantize
    with the frozen range) or 'off' (identity)."""

    def __init__(self, name: str, observer: str = "ema", momentum: float = 0.1):
        super().__init__()
        self.name = name
        self.observer = observer
        self.momentum = momentum
        self.mode = "observe"
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("batches", torch.tensor(0))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Update the tracked range with the batch ``x``."""
        lo, hi = x.min().float(), x.max().float()
        if int(self.batches) == 0:
            self.lo.copy_(lo)
            self.hi.copy_(hi)
        elif self.observer == "minmax":
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)
        self.batches += 1

    def qparams(self) -> tuple[float, int]:
        """The (scale, zero point) of the current range."""
        return activation_qparams(self.lo.item(), self.hi.item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return x
        if self.mode == "observe":
            self.observe(x)
            return x
        scale, zero = self.qparams()
        return torch.fake_quantize_per_tensor_affine(
            x, torch.tensor([scale]), torch.tensor([zero], dtype=torch.int32),
            ACT_QMIN, ACT_QMAX)


class QuantConv2d(nn.Module):
    """A convolution whose weight is fake-quantized (per channel) when ``quant_weights``."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.quant_weights = True

    @property
    def weight(self) -> nn.Parameter:
        """The float weight (O, I, kh, kw)."""
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_quant_weight(self.conv.weight) if self.quant_weights else self.conv.weight
        return self.conv._conv_forward(x, w, self.conv.bias)


class QuantLinear(nn.Module):
    """A linear layer whose weight is fake-quantized (per output) when ``quant_weights``."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.quant_weights = True

    @property
    def weight(self) -> nn.Parameter:
        """The float weight (O, I)."""
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_quant_weight(self.linear.weight) if self.quant_weights else self.linear.weight
        return F.linear(x, w, self.linear.bias)


class QatStudent(nn.Module):
    """A BN-folded :class:`Student` rewired with fake quantizers where ONNX Runtime's QDQ
    quantization puts them (see the module docstring). The student's parameters are shared,
    not copied: :meth:`to_student` returns a plain folded student with their current values."""

    def __init__(self, folded: Student, observer: str = "ema", momentum: float = 0.1,
                 stem_float: bool = False, head_float: bool = False,
                 snap_weights: bool = False):
        super().__init__()
        self.snap_weights = snap_weights
        if not folded.config.folded_bn:
            raise ValueError("QatStudent needs a BN-folded student (fold_batchnorm)")
        self.config = folded.config
        self.num_classes = folded.head.out_features
        self._params = dict(folded.named_parameters())  # names of the plain student
        net = folded

        def fq(name: str) -> ActFakeQuant:
            return ActFakeQuant(name, observer, momentum)

        # stem_float / head_float: the first convolution (with its input) / the head (with
        # the logits) stay float, as in the quantize variants ``-stemfp`` / ``-headfp``.
        stem = (nn.Sequential(net.stem[0]) if stem_float
                else nn.Sequential(fq("input"), QuantConv2d(net.stem[0])))
        net.stem = nn.Sequential(*stem, nn.ReLU(), fq("stem"))
        for i, block in enumerate(net.stages):
            block.conv1 = QuantConv2d(block.conv1)
            block.bn1 = nn.Sequential(nn.ReLU(), fq(f"stages.{i}.conv1"))  # the block's own
            block.conv2 = QuantConv2d(block.conv2)                        # ReLU is then a no-op
            block.bn2 = fq(f"stages.{i}.conv2")                           # signed Add input
            if isinstance(block.skip, nn.Sequential):
                block.skip = nn.Sequential(QuantConv2d(block.skip[0]), fq(f"stages.{i}.skip"))
            net.stages[i] = nn.Sequential(block, fq(f"stages.{i}.out"))
        net.pool = nn.Sequential(net.pool, fq("pool"))
        net.head = (nn.Sequential(net.head) if head_float
                    else nn.Sequential(QuantLinear(net.head), fq("logits")))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tiles (B, C, S, S) -> logits (B, K), quantized as the current mode says."""
        return self.net(x)

    def quantizers(self) -> list[ActFakeQuant]:
        """The activation quantizers, in forward order."""
        return [m for m in self.modules() if isinstance(m, ActFakeQuant)]

    def set_mode(self, mode: str) -> None:
        """'observe' (float forward, ranges tracked), 'quant' (fake quantization with the
        frozen ranges, weights included) or 'off' (the plain float network)."""
        for m in self.quantizers():
            m.mode = mode
        for layer in self.quantized_layers():
            layer.quant_weights = mode == "quant"

    @contextlib.contextmanager
    def float_mode(self) -> Iterator[None]:
        """Temporarily the float network that gets exported (same weights; snapped to their
        int8 grid with ``snap_weights``, activations float), then back to the prior mode."""
        saved = [(m, m.mode) for m in self.quantizers()]
        saved_w = [(m, m.quant_weights) for m in self.quantized_layers()]
        self.set_mode("off")
        for m, _ in saved_w:
            m.quant_weights = self.snap_weights
        try:
            yield
        finally:
            for m, mode in saved:
                m.mode = mode
            for m, flag in saved_w:
                m.quant_weights = flag

    def ranges(self) -> dict[str, list[float]]:
        """Frozen activation ranges, per quantized tensor: [lo, hi, scale, zero point]."""
        return {m.name: [round(m.lo.item(), 6), round(m.hi.item(), 6), *m.qparams()]
                for m in self.quantizers()}

    @torch.no_grad()
    def to_student(self) -> Student:
        """A plain folded :class:`Student` (eval mode) with the current float weights; with
        ``snap_weights``, each quantized layer's weight is replaced by its int8 grid value
        (:func:`fake_quant_weight`), so that ONNX Runtime's per-channel weight quantization
        of the exported model reproduces it and INT8 differs from it by activation rounding
        only."""
        state = {k: v.detach().clone().contiguous() for k, v in self._params.items()}
        if self.snap_weights:
            for layer in self.quantized_layers():
                name = next(k for k, v in self._params.items() if v is layer.weight)
                state[name] = fake_quant_weight(layer.weight.detach()).contiguous()
        plain = Student(self.config, self.num_classes)
        plain.load_state_dict(state)
        return plain.eval()

    def quantized_layers(self) -> list[QuantConv2d | QuantLinear]:
        """The layers whose weights are quantized (not the float stem or head)."""
        return [m for m in self.modules() if isinstance(m, (QuantConv2d, QuantLinear))]


@torch.no_grad()
def _logits(model: nn.Module, tiles: np.ndarray, batch: int) -> np.ndarray:
    model.eval()
    return np.concatenate([model(torch.from_numpy(tiles[i:i + batch])
                                 .contiguous(memory_format=CL)).numpy()
                           for i in range(0, len(tiles), batch)])


def _data_config(cfg: QatConfig, ckpt: dict[str, Any]) -> TileDataConfig:
    """The data config QAT reads: ``cfg.data``, else the one the student was distilled with,
    with ``cfg``'s folder and frame limits replacing theirs where given."""
    data = cfg.data if cfg.data is not None else recorded_data(ckpt, cfg.student)
    changes = {"root": cfg.data_root, "max_train_frames": cfg.max_train_frames,
               "max_val_frames": cfg.max_val_frames}
    return replace(data, **{k: v for k, v in changes.items() if v is not None})


def qat(cfg: QatConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune ``cfg.student`` with fake quantization, evaluate on the scored val tiles and
    write ``cfg.out`` (a 'student' checkpoint, BN folded, float weights = the fine-tuned ones);
    returns the metrics. Bad inputs raise CheckpointError / DatasetError naming the file."""
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    ckpt = load_checkpoint(cfg.student, "student")
    original = student_from_checkpoint(ckpt, cfg.student)
    classes = list(ckpt.get("classes", []))
    teacher_path = cfg.teacher or ckpt.get("teacher_checkpoint")
    if not teacher_path:
        raise CheckpointError(f"{cfg.student}: no teacher recorded; give one")
    teacher, tckpt = load_teacher(teacher_path)
    if list(tckpt["classes"]) != classes:
        raise CheckpointError(f"{teacher_path}: teacher classes {list(tckpt['classes'])} are not "
                              f"the student's {classes} ({cfg.student})")
    data = _data_config(cfg, ckpt)
    teacher_data = teacher_view(data, tckpt, str(teacher_path))
    dcfg = DistillConfig(teacher=str(teacher_path), data=data, teacher_cache=cfg.teacher_cache)
    tiles, t_logits, _ = _train_targets(dcfg, teacher, teacher_data, log)
    if not len(tiles):
        raise DatasetError(f"{data.root}: no train tiles")
    resample = (cfg.resample_prob if cfg.resample_prob is not None
                else float(ckpt.get("distill_config", {}).get("resample_prob", 0.0)))

    original = original.to(memory_format=CL).eval()
    folded = fold_batchnorm(original)
    with torch.no_grad():
        probe = torch.from_numpy(tiles[:256]).contiguous(memory_format=CL)
        fold_err = float((folded.to(memory_format=CL)(probe) - original(probe)).abs().max())
    log(f"batch norm folded: max |logit difference| {fold_err:.2e} on {len(probe)} tiles")
    model = QatStudent(folded.to(memory_format=CL), cfg.observer, cfg.ema_momentum,
                       cfg.stem_float, cfg.head_float, cfg.snap_weights)

    n, bs = len(tiles), cfg.batch_size
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all, tl_all = torch.from_numpy(tiles), torch.from_numpy(t_logits)

    def batches() -> Iterator[torch.Tensor]:
        while True:
            order = torch.from_numpy(rng.permutation(n))
            for b in range(max(1, n // bs)):
                yield order[b * bs:(b + 1) * bs]

    stream = batches()
    # 1. calibration: the float network, ranges observed, no weight update.
    model.set_mode("observe")
    model.eval()
    with torch.no_grad():
        for _ in range(cfg.calib_batches):
            model(x_all[next(stream)].contiguous(memory_format=CL))
    model.set_mode("quant")
    ranges = model.ranges()
    log(f"activation ranges from {cfg.calib_batches} x {bs} tiles ({cfg.observer}), frozen: "
        + ", ".join(f"{k} [{v[0]:.3g}, {v[1]:.3g}]" for k, v in ranges.items()))

    # 2. fine-tuning with fake quantization.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=0.0)
    budget = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    t_train = time.perf_counter()
    step, stopped, running, first_loss = 0, "steps", float("nan"), float("nan")
    model.train()
    while step < cfg.steps:
        elapsed = time.perf_counter() - t_train
        progress = max(step / cfg.steps, elapsed / budget)
        if progress >= 1:
            stopped = "time budget"
            break
        for g in opt.param_groups:  # cosine decay over steps or time, whichever ends first
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
        idx = next(stream)
        x = resample_views(x_all[idx], resample, gen).contiguous(memory_format=CL)
        q_logits = model(x)
        loss = distill_loss(q_logits, tl_all[idx], cfg.temperature)
        if cfg.float_weight:
            with torch.no_grad():
                ref = original(x)
            loss = loss + cfg.float_weight * distill_loss(q_logits, ref, cfg.temperature)
        if cfg.self_weight or cfg.margin:
            with torch.no_grad(), model.float_mode():
                own = model(x)
            if cfg.self_weight:
                loss = loss + cfg.self_weight * distill_loss(q_logits, own, cfg.temperature)
            if cfg.margin:
                loss = loss + cfg.margin_weight * agreement_hinge(q_logits, own, cfg.margin)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"QAT loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        if step == 0:
            first_loss = running = value
        running = 0.98 * running + 0.02 * value
        step += 1
        if step % 100 == 0:
            rate = step * bs / (time.perf_counter() - t_train)
            log(f"step {step} loss {running:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{rate:.0f} tiles/s")
    train_s = time.perf_counter() - t_train
    log(f"QAT: {step} steps ({step * bs / n:.2f} epochs) in {train_s:.0f} s, stopped by {stopped}")

    # 3. evaluation: float (what gets exported) and simulated INT8, on the scored val tiles.
    student = model.to_student()
    metrics = evaluate_qat(model, student, original, teacher, data, classes, cfg.eval_batch,
                           teacher_data, dcfg)
    metrics |= {"steps": step, "epochs_seen": round(step * bs / n, 3), "train_tiles": int(n),
                "train_seconds": round(train_s, 1), "stopped_by": stopped,
                "loss_first": first_loss, "loss_last": running,
                "bn_fold_max_abs_diff": fold_err}
    save_atomic({
        "kind": "student",
        "student_config": student.config.to_dict(),
        "state_dict": student.state_dict(),
        "classes": classes,
        "input": ckpt["input"],
        "tiling": ckpt["tiling"],
        "teacher_checkpoint": str(teacher_path),
        "teacher_metrics": tckpt.get("metrics"),
        "distill_config": ckpt.get("distill_config"),
        "qat_config": asdict(cfg) | {"data": asdict(data)},
        "qat_source_student": str(cfg.student),
        "qat_activation_ranges": ranges,
        "metrics": metrics,
        "training_runs": {**(ckpt.get("training_runs") or {}), "qat": training_run(metrics)},
        "git_revision": git_revision(),
    }, cfg.out)
    log(json.dumps({k: metrics[k] for k in ("agreement", "simulated_int8_agreement",
                                             "agreement_with_source_student")}
                   | {"accuracy": metrics["student"]["accuracy"]})
        + f" in {time.perf_counter() - t_start:.0f} s")
    return metrics


def evaluate_qat(model: QatStudent, student: Student, original: Student, teacher: nn.Module,
                 data: TileDataConfig, classes: list[str], batch: int = 2048,
                 teacher_data: TileDataConfig | None = None,
                 distill_cfg: DistillConfig | None = None) -> dict[str, Any]:
    """The fine-tuned float student vs the teacher on the scored val tiles
    (:func:`export.distill.compare_on_val`), plus: ``simulated_int8_agreement`` (fake-quantized
    vs float predictions of the fine-tuned weights: an estimate of the INT8 gate's agreement,
    with the training-time ranges instead of the export calibration's),
    ``simulated_int8_accuracy`` and ``agreement_with_source_student``. The teacher sees the
    tiles at ``teacher_data``'s size, its answers read from ``distill_cfg``'s teacher cache
    when that holds them."""
    tiles, labels, frames = scored_val(data)
    t_pred = teacher_val_logits(teacher, tiles, labels, data, teacher_data,
                                distill_cfg).argmax(1)
    s_pred = _logits(student, tiles, batch).argmax(1)
    o_pred = _logits(original, tiles, batch).argmax(1)
    model.set_mode("quant")
    q_pred = _logits(model, tiles, batch).argmax(1)
    m = compare_on_val(t_pred, s_pred, labels, classes)
    return m | {
        "split": "validation (clock-ordered, latest 20% of frames), scored tiles",
        "val_frames": frames,
        "simulated_int8_agreement": float((q_pred == s_pred).mean()),
        "simulated_int8_accuracy": float((q_pred == labels).mean()),
        "agreement_with_source_student": float((s_pred == o_pred).mean()),
        "source_student_accuracy": float((o_pred == labels).mean()),
    }


def summary(metrics: dict[str, Any]) -> str:
    """One line about a QAT run's metrics (for the CLI)."""
    m = metrics
    return (f"accuracy {m['student']['accuracy']:.4f} (teacher {m['teacher']['accuracy']:.4f}, "
            f"source student {m['source_student_accuracy']:.4f}), agreement with the source "
            f"student {m['agreement_with_source_student']:.4f}, simulated INT8 agreement "
            f"{m['simulated_int8_agreement']:.4f}")
