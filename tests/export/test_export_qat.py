"""Quantization-aware fine-tuning: BN folding, the fake quantizers' grids, a short QAT run that
exports through the existing student path, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge.bundle import load_bundle
from export.qat import (
    ActFakeQuant,
    QatConfig,
    QatStudent,
    activation_qparams,
    fake_quant_weight,
    qat,
)
from export.student import Student, StudentConfig, conv_bn_sites, fold_batchnorm
from export.student_export import export_student_bundle
from toolkit_cli.main import main
from train.checkpoint import CheckpointError, load_checkpoint


def _student_with_random_bn(seed: int = 0) -> Student:
    torch.manual_seed(seed)
    model = Student(StudentConfig(widths=(8, 8, 16)), 4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return model.eval()


def test_batchnorm_folding_is_exact():
    model = _student_with_random_bn()
    folded = fold_batchnorm(model)
    x = torch.randn(16, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
        for (conv, parent, name), (fconv, fparent, fname) in zip(
                conv_bn_sites(model), conv_bn_sites(folded), strict=True):
            inp = torch.randn(4, conv.in_channels, 8, 8)
            ref = getattr(parent, name)(conv(inp))
            assert isinstance(getattr(fparent, fname), nn.Identity)
            assert torch.allclose(fconv(inp), ref, atol=1e-5)
    state = folded.state_dict()
    assert not any("bn" in k or "running" in k for k in state)
    assert folded.config.folded_bn
    # the folded layout round-trips through its config (what a checkpoint records)
    again = Student(StudentConfig.from_dict(folded.config.to_dict()), 4)
    again.load_state_dict(state)
    assert StudentConfig.from_dict(StudentConfig().to_dict()).folded_bn is False


def test_activation_fake_quant_is_on_the_uint8_grid():
    fq = ActFakeQuant("t", observer="minmax")
    x = torch.linspace(-1.3, 2.9, 1000)
    fq(x)                      # observe: the float tensor passes unchanged
    fq(x * 0.5)
    fq.mode = "quant"
    scale, zero = fq.qparams()
    assert (fq.lo.item(), fq.hi.item()) == pytest.approx((-1.3, 2.9))
    assert scale == pytest.approx(4.2 / 255) and zero == round(1.3 / scale)
    y = fq(torch.cat([x, torch.tensor([-5.0, 7.0, 0.0])]))
    q = y / scale + zero
    assert torch.allclose(q, q.round(), atol=1e-3)             # multiples of the scale
    assert q.min().round() >= 0 and q.max().round() <= 255     # uint8 range (clipped ends)
    assert y[-1].item() == 0.0                                  # zero is exact
    assert y[-3].item() == pytest.approx(-zero * scale) and y[-2].item() == pytest.approx(
        (255 - zero) * scale)
    # same (scale, zero point) as ONNX Runtime's own computation
    from onnxruntime.quantization.quant_utils import compute_scale_zp
    zp, s = compute_scale_zp(np.float32(-1.3), np.float32(2.9), np.uint8(0), np.uint8(255))
    assert (int(zp), float(s)) == (zero, pytest.approx(scale))
    assert activation_qparams(0.5, 3.0)[1] == 0                 # post-ReLU: zero point 0
    # EMA observer: moves a share of the way toward each new batch's range
    ema = ActFakeQuant("e", observer="ema", momentum=0.25)
    ema(torch.tensor([0.0, 4.0]))
    ema(torch.tensor([0.0, 8.0]))
    assert ema.hi.item() == pytest.approx(5.0)


def test_weight_fake_quant_is_per_channel_symmetric_int8():
    w = torch.randn(6, 3, 3, 3) * torch.tensor([0.01, 0.1, 1, 3, 10, 0.5]).view(-1, 1, 1, 1)
    y = fake_quant_weight(w)
    scale = w.abs().flatten(1).amax(1) / 127
    q = y / scale.view(-1, 1, 1, 1)
    assert torch.allclose(q, q.round(), atol=1e-3)
    assert q.abs().max() <= 127 + 1e-3
    assert torch.allclose(y.abs().flatten(1).amax(1), w.abs().flatten(1).amax(1))
    assert ((y - w).abs() <= scale.view(-1, 1, 1, 1) / 2 + 1e-7).all()
    w.requires_grad_(True)
    fake_quant_weight(w).sum().backward()        # straight-through: gradient 1 in range
    assert torch.equal(w.grad, torch.ones_like(w))


def test_qat_student_quantizes_and_shares_weights():
    folded = fold_batchnorm(_student_with_random_bn(1))
    ref = fold_batchnorm(folded)
    model = QatStudent(folded)
    x = torch.randn(32, 1, 32, 32)
    model.set_mode("observe")
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)     # observing = float forward
        model.set_mode("quant")
        yq = model(x)
        with model.float_mode():
            assert torch.allclose(model(x), ref(x), atol=1e-5)
        assert torch.equal(model(x), yq)                        # back to quantized
    assert 0 < (yq - ref(x)).abs().max() < 0.5
    names = [m.name for m in model.quantizers()]
    assert names[0] == "input" and names[-1] == "logits" and "stages.1.skip" in names
    with torch.no_grad():
        model.net.head[0].linear.bias.add_(1.0)
    assert torch.allclose(model.to_student().head.bias, ref.head.bias + 1.0)


def _ort_qparams(path) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of each QuantizeLinear of an ONNX Runtime Q/DQ student, by the name
    of the QatStudent quantizer on the same tensor."""
    import onnx
    from onnx import numpy_helper

    q = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in q.initializer}

    def our_name(tensor: str) -> str:
        fixed = {"tiles": "input", "/stem/stem.2/Relu_output_0": "stem",
                 "/pool/GlobalAveragePool_output_0": "pool",
                 "logits_QuantizeLinear_Input": "logits"}
        if tensor in fixed:
            return fixed[tensor]
        stage, what = tensor.split("/")[2], tensor.split("/")[3]
        return f"{stage}." + {"relu": "conv1", "conv2": "conv2", "skip": "skip",
                              "relu_1": "out"}[what]

    return {our_name(n.input[0]): (float(inits[n.input[1]]), int(inits[n.input[2]]))
            for n in q.node
            if n.op_type == "QuantizeLinear" and not n.input[0].startswith("/Flatten")}


