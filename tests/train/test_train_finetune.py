"""Fine-tuning a pretrained encoder end to end (train_supervised with init_encoder) and
``edge train finetune``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit_cli.main import main
from train.checkpoint import CheckpointError, save_atomic
from train.labelled_sets import LabelledSet
from train.models import Encoder, EncoderConfig
from train.supervised import SupervisedConfig, train_supervised


def encoder_checkpoint(path, width: int = 4) -> EncoderConfig:
    cfg = EncoderConfig(width=width, blocks=(1,))
    save_atomic({"kind": "encoder", "encoder_config": cfg.to_dict(),
                 "state_dict": Encoder(cfg).state_dict(), "config": {}, "history": [],
                 "input": {}, "tiling": {}}, path)
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
                 str(tmp_path / "m.json")])
    assert code in (0, None)
    assert "ai4mars validation: accuracy" in capsys.readouterr().out
    assert 0.0 <= json.loads((tmp_path / "m.json").read_text())["accuracy"] <= 1.0


def test_finetune_command_names_a_missing_encoder(tmp_path, capsys):
    code = main(["train", "finetune", "--encoder", str(tmp_path / "none.pt")])
    assert code == 1
    assert "none.pt: no such checkpoint" in capsys.readouterr().err
