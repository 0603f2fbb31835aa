"""train.pretrain with the cluster correction, domain mixing and the kNN monitor, on tiny
synthetic folders; and the CLI's checks of --cluster-mode and --domains."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from kill_after_save import pretrain_killed_after_save
from train_fixtures import write_image

from toolkit_cli.main import main
from train.checkpoint import load_checkpoint
from train.clustering import ClusterConfig, pick_backend
from train.datasets.hirise import load_hirise
from train.datasets.msl import load_msl
from train.pool import DOMAIN_LABEL_STRIDE, load_pool
from train.pretrain import PretrainConfig, pretrain
from train.tiles import TileDataConfig

CLUSTER_KEYS = ("purity_k2", "purity_k3", "pairs_removed_fraction", "removed_pairs_same_class")


def quiet(*_args: object) -> None:
    """A log function that prints nothing."""


def config(root: Path, out: Path, epochs: int = 2, **kw: object) -> PretrainConfig:
    """Tiny run: 2 train frames (128 tiles), batches of 32, one thread."""
    return PretrainConfig(out_dir=str(out), preset="tiny",
                          data=TileDataConfig(root=str(root), max_train_frames=2),
                          batch_size=32, epochs=epochs, threads=1, **kw)


def cluster_cfg(mode: str, every: int = 1) -> ClusterConfig:
    return ClusterConfig(mode=mode, ks=(2, 3), warmup_epochs=1, every_epochs=every)


@pytest.mark.parametrize("mode", ["eliminate", "attract"])
def test_cluster_run_logs_purity_and_removed_pairs(ai4mars_root, tmp_path, mode):
    ckpt = load_checkpoint(pretrain(config(ai4mars_root, tmp_path / "run",
                                           cluster=cluster_cfg(mode)), log=quiet), "encoder")
    first, second = ckpt["history"]
    assert first["epoch"] == 0 and second["epoch"] == 1
    assert not any(k in first for k in CLUSTER_KEYS)  # warm-up epoch: no clusters yet
    for k in CLUSTER_KEYS:
        assert k in second, k
    for k in ("purity_k2", "purity_k3"):
        assert 0.0 < second[k] <= 1.0
    assert 0.0 <= second["pairs_removed_fraction"] <= 1.0
    same = second["removed_pairs_same_class"]
    assert math.isnan(same) or 0.0 <= same <= 1.0
    assert math.isfinite(second["loss"])
    assert second["cluster_backend"] == pick_backend("cpu")  # faiss here, torch on a GPU
    ids = ckpt["train_state"]["cluster_ids"]
    assert isinstance(ids, np.ndarray) and ids.shape == (128, 2)
    assert ids[:, 0].max() < 2 and ids[:, 1].max() < 3 and ids.min() >= 0


def test_resume_of_a_cluster_run_keeps_its_cluster_ids(ai4mars_root, tmp_path):
    # Clusters at epoch 1 only (every 2): epoch 2 of the resumed run must use the saved ids.
    cluster = cluster_cfg("eliminate", every=2)
    straight = load_checkpoint(pretrain(config(ai4mars_root, tmp_path / "a", 3, cluster=cluster),
                                        log=quiet), "encoder")
    cfg = config(ai4mars_root, tmp_path / "b", 3, cluster=cluster)
    pretrain_killed_after_save(cfg, 2)  # killed after the checkpoint of epoch 1
    killed = load_checkpoint(tmp_path / "b" / "encoder.pt", "encoder")["train_state"]
    assert killed["next_epoch"] == 2
    saved_ids = killed["cluster_ids"].copy()

    resumed = load_checkpoint(pretrain(replace(cfg, resume=True), log=quiet), "encoder")
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]
    assert "purity_k2" not in resumed["history"][2]  # not re-clustered at epoch 2...
    assert "pairs_removed_fraction" in resumed["history"][2]  # ...but still corrected
    np.testing.assert_array_equal(resumed["train_state"]["cluster_ids"], saved_ids)
    np.testing.assert_array_equal(straight["train_state"]["cluster_ids"], saved_ids)
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)
        for k in CLUSTER_KEYS:
            assert (k in a) == (k in b)
            if k in a:
                assert a[k] == pytest.approx(b[k], nan_ok=True)


def write_whole_images(msl_root: Path, hirise_root: Path) -> None:
    """Small grey JPEGs for every listed MSL and HiRISE file (the fixtures write only lists)."""
    msl = load_msl(msl_root)
    for split in msl.splits.values():
        for it in split:
            write_image(msl.image_path(it), np.full((20, 24), 60 + 60 * it.label, np.uint8))
    hirise = load_hirise(hirise_root)
    for split in hirise.splits.values():
        for it in split:
            write_image(hirise.image_path(it), np.full((16, 16), 40 + 70 * it.label, np.uint8))


def test_domain_mixing_pool_trains(ai4mars_root, msl_root, hirise_root, tmp_path):
    write_whole_images(msl_root, hirise_root)
    cfg = config(ai4mars_root, tmp_path / "mix", 1,
                 domains=(("ai4mars", 0.5), ("msl", 0.3), ("hirise", 0.2)),
                 msl_root=str(msl_root), hirise_root=str(hirise_root),
                 max_items_per_domain=40, epoch_size=64)
    pool = load_pool(cfg.pool_config(), log=quiet)
    assert pool.names == ["ai4mars", "msl", "hirise"]
    assert pool.sizes() == [40, 40, 40]
    assert pool.items.shape == (120, 1, 32, 32) and pool.items.dtype == np.float32
    for d in range(3):
        labels = pool.labels[pool.domain == d]
        labelled = labels[labels >= 0]
        assert len(labelled)
        assert (labelled // DOMAIN_LABEL_STRIDE == d).all()
        assert (labelled % DOMAIN_LABEL_STRIDE < 4).all()
    assert (pool.labels[pool.domain > 0] >= 0).all()  # MSL and HiRISE items are all labelled
    assert set(pool.labels[pool.domain == 1] - 1000) == {0, 1, 2}
    ckpt = load_checkpoint(pretrain(cfg, log=quiet, pool=pool), "encoder")
    (record,) = ckpt["history"]
    assert record["steps"] == 64 // 32 and math.isfinite(record["loss"])


def test_monitor_adds_knn_accuracy(ai4mars_root, tmp_path):
    ckpt = load_checkpoint(pretrain(config(ai4mars_root, tmp_path / "run", 2,
                                           monitor="ai4mars"), log=quiet), "encoder")
    assert len(ckpt["history"]) == 2
    for record in ckpt["history"]:
        assert 0.0 <= record["knn_accuracy"] <= 1.0


@pytest.mark.parametrize(("extra", "message"), [
    (["--cluster-mode", "bogus"], "--cluster-mode"),
    (["--domains", "ai4mars:x"], "'x'"),
])
def test_cli_rejects_bad_cluster_mode_and_domains(ai4mars_root, tmp_path, capsys, extra,
                                                  message):
    out = tmp_path / "run"
    code = main(["train", "pretrain", "--data", str(ai4mars_root), "--out", str(out),
                 "--max-frames", "2", "--batch-size", "32", "--epochs", "1", "--threads", "1",
                 *extra])
    assert code == 1
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not (out / "encoder.pt").exists()
