"""train.distributed: two gloo processes on CPU reproduce the single-process loss and
gradients of nt_xent on the global batch; shard, from_env and the no-group identities."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from local_ports import free_port

from train.distributed import (
    DistContext,
    average_gradients,
    gather_no_grad,
    gather_with_grad,
    init_distributed,
    is_distributed,
    shard,
)
from train.losses import nt_xent

WORLD = 2
MODES = (None, "eliminate", "attract")
# (8, 2): two clusterings; pairs (0, 3), (0, 6), (1, 7) share both clusters, several of them
# across the two shards (0-3 and 4-7), so the cluster masks span ranks.
CLUSTER_IDS = torch.tensor([[0, 1], [1, 0], [2, 2], [0, 1], [1, 1], [2, 0], [0, 1], [1, 0]])


def _model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(6, 4)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)


def _loss(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, ids: torch.Tensor,
          mode: str | None) -> torch.Tensor:
    z1, z2 = gather_with_grad(model(x1)), gather_with_grad(model(x2))
    if mode is None:
        return nt_xent(z1, z2, 0.2)
    return nt_xent(z1, z2, 0.2, cluster_ids=gather_no_grad(ids), mode=mode)


def _worker(rank: int, port: int, out: str) -> None:
    try:
        torch.set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
        ctx = init_distributed("gloo")
        result: dict = {"ctx": ctx, "is_distributed": is_distributed()}
        x1, x2 = _batch()
        sl = shard(len(x1), ctx)
        for mode in MODES:
            model = _model()
            loss = _loss(model, x1[sl], x2[sl], CLUSTER_IDS[sl], mode)
            loss.backward()
            average_gradients(model.parameters())
            result[mode] = {"loss": loss.detach(),
                            "grads": {n: p.grad for n, p in model.named_parameters()}}
        result["gathered_ids"] = gather_no_grad(CLUSTER_IDS[sl])
        torch.save(result, Path(out) / f"rank{rank}.pt")
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    except BaseException:
        traceback.print_exc()
        raise


def test_two_ranks_match_single_process(tmp_path):
    spawn = mp.get_context("spawn")
    port = free_port()
    procs = [spawn.Process(target=_worker, args=(r, port, str(tmp_path))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * WORLD

    x1, x2 = _batch()
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for rank, res in enumerate(results):
        assert res["ctx"] == DistContext(rank=rank, world_size=WORLD, local_rank=rank)
        assert res["ctx"].is_main == (rank == 0)
        assert res["is_distributed"]
        torch.testing.assert_close(res["gathered_ids"], CLUSTER_IDS, rtol=0, atol=0)
    for mode in MODES:
        model = _model()
        loss = _loss(model, x1, x2, CLUSTER_IDS, mode)  # no process group: plain nt_xent
        loss.backward()
        for res in results:
            torch.testing.assert_close(res[mode]["loss"], loss.detach(), rtol=1e-6, atol=1e-7)
            for name, p in model.named_parameters():
                torch.testing.assert_close(res[mode]["grads"][name], p.grad,
                                           rtol=1e-5, atol=1e-7)
    # the three modes really differ on this batch, so each comparison tests its own path
    losses = [results[0][m]["loss"].item() for m in MODES]
    assert len(set(losses)) == len(MODES)


def test_shard_splits_contiguously():
    slices = [shard(8, DistContext(rank=r, world_size=4)) for r in range(4)]
    assert slices == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    assert shard(5, DistContext()) == slice(0, 5)
    with pytest.raises(ValueError, match=r"10.*4|4.*10"):
        shard(10, DistContext(rank=0, world_size=4))


def test_from_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = DistContext.from_env()
    assert ctx == DistContext(rank=0, world_size=1, local_rank=0)
    assert ctx.is_main
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = DistContext.from_env()
    assert ctx == DistContext(rank=3, world_size=4, local_rank=1)
    assert not ctx.is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK"):
        DistContext.from_env()


def test_without_process_group(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert init_distributed() == DistContext()
    assert not is_distributed()
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    ids = torch.arange(6).reshape(3, 2)
    assert gather_no_grad(ids) is ids
    lin = torch.nn.Linear(2, 1)
    lin(torch.ones(1, 2)).sum().backward()
    before = [p.grad.clone() for p in lin.parameters()]
    average_gradients(lin.parameters())
    for b, p in zip(before, lin.parameters(), strict=True):
        assert torch.equal(b, p.grad)
