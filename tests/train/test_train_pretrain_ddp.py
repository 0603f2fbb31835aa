"""train.pretrain under torchrun-style data parallelism: two gloo processes on CPU run a tiny
cluster-corrected pretraining on the synthetic AI4Mars folder. Only rank 0 logs and writes
checkpoints, the pool is clustered from the features of both ranks' slices of one model, the
cluster ids reach both ranks, and the parameters stay identical on both ranks. A second run in
the same processes checks that a time budget spent on one rank only stops both ranks at the
same step (rather than leaving rank 0 waiting in a gather).

Each worker records what it saw by wrapping a few of train.pretrain's functions (in its own
process only) and saves it to ``rank{r}.pt``."""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
from local_ports import free_port

from train.checkpoint import load_checkpoint
from train.clustering import ClusterConfig
from train.models import ENCODER_PRESETS, Encoder
from train.pool import load_pool
from train.pretrain import PretrainConfig, _features
from train.tiles import TileDataConfig

WORLD = 2
TIMEOUT_S = 90


def _config(root: str, out: str) -> PretrainConfig:
    """2 train frames (128 tiles), global batches of 32 (16 per rank), 2 epochs, clusters
    (k=2, false-negative elimination) from epoch 1."""
    return PretrainConfig(out_dir=out, preset="tiny",
                          data=TileDataConfig(root=root, max_train_frames=2),
                          batch_size=32, epochs=2, threads=1,
                          cluster=ClusterConfig(mode="eliminate", ks=(2,), warmup_epochs=1),
                          device="cpu")  # gloo on the CPU, also on a machine with a GPU


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _worker(rank: int, port: int, root: str, out: str, record_dir: str) -> None:
    try:
        torch.set_num_threads(1)
        try:  # the CPU clusters with faiss where it is installed, else with torch
            import faiss
        except ImportError:  # e.g. the lent GPU machine's image, which has no faiss
            faiss = None
        if faiss is not None and hasattr(faiss, "omp_set_num_threads"):
            faiss.omp_set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
        import train.pretrain as tp

        rec: dict[str, Any] = {"logs": [], "saves": 0, "features": [], "ids": [],
                               "clustered": None}
        built: dict[str, torch.nn.Module] = {}
        real = {name: getattr(tp, name) for name in
                ("Encoder", "ProjectionHead", "_save", "_features", "_cluster_pool",
                 "cluster_assignments")}

        def encoder(*a: Any, **k: Any) -> torch.nn.Module:
            built["encoder"] = real["Encoder"](*a, **k)
            return built["encoder"]

        def head(*a: Any, **k: Any) -> torch.nn.Module:
            built["head"] = real["ProjectionHead"](*a, **k)
            return built["head"]

        def save(*a: Any, **k: Any) -> None:
            rec["saves"] += 1
            real["_save"](*a, **k)

        def features(enc: torch.nn.Module, items: np.ndarray, *a: Any, **k: Any) -> np.ndarray:
            # the model (parameters and BatchNorm statistics) this rank embeds its slice with
            rec["features"].append({"n": len(items), "state": _clone(enc.state_dict())})
            return real["_features"](enc, items, *a, **k)

        def cluster_pool(*a: Any, **k: Any) -> tuple[np.ndarray, dict[str, Any]]:
            ids, stats = real["_cluster_pool"](*a, **k)
            rec["ids"].append(ids.copy())
            return ids, stats

        def assignments(feats: np.ndarray, *a: Any, **k: Any) -> np.ndarray:
            rec["clustered"] = feats.copy()  # the gathered features (rank 0 only)
            return real["cluster_assignments"](feats, *a, **k)

        tp.Encoder, tp.ProjectionHead, tp._save = encoder, head, save
        tp._features, tp._cluster_pool, tp.cluster_assignments = features, cluster_pool, \
            assignments
        path = tp.pretrain(_config(root, out), log=lambda *m: rec["logs"].append(m))
        rec["path"] = str(path)
        rec["params"] = {name: _clone(dict(built[name].named_parameters()))
                         for name in ("encoder", "head")}
        torch.save(rec, Path(record_dir) / f"rank{rank}.pt")
        # A second run in the same group, with a time budget that rank 1 alone has spent
        # after its first step (as when its clock runs ahead): both ranks must stop there.
        rec.update(logs=[], saves=0)
        budget = replace(_config(root, str(Path(out).with_name("budget"))), cluster=None,
                         max_minutes=60.0 if rank == 0 else 1e-9)
        tp.pretrain(budget, log=lambda *m: rec["logs"].append(m))
        torch.save(rec, Path(record_dir) / f"budget{rank}.pt")
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    except BaseException:
        traceback.print_exc()
        raise
    # Both runs are recorded (the files are closed) and both ranks passed the barrier: leave
    # without the interpreter's teardown. Once in a CI run here, rank 0 aborted after the
    # barrier ("terminate called without an active exception", no Python traceback, rank 1
    # clean), most likely a C++ thread of the process group still running at exit; it was
    # not reproduced, so where exactly it aborted is not known.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_two_ranks(root: Path, out: Path, record_dir: Path) -> list[int | None]:
    """Spawn both ranks and wait for them (killing them after TIMEOUT_S) -> exit codes."""
    spawn = mp.get_context("spawn")
    port = free_port()
    procs = [spawn.Process(target=_worker, args=(r, port, str(root), str(out), str(record_dir)))
             for r in range(WORLD)]
    end = time.monotonic() + TIMEOUT_S
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=max(0.0, end - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return [p.exitcode for p in procs]


def quiet(*_args: object) -> None:
    """A log function that prints nothing."""


def test_two_rank_cluster_pretraining(ai4mars_root, tmp_path):
    """One spawn of two ranks (the slow part) serves both runs: the cluster run, then the
    time-budget run."""
    out = tmp_path / "run"
    assert _run_two_ranks(ai4mars_root, out, tmp_path) == [0] * WORLD
    check_cluster_run(ai4mars_root, out, tmp_path)
    check_budget_run(tmp_path / "budget", tmp_path)


def check_budget_run(out: Path, record_dir: Path) -> None:
    """Rank 1 ran out of time after step 1: rank 0 stopped there too (no rank waits in a
    gather the other never joins) and saved that step."""
    recs = [torch.load(record_dir / f"budget{r}.pt", weights_only=False) for r in range(WORLD)]
    assert [r["saves"] for r in recs] == [1, 0]
    assert recs[1]["logs"] == []
    assert any("time budget" in str(m) for m in recs[0]["logs"])
    ckpt = load_checkpoint(out / "encoder.pt", "encoder")
    (record,) = ckpt["history"]
    assert record["steps"] == 1
    assert (ckpt["train_state"]["step"], ckpt["train_state"]["next_epoch"]) == (1, 1)


def check_cluster_run(ai4mars_root: Path, out: Path, record_dir: Path) -> None:
    recs = [torch.load(record_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    # Only rank 0 logs and writes: config.json and one encoder.pt, saved once per epoch.
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "encoder.pt"]
    assert [r["saves"] for r in recs] == [2, 0]
    assert recs[0]["logs"] and recs[1]["logs"] == []
    assert recs[0]["path"] == recs[1]["path"] == str(out / "encoder.pt")

    ckpt = load_checkpoint(out / "encoder.pt", "encoder")
    first, second = ckpt["history"]
    assert (first["epoch"], second["epoch"]) == (0, 1)
    assert first["steps"] == second["steps"] == 128 // 32
    assert "purity_k2" not in first and "pairs_removed_fraction" not in first
    assert 0.0 < second["purity_k2"] <= 1.0
    assert 0.0 <= second["pairs_removed_fraction"] <= 1.0
    assert np.isfinite([first["loss"], second["loss"]]).all()

    # The clusters cover the whole pool and both ranks train with the same ids.
    pool = load_pool(_config(str(ai4mars_root), str(out)).pool_config(), log=quiet)
    n = len(pool.items)
    ids = ckpt["train_state"]["cluster_ids"]
    assert isinstance(ids, np.ndarray) and ids.shape == (n, 1) and n == 128
    assert set(np.unique(ids)) <= {0, 1}
    for rec in recs:
        (rank_ids,) = rec["ids"]
        np.testing.assert_array_equal(rank_ids, ids)

    # Each rank's own random streams are saved, so that --resume continues every one of them.
    rank_rng = ckpt["train_state"]["rank_rng"]
    assert len(rank_rng) == 2
    assert torch.equal(rank_rng[0]["generator"], ckpt["train_state"]["generator"])
    assert not torch.equal(rank_rng[0]["generator"], rank_rng[1]["generator"])

    # Each rank embedded its half of the pool, with the same model (parameters and BatchNorm
    # statistics), and rank 0 clustered exactly the features of the whole pool, in order.
    (f0,), (f1,) = recs[0]["features"], recs[1]["features"]
    assert (f0["n"], f1["n"]) == (n // 2, n - n // 2)
    assert f0["state"].keys() == f1["state"].keys()
    for key, value in f0["state"].items():
        assert torch.equal(value, f1["state"][key]), key
    model = Encoder(ENCODER_PRESETS["tiny"])
    model.load_state_dict(f0["state"])
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(pool.items).contiguous(
            memory_format=torch.channels_last)).numpy()
    assert recs[0]["clustered"].shape == expected.shape
    np.testing.assert_allclose(recs[0]["clustered"], expected, rtol=1e-4, atol=1e-5)
    assert recs[1]["clustered"] is None

    # Averaged gradients keep the parameters identical on both ranks; rank 0 saved them.
    for name in ("encoder", "head"):
        p0, p1 = recs[0]["params"][name], recs[1]["params"][name]
        assert p0.keys() == p1.keys()
        for key in p0:
            assert torch.equal(p0[key], p1[key]), f"{name}.{key}"
    for key, value in recs[0]["params"]["encoder"].items():
        assert torch.equal(ckpt["state_dict"][key], value), key
    for key, value in recs[0]["params"]["head"].items():
        assert torch.equal(ckpt["train_state"]["head"][key], value), key
    # ... and epoch 1 moved them.
    key = next(iter(recs[0]["params"]["encoder"]))
    assert not torch.equal(f0["state"][key], recs[0]["params"]["encoder"][key])


def test_features_of_an_empty_slice():
    """The last rank's slice of the pool can be empty (e.g. 9 items on 4 ranks: 3, 3, 3, 0)."""
    model = Encoder(ENCODER_PRESETS["tiny"])
    feats = _features(model, np.zeros((0, 1, 32, 32), np.float32), torch.device("cpu"))
    assert feats.shape == (0, model.config.feature_dim) and feats.dtype == np.float32
