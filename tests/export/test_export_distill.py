"""Distillation: the loss, the student-vs-teacher comparison and the student checkpoint."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from edge.bundle import load_bundle
from export.distill import (
    compare_on_val,
    distill_loss,
    load_teacher,
    student_from_checkpoint,
    teacher_outputs,
)
from export.student_export import export_student_bundle
from toolkit_cli.main import main
from train.checkpoint import CheckpointError, load_checkpoint, save_atomic
from train.datasets.ai4mars import CLASSES
from train.tiles import TileDataConfig, load_split_tiles


def test_loss_is_zero_on_equal_logits_and_matches_kl():
    t = torch.randn(5, 4)
    assert distill_loss(t, t, 2.0).item() == pytest.approx(0, abs=1e-6)
    s = torch.randn(5, 4)
    p = torch.softmax(t / 2, 1)
    ref = (p * (torch.log(p) - torch.log_softmax(s / 2, 1))).sum(1).mean() * 4
    assert distill_loss(s, t, 2.0).item() == pytest.approx(ref.item(), rel=1e-5)
    f = torch.randn(5, 8)
    assert distill_loss(t, t, 2.0, f, f, 1.0).item() == pytest.approx(0, abs=1e-5)
    assert distill_loss(t, t, 2.0, f, -f, 1.0).item() == pytest.approx(2.0, abs=1e-5)


def test_hard_term_is_cross_entropy_on_the_teachers_argmax():
    t = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.1, 0.0, 0.0]])
    s = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    # hand-computed: -log softmax(s)[argmax t] per row
    row0 = -(0.0 - np.log(3 + np.e))
    row1 = -(0.0 - np.log(3 + np.e ** 3))
    kl = distill_loss(s, t, 2.0).item()
    both = distill_loss(s, t, 2.0, hard_weight=0.5).item()
    assert both - kl == pytest.approx(0.5 * (row0 + row1) / 2, rel=1e-5)
    # equal logits: the KL term vanishes, the hard term does not (the teacher is not one-hot)
    assert distill_loss(t, t, 2.0, hard_weight=1.0).item() > 0.1


def test_compare_on_val_counts_agreement():
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    teacher = np.array([0, 1, 2, 3, 1, 1, 2, 0])   # 6/8 right
    student = np.array([0, 1, 2, 0, 1, 2, 2, 0])   # 4/8 right; agrees on 6 of 8
    m = compare_on_val(teacher, student, labels, CLASSES)
    assert m["agreement"] == pytest.approx(6 / 8)
    assert m["teacher"]["accuracy"] == pytest.approx(6 / 8)
    assert m["student"]["accuracy"] == pytest.approx(4 / 8)
    assert m["accuracy_kept"] == pytest.approx(4 / 6)


def test_teacher_batch_defaults_to_small_batches_on_a_cpu(trained, ai4mars_dir):
    from export.distill import CPU_TEACHER_BATCH, GPU_TEACHER_BATCH, teacher_batch

    assert teacher_batch("cpu") == CPU_TEACHER_BATCH < GPU_TEACHER_BATCH
    assert teacher_batch("cuda") == teacher_batch(torch.device("cuda", 0)) == GPU_TEACHER_BATCH
    # the batch changes only how many tiles go through at once, not the answers
    teacher, _ = load_teacher(trained["probe"])
    val = load_split_tiles(TileDataConfig(root=str(ai4mars_dir)), "val").scored()
    whole = teacher_outputs(teacher, val.tiles, batch=len(val.tiles))
    for part, one in zip(teacher_outputs(teacher, val.tiles, batch=3), whole, strict=True):
        np.testing.assert_allclose(part, one, rtol=1e-5, atol=1e-5)


def test_student_checkpoint_records_a_correct_agreement(student, trained, ai4mars_dir):
    ckpt = load_checkpoint(student["checkpoint"], "student")
    assert ckpt["teacher_checkpoint"] == str(trained["probe"])
    model = student_from_checkpoint(ckpt)
    teacher, _ = load_teacher(trained["probe"])
    val = load_split_tiles(TileDataConfig(root=str(ai4mars_dir)), "val").scored()
    t_pred = teacher_outputs(teacher, val.tiles)[0].argmax(1)
    with torch.no_grad():
        s_pred = model(torch.from_numpy(val.tiles)).argmax(1).numpy()
    m = ckpt["metrics"]
    assert m["agreement"] == pytest.approx(float((t_pred == s_pred).mean()))
    assert m["student"]["tiles"] == len(val.labels)
    assert m["steps"] > 0


def test_the_run_that_made_the_student_is_recorded_in_checkpoint_and_bundle(student):
    ckpt = load_checkpoint(student["checkpoint"], "student")
    run = ckpt["training_runs"]["distill"]
    m = ckpt["metrics"]
    assert run == {"steps": m["steps"], "epochs_seen": m["epochs_seen"],
                   "train_tiles": m["train_tiles"], "train_seconds": m["train_seconds"],
                   "stopped_by": "epochs"}   # the fixture sets one epoch and no time budget
    assert run["epochs_seen"] == pytest.approx(run["steps"] * 32 / run["train_tiles"], abs=1e-3)
    prov = load_bundle(student["bundle"]).manifest.provenance
    assert prov["training_runs"] == {"distill": run}


def test_student_bundle_records_size_and_metrics(student):
    bundle = load_bundle(student["bundle"])
    prov = bundle.manifest.provenance
    assert prov["student"]["parameters"] > 0 and prov["student"]["mflops_per_tile"] > 0
    assert prov["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert "agreement_with_teacher" in bundle.manifest.metrics
    assert prov["distill_config"]["widths"] == [8, 8, 8]


def test_student_bundle_records_its_teachers_lineage(student, trained, tmp_path):
    from export.student_export import teacher_lineage

    lineage = load_bundle(student["bundle"]).manifest.provenance["teacher_lineage"]
    teacher = load_checkpoint(trained["probe"], "probe")
    assert lineage["checkpoint"] == str(trained["probe"])
    assert lineage["pretrain_config"]["seed"] == teacher["pretrain_config"]["seed"]
    assert lineage["probe_config"] == teacher["probe_config"]
    assert lineage["data_digests"]["ai4mars"]["files"] > 0
    assert teacher_lineage(tmp_path / "gone.pt") == {"checkpoint": str(tmp_path / "gone.pt"),
                                                     "missing": True}


def test_wrong_architecture_checkpoint_is_refused(student, tmp_path, capsys):
    ckpt = load_checkpoint(student["checkpoint"], "student")
    ckpt["student_config"]["widths"] = [8, 16, 16]  # weights are for (8, 8, 8)
    bad = save_atomic(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt.*do not fit"):
        export_student_bundle(bad, tmp_path / "b", None)
    assert not (tmp_path / "b").exists()
    code = main(["export", "onnx", "--checkpoint", str(bad), "--out", str(tmp_path / "b"),
                 "--check-frames", "0"])
    assert code == 1 and str(bad) in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_teacher_of_the_wrong_kind_is_refused(student, tmp_path, capsys):
    code = main(["export", "distill", "--teacher", str(student["checkpoint"]),
                 "--out", str(tmp_path / "s.pt")])
    err = capsys.readouterr().err
    assert code == 1 and str(student["checkpoint"]) in err and "'probe'" in err
    assert not (tmp_path / "s.pt").exists()


def test_student_checkpoint_exports_through_edge_export_onnx(student, tmp_path):
    out = tmp_path / "b"
    assert main(["export", "onnx", "--checkpoint", str(student["checkpoint"]),
                 "--out", str(out), "--check-frames", "0"]) == 0
    assert load_bundle(out).manifest.provenance["kind"] == "distilled student"


def test_resample_views_replaces_the_chosen_share_with_blurred_tiles():
    import torch

    from export.distill import resample_views

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 32, 32)
    assert resample_views(x, 0.0, gen) is x
    out = resample_views(x, 0.5, gen)
    assert out.shape == x.shape
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert 0.35 < changed.float().mean().item() < 0.65
    # resampling blurs: a changed tile loses high-frequency energy, its mean stays put
    dx = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean().item()  # noqa: E731
    assert dx(out[changed]) < dx(x[changed])
    assert torch.allclose(out[changed].mean((1, 2, 3)), x[changed].mean((1, 2, 3)), atol=0.05)
    assert torch.equal(out[~changed], x[~changed])


def test_a_teacher_teaches_a_student_of_smaller_tiles_on_the_same_tiles(trained, ai4mars_dir,
                                                                        tmp_path):
    """A 32-px teacher and a 16-px student: the teacher's targets and its side of the val
    comparison come from the same tiles made at 32 px, the student's at 16 px."""
    from export.distill import DistillConfig, distill

    data = TileDataConfig(root=str(ai4mars_dir), tile_pixels=16, max_train_frames=4)
    cache = tmp_path / "cache.npz"
    m = distill(DistillConfig(teacher=str(trained["probe"]), out=str(tmp_path / "s.pt"),
                              data=data, widths=(8, 8, 8), epochs=1, batch_size=32, threads=1,
                              teacher_cache=str(cache)), log=lambda *_: None)
    ckpt = load_checkpoint(tmp_path / "s.pt", "student")
    assert ckpt["input"]["tile_pixels"] == 16
    teacher, tckpt = load_teacher(trained["probe"])
    assert tckpt["input"]["tile_pixels"] == 32
    big = TileDataConfig(root=str(ai4mars_dir), tile_pixels=32, max_train_frames=4)
    train32 = load_split_tiles(big, "train", with_labels=False).tiles
    with np.load(cache) as z:
        np.testing.assert_allclose(z["logits"], teacher_outputs(teacher, train32)[0],
                                   rtol=1e-4, atol=1e-4)
    val16 = load_split_tiles(data, "val").scored()
    val32 = load_split_tiles(big, "val").scored()
    assert val16.tiles.shape[-1] == 16 and val32.tiles.shape[-1] == 32
    t_pred = teacher_outputs(teacher, val32.tiles)[0].argmax(1)
    with torch.no_grad():
        s_pred = student_from_checkpoint(ckpt)(torch.from_numpy(val16.tiles)).argmax(1).numpy()
    assert m["agreement"] == pytest.approx(float((t_pred == s_pred).mean()))
    assert m["teacher"]["accuracy"] == pytest.approx(float((t_pred == val32.labels).mean()))
    # without a cache, the teacher runs on the val tiles made at its own size
    from export.distill import teacher_val_logits, teacher_view

    logits = teacher_val_logits(teacher, val16.tiles, val16.labels, data,
                                teacher_data=teacher_view(data, tckpt))
    np.testing.assert_allclose(logits, teacher_outputs(teacher, val32.tiles)[0], atol=1e-5)