def test_simulation_reproduces_onnx_runtime_qdq(tmp_path):
    """With the MinMax observer on the same calibration tiles, the quantizers get ONNX Runtime's
    own (scale, zero point) on the same tensors, and the logits agree to one logit step."""
    import logging

    import onnxruntime as ort

    from export.onnx_export import to_onnx_bytes
    from export.quantize import QuantVariant, quantize_model

    logging.getLogger().setLevel(logging.ERROR)
    folded = fold_batchnorm(_student_with_random_bn(2))
    (tmp_path / "f.onnx").write_bytes(to_onnx_bytes(folded, torch.zeros(1, 1, 32, 32), 17))
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(256, 1, 32, 32)).astype(np.float32)
    test = rng.normal(size=(256, 1, 32, 32)).astype(np.float32)
    quantize_model(tmp_path / "f.onnx", tmp_path / "q.onnx",
                   QuantVariant("qdq", "u8", True, "minmax"), calib, "tiles")
    model = QatStudent(fold_batchnorm(folded), observer="minmax")
    model.set_mode("observe")
    with torch.no_grad():
        for i in range(0, len(calib), 64):
            model(torch.from_numpy(calib[i:i + 64]))
        model.set_mode("quant")
        sim = model(torch.from_numpy(test)).numpy()
    theirs = _ort_qparams(tmp_path / "q.onnx")
    ours = model.ranges()
    assert set(ours) == set(theirs)
    for name, (s_ort, z_ort) in theirs.items():
        assert ours[name][3] == z_ort and ours[name][2] == pytest.approx(s_ort, rel=1e-5), name
    step = model.ranges()["logits"][2]
    for level, max_steps, same in ((ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 1.01, 0.9),
                                   (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 2.01, 0.6)):
        # unoptimized: the Q/DQ graph's own arithmetic (only int32 biases and summation order
        # differ); optimized: ONNX Runtime's fused integer kernels round a little differently
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        sess = ort.InferenceSession(str(tmp_path / "q.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
        diff = np.abs(sim - sess.run(None, {"tiles": test})[0]) / step
        assert diff.max() <= max_steps and (diff < 0.5).mean() >= same, (level, diff.max())


def test_a_short_qat_run_exports_and_matches_onnx(student, ai4mars_dir, tmp_path):
    out = tmp_path / "qat.pt"
    metrics = qat(QatConfig(student=str(student["checkpoint"]), out=str(out), steps=8,
                            batch_size=32, calib_batches=2, lr=1e-3, threads=1),
                  log=lambda *_: None)
    assert metrics["steps"] == 8
    assert np.isfinite(metrics["loss_first"]) and np.isfinite(metrics["loss_last"])
    assert metrics["loss_last"] < metrics["loss_first"] * 1.5
    assert 0 <= metrics["simulated_int8_agreement"] <= 1
    assert metrics["bn_fold_max_abs_diff"] < 1e-4
    ckpt = load_checkpoint(out, "student")
    assert ckpt["student_config"]["folded_bn"] is True
    assert not any("bn" in k for k in ckpt["state_dict"])
    assert set(ckpt["qat_activation_ranges"]) >= {"input", "stem", "logits"}
    source = load_checkpoint(student["checkpoint"], "student")
    assert ckpt["distill_config"] == source["distill_config"]
    assert ckpt["training_runs"]["distill"] == source["training_runs"]["distill"]
    assert ckpt["training_runs"]["qat"]["steps"] == 8
    assert ckpt["training_runs"]["qat"]["stopped_by"] == "steps"
    assert not torch.equal(ckpt["state_dict"]["head.weight"], source["state_dict"]["head.weight"])
    bundle = export_student_bundle(out, tmp_path / "b", None)
    prov = load_bundle(bundle.path).manifest.provenance
    assert prov["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert prov["training_runs"] == ckpt["training_runs"]
    # the exported float graph has no batch norm, and ONNX Runtime reproduces torch
    import onnx
    import onnxruntime as ort

    from export.distill import student_from_checkpoint

    graph = onnx.load(str(bundle.path / "model.onnx")).graph
    assert "BatchNormalization" not in {n.op_type for n in graph.node}
    x = np.random.default_rng(0).normal(size=(16, 1, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(bundle.path / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = student_from_checkpoint(ckpt)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_qat_command_writes_checkpoint_and_bundle(student, tmp_path, capsys):
    out, bundle = tmp_path / "s.pt", tmp_path / "b"
    code = main(["export", "qat", "--student", str(student["checkpoint"]), "--out", str(out),
                 "--bundle", str(bundle), "--steps", "3", "--batch-size", "32",
                 "--calib-batches", "1", "--threads", "1", "--observer", "minmax"])
    assert code == 0, capsys.readouterr().err
    assert "simulated INT8 agreement" in capsys.readouterr().out
    assert load_checkpoint(out, "student")["qat_config"]["observer"] == "minmax"
    assert load_bundle(bundle).manifest.precision == "fp32"


def test_bad_student_exits_1(trained, tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    code = main(["export", "qat", "--student", str(missing), "--out", str(tmp_path / "o.pt")])
    err = capsys.readouterr().err
    assert code == 1 and str(missing) in err and "no such checkpoint" in err
    code = main(["export", "qat", "--student", str(trained["probe"]),
                 "--out", str(tmp_path / "o.pt")])
    err = capsys.readouterr().err
    assert code == 1 and str(trained["probe"]) in err and "'student'" in err
    assert not (tmp_path / "o.pt").exists()


def test_stem_and_head_float_simulate_the_stemfp_headfp_variant(tmp_path):
    """--stem-float --head-float: the quantizers are exactly those ONNX Runtime keeps in the
    ``-stemfp-headfp`` variant (no input and no logits quantizer), with its (scale, zero
    point), and the head's weights are float."""
    import logging

    from export.onnx_export import to_onnx_bytes
    from export.qat import QuantLinear
    from export.quantize import QuantVariant, quantize_model

    logging.getLogger().setLevel(logging.ERROR)
    folded = fold_batchnorm(_student_with_random_bn(3))
    (tmp_path / "f.onnx").write_bytes(to_onnx_bytes(folded, torch.zeros(1, 1, 32, 32), 17))
    calib = np.random.default_rng(1).normal(size=(256, 1, 32, 32)).astype(np.float32)
    quantize_model(tmp_path / "f.onnx", tmp_path / "q.onnx", QuantVariant(
        "qdq", "u8", True, "minmax", stem_float=True, head_float=True), calib, "tiles")
    model = QatStudent(fold_batchnorm(folded), observer="minmax", stem_float=True,
                       head_float=True)
    model.set_mode("observe")
    with torch.no_grad():
        for i in range(0, len(calib), 64):
            model(torch.from_numpy(calib[i:i + 64]))
    theirs, ours = _ort_qparams(tmp_path / "q.onnx"), model.ranges()
    assert set(ours) == set(theirs) and not {"input", "logits"} & set(ours)
    for name, (s_ort, z_ort) in theirs.items():
        assert ours[name][3] == z_ort and ours[name][2] == pytest.approx(s_ort, rel=1e-5), name
    assert not any(isinstance(m, QuantLinear) for m in model.modules())
    assert isinstance(model.net.stem[0], torch.nn.Conv2d)


def test_agreement_hinge_counts_what_the_gate_counts():
    from export.qat import agreement_hinge

    float_logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    q = torch.tensor([[2.0, 0.0, 1.5],    # keeps class 0 by 0.5: hinge 1 - 0.5
                      [0.0, 1.0, 2.0]])   # flipped to class 2, by 1.0: hinge 1 + 1
    assert agreement_hinge(q, float_logits, 1.0).item() == pytest.approx((0.5 + 2.0) / 2)
    assert agreement_hinge(q, float_logits, 0.0).item() == pytest.approx(0.5)  # the flip only
    q.requires_grad_(True)
    agreement_hinge(q, float_logits, 1.0).backward()
    assert q.grad.tolist() == [[-0.5, 0.0, 0.5], [0.0, -0.5, 0.5]]  # own class up, rival down



def test_snapped_weights_are_what_onnx_runtime_quantizes_them_to(tmp_path):
    """--snap-weights: the written student's quantized layers hold their int8 grid values (the
    float stem and head are untouched), its forward is the training loss's float path, and
    ONNX Runtime's per-channel weight quantization of the exported model reproduces every
    weight, so INT8 differs from this float model by activation rounding only."""
    import logging

    import onnx
    from onnx import numpy_helper

    from export.onnx_export import to_onnx_bytes
    from export.quantize import QuantVariant, quantize_model

    logging.getLogger().setLevel(logging.ERROR)
    folded = fold_batchnorm(_student_with_random_bn(4))
    raw = {k: v.detach().clone() for k, v in folded.state_dict().items()}
    model = QatStudent(folded, stem_float=True, head_float=True, snap_weights=True)
    model.set_mode("quant")
    snapped = model.to_student()
    x = torch.randn(16, 1, 32, 32)
    with torch.no_grad(), model.float_mode():
        assert torch.allclose(model(x), snapped(x), atol=1e-5)
    state = snapped.state_dict()
    moved = 0
    for name, w in state.items():
        if name in ("stem.0.weight", "head.weight") or not name.endswith("weight"):
            assert torch.equal(w, raw[name]), name            # float layers and biases
            continue
        scale = w.abs().flatten(1).amax(1) / 127
        steps = w / scale.view(-1, *([1] * (w.dim() - 1)))
        assert torch.allclose(steps, steps.round(), atol=1e-4), name
        assert steps.abs().flatten(1).amax(1).round().eq(127).all(), name
        moved += int(not torch.equal(w, raw[name]))
    assert moved == 8                                          # the snap did change them
    (tmp_path / "f.onnx").write_bytes(to_onnx_bytes(snapped, torch.zeros(1, 1, 32, 32), 17))
    quantize_model(tmp_path / "f.onnx", tmp_path / "q.onnx", QuantVariant(
        "qdq", "u8", True, "minmax", stem_float=True, head_float=True),
        np.random.default_rng(2).normal(size=(128, 1, 32, 32)).astype(np.float32), "tiles")
    q = onnx.load(str(tmp_path / "q.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in q.initializer}
    checked = 0
    for node in q.node:
        value = inits.get(node.input[0])
        if node.op_type != "DequantizeLinear" or value is None or value.dtype != np.int8:
            continue
        name = node.input[0].removesuffix("_quantized")
        scale = inits[node.input[1]].reshape(-1, *([1] * (value.ndim - 1)))
        np.testing.assert_allclose(value * scale, state[name].numpy(), rtol=1e-6, atol=1e-7)
        checked += 1
    assert checked == 8   # every quantized convolution: 3 stages x 2, plus 2 skips


def test_qat_reads_the_teachers_answers_from_a_logit_only_cache(student, trained, ai4mars_dir,
                                                                tmp_path, monkeypatch):
    """With a cache from ``edge export teacher-cache --no-features`` for the student's tiles,
    QAT trains and scores against the teacher without running it."""
    import export.distill as ed
    from toolkit_cli.main import main

    cache = tmp_path / "teacher.npz"
    assert main(["export", "teacher-cache", "--teacher", str(trained["probe"]), "--out",
                 str(cache), "--data", str(ai4mars_dir), "--max-train-frames", "4",
                 "--device", "cpu", "--no-features"]) == 0

    def no_teacher(*a, **k):
        raise AssertionError("the teacher ran although its cache holds its answers")

    monkeypatch.setattr(ed, "teacher_outputs", no_teacher)
    metrics = qat(QatConfig(student=str(student["checkpoint"]), out=str(tmp_path / "q.pt"),
                            steps=4, batch_size=32, calib_batches=2, threads=1,
                            teacher_cache=str(cache)), log=lambda *_: None)
    with np.load(cache) as z:
        t_acc = float((z["val_logits"].argmax(1) == z["val_labels"]).mean())
    assert metrics["teacher"]["accuracy"] == pytest.approx(t_acc)


def test_data_overrides_replace_the_recorded_config():
    # TileDataConfig is frozen: the overrides make a new config instead of assigning fields
    from export.qat import _data_config

    ckpt = {"distill_config": {"data": {"root": "/recorded", "max_train_frames": 300}}}
    data = _data_config(QatConfig(data_root="/elsewhere", max_val_frames=7), ckpt)
    assert (data.root, data.max_train_frames, data.max_val_frames) == ("/elsewhere", 300, 7)
    assert _data_config(QatConfig(), ckpt).root == "/recorded"
    with pytest.raises(CheckpointError, match="no usable data config"):
        _data_config(QatConfig(student="s.pt"), {})
