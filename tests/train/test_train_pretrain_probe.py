"""train.pretrain and train.probe end to end on a tiny synthetic AI4Mars folder."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import MSL_CLASSES, make_ai4mars, make_msl, write_image

import train.pretrain
from train.checkpoint import CheckpointError, load_checkpoint
from train.datasets.ai4mars import CLASSES, UNLABELLED
from train.datasets.errors import DatasetError
from train.metrics import MIN_TILES_FOR_RECALL, evaluate
from train.models import ENCODER_PRESETS
from train.pretrain import PretrainConfig, TrainingError, pretrain
from train.probe import ProbeConfig, class_weights, load_encoder, probe
from train.tiles import TileDataConfig, load_split_tiles


def quiet(*_args: object) -> None:
    """A log function that prints nothing."""


def pretrain_config(root: Path, out: Path, frames: int = 4, **kw: object) -> PretrainConfig:
    """Tiny run: ``frames`` train frames of 64 tiles, batches of 32, one epoch, one thread."""
    return PretrainConfig(out_dir=str(out), preset="tiny",
                          data=TileDataConfig(root=str(root), max_train_frames=frames),
                          batch_size=32, epochs=1, threads=1, **kw)


@pytest.fixture(scope="module")
def trained(ai4mars_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One pretraining run and one probe on it (shared by the tests of this module)."""
    out = tmp_path_factory.mktemp("pretrain")
    logs: list[str] = []
    ckpt = pretrain(pretrain_config(ai4mars_root, out / "run"), log=logs.append)
    pcfg = ProbeConfig(encoder=str(ckpt), out=str(out / "probe" / "probe.pt"),
                       data=TileDataConfig(root=str(ai4mars_root), max_train_frames=4),
                       label_fraction=0.5, steps=30)
    metrics = probe(pcfg, log=logs.append)
    return {"ckpt": ckpt, "probe_cfg": pcfg, "metrics": metrics, "logs": logs}


# --- pretraining ----------------------------------------------------------------------------

def test_pretrain_writes_an_encoder_checkpoint(trained, ai4mars_root):
    ckpt_path = trained["ckpt"]
    assert ckpt_path.name == "encoder.pt"
    ckpt = load_checkpoint(ckpt_path, "encoder")
    assert ckpt["encoder_config"] == ENCODER_PRESETS["tiny"].to_dict()
    assert ckpt["input"] == {"tile_pixels": 32, "channels": 1, "mean": (0.5,), "std": (0.25,)}
    assert ckpt["tiling"] == {"reference_width": 256, "tile": 32, "stride": 32, "crop": "none"}
    assert ckpt["config"]["data"]["root"] == str(ai4mars_root)
    assert ckpt["git_revision"]
    (record,) = ckpt["history"]
    assert record["epoch"] == 0
    assert record["steps"] == 4 * 64 // 32
    assert math.isfinite(record["loss"]) and record["loss"] > 0
    assert any("pool: 256 ai4mars items" in line for line in trained["logs"])
    config = json.loads((ckpt_path.parent / "config.json").read_text())
    assert config["batch_size"] == 32 and config["git_revision"]
    assert sorted(p.name for p in ckpt_path.parent.iterdir()) == ["config.json", "encoder.pt"]


def test_load_encoder_restores_the_weights(trained):
    encoder, ckpt = load_encoder(trained["ckpt"])
    assert not encoder.training
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k])
    with torch.no_grad():
        assert encoder(torch.zeros(2, 1, 32, 32)).shape == (2, 64)


def test_pretrain_is_deterministic_for_a_seed(ai4mars_root, tmp_path):
    a = pretrain(pretrain_config(ai4mars_root, tmp_path / "a", frames=1), log=quiet)
    b = pretrain(pretrain_config(ai4mars_root, tmp_path / "b", frames=1), log=quiet)
    ca, cb = load_checkpoint(a, "encoder"), load_checkpoint(b, "encoder")
    assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"])
    assert ca["history"][0]["loss"] == cb["history"][0]["loss"]


def test_bf16_pretraining_on_the_cpu_trains_and_records_its_precision(ai4mars_root, tmp_path):
    logs: list[str] = []
    path = pretrain(pretrain_config(ai4mars_root, tmp_path / "bf16", frames=1, precision="bf16"),
                    log=logs.append)
    ckpt = load_checkpoint(path, "encoder")
    assert ckpt["config"]["precision"] == "bf16"
    assert math.isfinite(ckpt["history"][0]["loss"])
    assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values()
               if v.is_floating_point())  # autocast leaves the weights in float32
    assert any("bfloat16 autocast on the CPU" in line for line in logs)


