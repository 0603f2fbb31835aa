"""Fine-tuning a pretrained encoder end to end (train_supervised with init_encoder, LP-FT),
train.finetune's checkpoint and ``edge train finetune``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit_cli.main import main
from train.checkpoint import CheckpointError, load_checkpoint, save_atomic
from train.finetune import FinetuneConfig, finetune
from train.labelled_sets import LabelledSet, load_labelled
from train.metrics import evaluate
from train.models import Encoder, EncoderConfig
from train.probe import ProbeConfig, extract_features, load_encoder, train_linear_head
from train.supervised import SupervisedConfig, initial_head, predict, train_supervised
from train.tiles import TileDataConfig


def encoder_checkpoint(path, width: int = 4) -> EncoderConfig:
    cfg = EncoderConfig(width=width, blocks=(1,))
    save_atomic({"kind": "encoder", "encoder_config": cfg.to_dict(),
                 "state_dict": Encoder(cfg).state_dict(), "config": {}, "history": [],
                 "input": {"tile_pixels": 32, "channels": 1, "mean": [0.5], "std": [0.25]},
                 "tiling": {"reference_width": 256, "tile": 32, "stride": 32}}, path)
    return cfg


def two_levels(n: int, seed: int) -> LabelledSet:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(2), n)
    x = (np.where(labels == 0, -2.0, 2.0)[:, None, None, None]
         + rng.normal(0, 0.1, (2 * n, 1, 16, 16))).astype(np.float32)
    return LabelledSet(x, labels.astype(np.int64), np.arange(2 * n), ["dark", "bright"])


def test_finetune_uses_the_checkpoint_architecture_and_weights(tmp_path, monkeypatch):
    encoder_checkpoint(tmp_path / "enc.pt", width=4)
    seen = {}
    import train.supervised as sup

    real = sup.TileClassifier

    def spy(encoder, head):
        seen["width"] = encoder.config.width
        seen["stem"] = encoder.stem[0].weight.detach().clone()
        return real(encoder, head)

    monkeypatch.setattr(sup, "TileClassifier", spy)
    cfg = SupervisedConfig(steps=2, batch_size=8, init_encoder=str(tmp_path / "enc.pt"))
    m = train_supervised(two_levels(8, 0), two_levels(4, 1), cfg, min_support=1)
    saved = torch.load(tmp_path / "enc.pt", weights_only=False)["state_dict"]["stem.0.weight"]
    assert seen["width"] == 4  # not the 'tiny' preset's 16
    assert torch.equal(seen["stem"], saved)
    assert 0.0 <= m["accuracy"] <= 1.0


def test_finetune_refuses_a_checkpoint_of_another_kind(tmp_path):
    save_atomic({"kind": "probe"}, tmp_path / "probe.pt")
    with pytest.raises(CheckpointError, match="expected a 'encoder' checkpoint"):
        train_supervised(two_levels(4, 0), two_levels(2, 1),
                         SupervisedConfig(steps=1, init_encoder=str(tmp_path / "probe.pt")))


def test_finetune_command(ai4mars_root, tmp_path, capsys):
    encoder_checkpoint(tmp_path / "enc.pt")
    root = tmp_path / "data"
    root.mkdir()
    (root / "ai4mars-msl-ncam-256").symlink_to(ai4mars_root)
    code = main(["train", "finetune", "--encoder", str(tmp_path / "enc.pt"), "--data-root",
                 str(root), "--steps", "2", "--label-fraction", "0.5", "--json",
                 str(tmp_path / "m.json"), "--out", str(tmp_path / "ft.pt")])
    assert code in (0, None)
    out = capsys.readouterr().out
    assert "ai4mars validation: accuracy" in out and "fine-tuned checkpoint" in out
    assert load_checkpoint(tmp_path / "ft.pt", "probe")["classes"]
    assert 0.0 <= json.loads((tmp_path / "m.json").read_text())["accuracy"] <= 1.0


def test_finetune_command_names_a_missing_encoder(tmp_path, capsys):
    code = main(["train", "finetune", "--encoder", str(tmp_path / "none.pt")])
    assert code == 1
    assert "none.pt: no such checkpoint" in capsys.readouterr().err


def test_probe_first_head_is_the_linear_probe_on_frozen_features(tmp_path):
    encoder_checkpoint(tmp_path / "enc.pt", width=4)
    encoder, _ = load_encoder(tmp_path / "enc.pt")
    train = two_levels(8, 0)
    cfg = SupervisedConfig(seed=3, init_encoder=str(tmp_path / "enc.pt"), probe_first=True)
    head = initial_head(encoder, train, cfg)
    probe = train_linear_head(extract_features(encoder, train.inputs),
                              torch.from_numpy(train.labels), 2, ProbeConfig(seed=3))
    assert torch.equal(head.weight, probe.weight) and torch.equal(head.bias, probe.bias)
    # The probe separates the two levels before any end-to-end step.
    with torch.no_grad():
        pred = head(extract_features(encoder, train.inputs)).argmax(1).numpy()
    assert (pred == train.labels).all()


def test_probe_first_needs_a_pretrained_encoder(tmp_path):
    encoder = Encoder(EncoderConfig(width=4, blocks=(1,)))
    head = initial_head(encoder, two_levels(4, 0), SupervisedConfig(probe_first=True))
    assert head.weight.shape == (2, encoder.config.feature_dim)  # random: nothing to probe


def test_finetune_checkpoint_exports_and_reproduces_its_metrics(ai4mars_root, tmp_path):
    from export.onnx_export import OnnxExportConfig, classifier_from_probe, export_bundle

    encoder_checkpoint(tmp_path / "enc.pt")
    data = TileDataConfig(root=str(ai4mars_root))
    cfg = FinetuneConfig(encoder=str(tmp_path / "enc.pt"), out=str(tmp_path / "ft.pt"),
                         data=data, label_fraction=0.5, steps=3)
    metrics = finetune(cfg, log=lambda _msg: None)
    ckpt = load_checkpoint(tmp_path / "ft.pt", "probe")
    assert ckpt["probe_config"]["method"] == "finetune"
    assert ckpt["probe_config"]["probe_first"] is True
    assert ckpt["tiling"]["tile"] == 32 and ckpt["classes"] == list(metrics["support"])
    # The saved weights are the evaluated model's, batch-norm statistics included.
    val = load_labelled("ai4mars", "val", data, cfg.msl_root)
    again = evaluate(predict(classifier_from_probe(ckpt), val.inputs), val.labels,
                     val.classes, 10)
    assert again["accuracy"] == metrics["accuracy"]
    # A fine-tuned encoder differs from the one it started from.
    start = torch.load(tmp_path / "enc.pt", weights_only=False)["state_dict"]["stem.0.weight"]
    assert not torch.equal(ckpt["encoder_state"]["stem.0.weight"], start)
    bundle = export_bundle(OnnxExportConfig(checkpoint=str(tmp_path / "ft.pt"),
                                            out_dir=str(tmp_path / "bundle"), name="ft"))
    assert "fine-tuned" in bundle.manifest.provenance["data"]["labels"]
