"""--resume continues a pretraining run exactly where its last checkpoint stands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from kill_after_save import pretrain_killed_after_save

from toolkit_cli.main import main
from train.checkpoint import load_checkpoint
from train.pretrain import PretrainConfig, TrainingError, pretrain
from train.tiles import TileDataConfig


def quiet(*_args: object) -> None:
    """A log function that prints nothing."""


def config(root: Path, out: Path, epochs: int, resume: bool = False) -> PretrainConfig:
    return PretrainConfig(out_dir=str(out), preset="tiny",
                          data=TileDataConfig(root=str(root), max_train_frames=2),
                          batch_size=32, epochs=epochs, threads=1, resume=resume)


def test_resume_after_a_full_epoch_matches_the_uninterrupted_run(ai4mars_root, tmp_path):
    straight = load_checkpoint(pretrain(config(ai4mars_root, tmp_path / "a", 3), log=quiet),
                               "encoder")
    # The same run, killed right after writing its checkpoint of epoch 1 (of 0..2).
    out = tmp_path / "b"
    cfg = config(ai4mars_root, out, 3)

    pretrain_killed_after_save(cfg, 2)  # killed after the checkpoint of epoch 1
    assert load_checkpoint(out / "encoder.pt", "encoder")["train_state"]["next_epoch"] == 2
    resumed = load_checkpoint(pretrain(replace(cfg, resume=True), log=quiet), "encoder")
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)
    for name, tensor in straight["state_dict"].items():
        assert torch.allclose(tensor.float(), resumed["state_dict"][name].float(), atol=1e-6), name


def test_resume_refuses_different_settings(ai4mars_root, tmp_path):
    pretrain(config(ai4mars_root, tmp_path / "a", 1), log=quiet)
    with pytest.raises(TrainingError, match="batch_size"):
        pretrain(replace(config(ai4mars_root, tmp_path / "a", 1, resume=True), batch_size=16),
                 log=quiet)


def test_resume_refuses_another_precision_and_reads_old_checkpoints_as_auto(ai4mars_root,
                                                                          tmp_path):
    path = pretrain(config(ai4mars_root, tmp_path / "a", 2), log=quiet)
    with pytest.raises(TrainingError, match="precision: 'auto' -> 'bf16'"):
        pretrain(replace(config(ai4mars_root, tmp_path / "a", 2, resume=True), precision="bf16"),
                 log=quiet)
    # A checkpoint from before the setting existed ran as 'auto' and resumes as such.
    ckpt = torch.load(path, weights_only=False)
    del ckpt["config"]["precision"]
    ckpt["train_state"]["next_epoch"] = 1
    ckpt["history"] = ckpt["history"][:1]
    torch.save(ckpt, path)
    resumed = load_checkpoint(pretrain(config(ai4mars_root, tmp_path / "a", 2, resume=True),
                                       log=quiet), "encoder")
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]


def test_resume_cli_without_a_checkpoint_starts_from_scratch(ai4mars_root, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "pretrain", "--data", str(ai4mars_root), "--out", str(out),
                 "--max-frames", "2", "--batch-size", "32", "--epochs", "1", "--threads", "1",
                 "--resume"])
    assert code == 0
    assert "starting from scratch" in capsys.readouterr().out
    assert (out / "encoder.pt").exists()