def test_a_teacher_on_another_tile_grid_is_refused(trained, ai4mars_dir):
    from export.distill import teacher_view

    _, tckpt = load_teacher(trained["probe"])
    with pytest.raises(CheckpointError, match="teacher tiles"):
        teacher_view(TileDataConfig(root=str(ai4mars_dir), tile=16, stride=16), tckpt, "t.pt")
    view = teacher_view(TileDataConfig(root=str(ai4mars_dir), tile_pixels=16), tckpt, "t.pt")
    assert view.tile_pixels == 32


def test_a_logit_only_teacher_cache_replaces_the_teacher(trained, ai4mars_dir, tmp_path,
                                                          monkeypatch):
    """``edge export teacher-cache --no-features`` (what a GPU makes for a large teacher):
    distil then reads the teacher's train and val answers from it and never runs the teacher;
    feature matching, which needs features, is refused with the file named."""
    import export.distill as ed

    cache = tmp_path / "teacher.npz"
    assert main(["export", "teacher-cache", "--teacher", str(trained["probe"]), "--out",
                 str(cache), "--data", str(ai4mars_dir), "--max-train-frames", "4",
                 "--device", "cpu", "--no-features"]) == 0
    with np.load(cache) as z:
        assert "features" not in z.files
        val_logits, val_labels = z["val_logits"], z["val_labels"]
    teacher, _ = load_teacher(trained["probe"])
    data = TileDataConfig(root=str(ai4mars_dir), max_train_frames=4)
    val = load_split_tiles(data, "val").scored()
    np.testing.assert_array_equal(val_labels, val.labels)
    np.testing.assert_allclose(val_logits, teacher_outputs(teacher, val.tiles)[0], atol=1e-4)

    def no_teacher(*a, **k):
        raise AssertionError("the teacher ran although its cache holds its answers")

    monkeypatch.setattr(ed, "teacher_outputs", no_teacher)
    cfg = ed.DistillConfig(teacher=str(trained["probe"]), out=str(tmp_path / "s.pt"), data=data,
                           widths=(8, 8, 8), epochs=1, batch_size=32, threads=1,
                           teacher_cache=str(cache))
    m = ed.distill(cfg, log=lambda *_: None)
    t_acc = float((val_logits.argmax(1) == val.labels).mean())
    assert m["teacher"]["accuracy"] == pytest.approx(t_acc)
    with pytest.raises(CheckpointError, match="logits only"):
        ed.distill(replace(cfg, feature_weight=0.5), log=lambda *_: None)


def test_a_cache_of_other_tiles_is_not_used(trained, ai4mars_dir, tmp_path):
    """A cache made on other frames (another key) is recomputed, not read."""
    from export.distill import DistillConfig, _read_cache, teacher_view, write_teacher_cache

    teacher, tckpt = load_teacher(trained["probe"])
    made = DistillConfig(teacher=str(trained["probe"]), teacher_cache=str(tmp_path / "c.npz"),
                         data=TileDataConfig(root=str(ai4mars_dir), max_train_frames=4))
    write_teacher_cache(made, teacher, teacher_view(made.data, tckpt), "cpu", False,
                        log=lambda *_: None)
    other = replace(made, data=replace(made.data, max_train_frames=3))
    assert _read_cache(made, teacher_view(made.data, tckpt))
    assert _read_cache(other, teacher_view(other.data, tckpt)) == {}