def test_unknown_precision_is_refused_before_any_data(tmp_path):
    with pytest.raises(TrainingError, match="precision 'fp16'"):
        pretrain(PretrainConfig(out_dir=str(tmp_path / "run"), precision="fp16"), log=quiet)


def test_non_finite_loss_raises_training_error(ai4mars_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train.pretrain, "nt_xent",
                        lambda z1, z2, t: (z1.sum() + z2.sum()) * float("nan"))
    with pytest.raises(TrainingError, match="loss became nan at epoch 0 step 0") as err:
        pretrain(pretrain_config(ai4mars_root, tmp_path / "run", frames=1), log=quiet)
    assert "last good checkpoint: none" in str(err.value)
    assert not (tmp_path / "run" / "encoder.pt").exists()


def _loss_failing_after(good_calls: int, bad: float) -> Callable[..., torch.Tensor]:
    """NT-Xent that returns its loss times ``bad`` (inf or nan) after ``good_calls`` calls."""
    calls = []
    real = train.pretrain.nt_xent

    def loss(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
        calls.append(1)
        value = real(z1, z2, t)
        return value * bad if len(calls) > good_calls else value

    return loss


def test_non_finite_loss_after_an_epoch_names_the_last_good_checkpoint(ai4mars_root, tmp_path,
                                                                       monkeypatch):
    # 2 steps per epoch: the third call is epoch 1's step 0.
    monkeypatch.setattr(train.pretrain, "nt_xent", _loss_failing_after(2, float("inf")))
    cfg = replace(pretrain_config(ai4mars_root, tmp_path / "run", frames=1), epochs=3)
    with pytest.raises(TrainingError, match="loss became inf at epoch 1 step 0") as err:
        pretrain(cfg, log=quiet)
    ckpt_path = tmp_path / "run" / "encoder.pt"
    assert f"last good checkpoint: {ckpt_path}" in str(err.value)
    assert [r["epoch"] for r in load_checkpoint(ckpt_path, "encoder")["history"]] == [0]


@pytest.mark.parametrize("check_every", [1, 3, 25])
def test_non_finite_loss_mid_epoch_is_named_by_its_step_whatever_the_check_interval(
        ai4mars_root, tmp_path, monkeypatch, check_every):
    # 8 steps per epoch: the sixth call is epoch 0's step 5.
    monkeypatch.setattr(train.pretrain, "nt_xent", _loss_failing_after(5, float("nan")))
    cfg = pretrain_config(ai4mars_root, tmp_path / "run", check_every=check_every)
    with pytest.raises(TrainingError, match="loss became nan at epoch 0 step 5"):
        pretrain(cfg, log=quiet)
    assert not (tmp_path / "run" / "encoder.pt").exists()


def test_stage_pool_leaves_the_pool_on_the_host_on_cpu_and_when_the_gpu_lacks_room(monkeypatch):
    items = torch.zeros(10, 1, 4, 4)
    assert train.pretrain._stage_pool(items, torch.device("cpu"), quiet) is items
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _dev: (items.nbytes, 8 * items.nbytes))
    logs: list[str] = []
    assert train.pretrain._stage_pool(items, torch.device("cuda", 0), logs.append) is items
    assert logs and "stays in host memory" in logs[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stage_pool_moves_a_small_pool_to_the_gpu():
    items = torch.arange(40.0).reshape(10, 1, 2, 2)
    staged = train.pretrain._stage_pool(items, torch.device("cuda", 0), quiet)
    assert staged.is_cuda and torch.equal(staged.cpu(), items)


def test_time_budget_stops_mid_epoch_and_saves(ai4mars_root, tmp_path):
    cfg = pretrain_config(ai4mars_root, tmp_path / "run", frames=2, max_minutes=1e-9)
    logs: list[str] = []
    ckpt = load_checkpoint(pretrain(cfg, log=logs.append), "encoder")
    assert [r["steps"] for r in ckpt["history"]] == [1]
    assert any("time budget" in line for line in logs)


def test_unknown_preset_and_too_few_tiles(ai4mars_root, tmp_path):
    with pytest.raises(TrainingError, match="unknown preset 'huge'"):
        pretrain(replace(pretrain_config(ai4mars_root, tmp_path / "a"), preset="huge"), log=quiet)
    cfg = replace(pretrain_config(ai4mars_root, tmp_path / "b", frames=1), batch_size=64)
    with pytest.raises(TrainingError, match="only 64 items per epoch: need at least two batches"):
        pretrain(cfg, log=quiet)


def test_pretrain_on_a_missing_folder_raises_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="missing"):
        pretrain(pretrain_config(tmp_path / "nothing", tmp_path / "run"), log=quiet)


