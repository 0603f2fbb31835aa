"""``edge train`` and ``edge data``: exit status and messages of the thin CLI."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from train_fixtures import make_ai4mars, write_image

from toolkit_cli.main import main
from train.checkpoint import load_checkpoint, save_atomic
from train.datasets.ai4mars import UNLABELLED
from train.models import ENCODER_PRESETS, Encoder
from train.tiles import TileDataConfig


@pytest.fixture()
def random_encoder(tmp_path):
    """An untrained tiny encoder checkpoint with the default input and tiling."""
    data = TileDataConfig()
    encoder = Encoder(ENCODER_PRESETS["tiny"])
    return save_atomic({"kind": "encoder", "encoder_config": encoder.config.to_dict(),
                        "state_dict": encoder.state_dict(), "input": asdict(data.input_spec),
                        "tiling": asdict(data.tiling), "config": {"preset": "tiny"},
                        "history": []}, tmp_path / "enc" / "encoder.pt")


def test_probe_with_missing_encoder_names_the_file(tmp_path, capsys):
    missing = tmp_path / "nope" / "encoder.pt"
    assert main(["train", "probe", "--encoder", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert str(missing) in err
    assert "Traceback" not in err


def test_probe_with_wrong_kind_checkpoint(tmp_path, capsys):
    path = save_atomic({"kind": "probe"}, tmp_path / "probe.pt")
    assert main(["train", "probe", "--encoder", str(path)]) == 1
    assert "expected a 'encoder' checkpoint" in capsys.readouterr().err


def test_probe_end_to_end(ai4mars_root, random_encoder, tmp_path, capsys):
    out = tmp_path / "probe" / "probe.pt"
    code = main(["train", "probe", "--encoder", str(random_encoder), "--out", str(out),
                 "--data", str(ai4mars_root), "--max-frames", "3", "--label-fraction", "0.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "validation accuracy" in captured.out
    assert f"probe checkpoint: {out}" in captured.out
    metrics = load_checkpoint(out, "probe")["metrics"]
    assert metrics["label_fraction"] == 0.5
    assert metrics["val_frames"] == 2


def test_probe_frame_limits_apply_to_their_own_split(ai4mars_root, random_encoder,
                                                             tmp_path, capsys):
    out = tmp_path / "probe.pt"
    code = main(["train", "probe", "--encoder", str(random_encoder), "--out", str(out),
                 "--data", str(ai4mars_root), "--max-train-frames", "2",
                 "--label-fraction", "0.5", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    ckpt = load_checkpoint(out, "probe")
    assert ckpt["probe_config"]["data"]["max_train_frames"] == 2
    assert ckpt["probe_config"]["data"]["max_val_frames"] is None
    assert ckpt["probe_config"]["device"] == "cpu"
    assert all(t.device.type == "cpu" for t in ckpt["encoder_state"].values())
    code = main(["train", "probe", "--encoder", str(random_encoder), "--out", str(out),
                 "--data", str(ai4mars_root), "--max-val-frames", "1",
                 "--label-fraction", "0.5"])
    assert code == 0, capsys.readouterr().err
    ckpt = load_checkpoint(out, "probe")
    assert ckpt["probe_config"]["data"]["max_train_frames"] is None
    assert ckpt["metrics"]["val_frames"] == 1


def test_probe_on_a_missing_gpu_or_with_both_frame_limits_exits_1(random_encoder, capsys):
    import torch

    if not torch.cuda.is_available():
        assert main(["train", "probe", "--encoder", str(random_encoder),
                     "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err
    for limit in ("--max-train-frames", "--max-val-frames"):
        assert main(["train", "probe", "--encoder", str(random_encoder), "--max-frames", "2",
                     limit, "2"]) == 1
        assert "not both" in capsys.readouterr().err


def test_probe_without_scored_tiles_exits_1(random_encoder, tmp_path, capsys):
    root = tmp_path / "ai4mars"
    for frame_id in make_ai4mars(root, [397681000 + 100 * k for k in range(5)]):
        write_image(root / "masks" / f"{frame_id}.png",
                    np.full((64, 64), UNLABELLED, dtype=np.uint8))
    code = main(["train", "probe", "--encoder", str(random_encoder), "--data", str(root),
                 "--out", str(tmp_path / "p.pt")])
    assert code == 1
    assert "no scored train tiles" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()


def test_pretrain_with_missing_data_exits_1(tmp_path, capsys):
    missing = tmp_path / "no-data"
    code = main(["train", "pretrain", "--data", str(missing), "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "missing" in err


def test_pretrain_with_unknown_preset_exits_1(tmp_path, capsys):
    code = main(["train", "pretrain", "--preset", "huge", "--out", str(tmp_path / "run")])
    assert code == 1
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_bad_option_value_exits_1(tmp_path):
    assert main(["train", "probe", "--label-fraction", "0"]) == 1


def test_data_info_on_an_empty_folder_exits_1(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "info", str(empty)]) == 1
    err = capsys.readouterr().err
    assert str(empty) in err and "holds no" in err


def test_data_info_on_a_dataset(msl_root, capsys):
    assert main(["data", "info", str(msl_root)]) == 0
    out = capsys.readouterr().out
    assert "MSL v2.1" in out and "Drill holes" in out