# --- linear probe ---------------------------------------------------------------------------

def test_probe_writes_checkpoint_and_metrics(trained, ai4mars_root):
    cfg, metrics = trained["probe_cfg"], trained["metrics"]
    ckpt = load_checkpoint(cfg.out, "probe")
    assert ckpt["metrics"] == metrics
    for key in ("accuracy", "mean_recall", "confusion", "per_class_recall", "support",
                "recall_classes", "tiles", "label_fraction", "labelled_items", "dataset", "unit",
                "val_frames"):
        assert key in metrics, key
    assert ckpt["classes"] == CLASSES
    assert ckpt["encoder_checkpoint"] == str(trained["ckpt"])
    enc = load_checkpoint(trained["ckpt"], "encoder")
    assert ckpt["encoder_config"] == enc["encoder_config"]
    assert ckpt["input"] == enc["input"] and ckpt["tiling"] == enc["tiling"]
    for k, v in enc["state_dict"].items():
        assert torch.equal(ckpt["encoder_state"][k], v)  # the encoder stays frozen
    assert ckpt["head_state"]["weight"].shape == (len(CLASSES), 64)
    assert ckpt["probe_config"]["label_fraction"] == 0.5

    val = load_split_tiles(cfg.data, "val").scored()
    train_tiles = load_split_tiles(cfg.data, "train").scored()
    assert (metrics["dataset"], metrics["unit"], metrics["val_frames"]) == ("ai4mars", "tiles", 2)
    assert metrics["tiles"] == len(val.labels) == np.array(metrics["confusion"]).sum()
    counts = Counter(train_tiles.labels.tolist())
    assert metrics["labelled_items"] == sum(max(1, round(0.5 * n)) for n in counts.values())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    confusion = np.array(metrics["confusion"])
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())


def test_probe_refuses_a_probe_checkpoint_as_encoder(trained, tmp_path):
    cfg = replace(trained["probe_cfg"], encoder=trained["probe_cfg"].out,
                  out=str(tmp_path / "p.pt"))
    with pytest.raises(CheckpointError, match="expected a 'encoder' checkpoint, found 'probe'"):
        probe(cfg, log=quiet)
    assert not (tmp_path / "p.pt").exists()


def test_probe_without_scored_tiles_raises_dataset_error(trained, tmp_path):
    root = tmp_path / "ai4mars"
    ids = make_ai4mars(root, [397681000 + 100 * k for k in range(5)])
    for frame_id in ids:
        write_image(root / "masks" / f"{frame_id}.png",
                    np.full((64, 64), UNLABELLED, dtype=np.uint8))
    cfg = replace(trained["probe_cfg"], data=TileDataConfig(root=str(root)),
                  out=str(tmp_path / "p.pt"))
    with pytest.raises(DatasetError, match="no scored") as err:
        probe(cfg, log=quiet)
    assert str(root) in str(err.value)
    assert not (tmp_path / "p.pt").exists()


def test_msl_probe_classifies_whole_images_and_exports_a_whole_image_bundle(trained, tmp_path):
    from edge.bundle import load_bundle
    from edge.classify import FrameClassifier
    from edge.runners import make_runner
    from export.onnx_export import OnnxExportConfig, export_bundle

    msl_root = tmp_path / "msl-v2.1"
    make_msl(msl_root, with_images=True)
    cfg = replace(trained["probe_cfg"], dataset="msl", msl_root=str(msl_root),
                  out=str(tmp_path / "msl.pt"), label_fraction=0.5)
    metrics = probe(cfg, log=quiet)
    assert (metrics["dataset"], metrics["unit"], metrics["tiles"], metrics["val_frames"]) == (
        "msl-v2.1", "images", 6, 6)
    # Every class present in MSL validation counts towards mean recall (2 images each here).
    assert metrics["recall_classes"] == MSL_CLASSES and math.isfinite(metrics["mean_recall"])
    # Half of each class's originals (2, 4, 6 of 4, 8, 12), each with its two copies.
    assert metrics["labelled_items"] == 3 * (2 + 4 + 6)
    ckpt = load_checkpoint(cfg.out, "probe")
    assert ckpt["classes"] == MSL_CLASSES
    assert ckpt["tiling"]["crop"] == "centre-square"
    assert ckpt["head_state"]["weight"].shape[0] == len(MSL_CLASSES)

    bundle = load_bundle(export_bundle(OnnxExportConfig(
        checkpoint=cfg.out, out_dir=str(tmp_path / "msl-bundle"), name="msl")).path)
    assert bundle.manifest.tiling.crop == "centre-square"
    assert "MSL" in bundle.manifest.provenance["data"]["dataset"]
    classifier = FrameClassifier(bundle, make_runner(bundle, "onnxruntime", threads=1))
    result = classifier.classify(np.random.default_rng(0).integers(0, 255, (200, 300, 3),
                                                                   dtype=np.uint8))
    assert result.boxes.tolist() == [[50, 0, 200, 200]]
    assert result.class_ids.shape == (1,) and 0 <= result.class_ids[0] < len(MSL_CLASSES)


# --- evaluation -----------------------------------------------------------------------------

def test_evaluate_hand_made_predictions():
    # soil: 12 tiles, 9 right; bedrock: exactly 10 tiles, 5 right; sand: 5 tiles, all right
    # (too few for the mean recall); big rock: none.
    target = np.array([0] * 12 + [1] * 10 + [2] * 5)
    pred = np.array([0] * 9 + [1] * 3 + [1] * 5 + [0] * 5 + [2] * 5)
    m = evaluate(pred, target, CLASSES)
    assert MIN_TILES_FOR_RECALL == 10
    assert m["tiles"] == 27
    assert m["accuracy"] == pytest.approx(19 / 27)
    assert m["per_class_recall"] == {"soil": 0.75, "bedrock": 0.5, "sand": 1.0}
    assert m["recall_classes"] == ["soil", "bedrock"]
    assert m["mean_recall"] == pytest.approx(0.625)
    assert m["support"] == {"soil": 12, "bedrock": 10, "sand": 5, "big rock": 0}
    assert m["confusion"] == [[9, 3, 0, 0], [5, 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0]]


def test_evaluate_perfect_and_empty():
    target = np.repeat(np.arange(4), 10)
    m = evaluate(target.copy(), target, CLASSES)
    assert m["accuracy"] == 1.0 and m["mean_recall"] == 1.0
    empty = evaluate(np.array([], dtype=np.int64), np.array([], dtype=np.int64), CLASSES)
    assert empty["tiles"] == 0
    assert math.isnan(empty["accuracy"]) and math.isnan(empty["mean_recall"])


def test_evaluate_no_class_with_enough_tiles():
    m = evaluate(np.array([0, 1, 1]), np.array([0, 1, 2]), CLASSES)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(m["mean_recall"])
    assert m["recall_classes"] == []



def test_fold_standardization_equals_head_on_standardised_features():
    import torch

    from train.probe import fold_standardization

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3)
    mean, std = torch.randn(8), torch.rand(8) + 0.5
    x = torch.randn(16, 8)
    folded = fold_standardization(head, mean, std)
    assert torch.allclose(head((x - mean) / std), folded(x), atol=1e-5)
    assert not torch.allclose(head(x), folded(x), atol=1e-3)


def test_linear_head_ignores_spread_of_constant_features():
    """A feature constant on the labelled tiles must not get a huge folded weight."""
    import torch

    from train.probe import ProbeConfig, train_linear_head

    torch.manual_seed(0)
    feats = torch.randn(64, 4)
    feats[:, 3] = 0.0  # a dead channel on the training tiles
    labels = (feats[:, 0] > 0).long()
    head = train_linear_head(feats, labels, 2, ProbeConfig(steps=50))
    assert head.weight[:, 3].abs().max() < 10.0
    probe = torch.zeros(1, 4)
    probe[0, 3] = 1.0  # the channel wakes up at run time
    assert head(probe).abs().max() < 10.0


def test_class_weights_balance_the_classes_by_their_power():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])  # counts 6, 3, 1; class 3 absent counts 1
    full = class_weights(labels, 4)
    assert torch.allclose(full * torch.tensor([6.0, 3.0, 1.0, 1.0]), torch.full((4,), 11 / 4))
    assert torch.allclose(class_weights(labels, 4, 0.5), full.sqrt())
    assert torch.equal(class_weights(labels, 4, 0.0), torch.ones(4))
    with pytest.raises(ValueError, match="balance power 1.5"):
        class_weights(labels, 4, 1.5)
