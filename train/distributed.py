"""Multi-process (torchrun) support for the contrastive loss.

Launched with ``torchrun --nproc-per-node W ...`` every process reads its rank from the
environment (``DistContext.from_env``) and ``init_distributed`` joins the process group (gloo
on CPU, nccl on CUDA). Without torchrun (world size 1) every function here is a no-op or an
identity, so the single-process path is unchanged.

The recipe for ``train.losses.nt_xent`` across W ranks with a global batch of N images
(N divisible by W, B = N / W per rank)::

    sl = shard(N, ctx)                          # this rank's B images
    z1, z2 = model(view1[sl]), model(view2[sl]) # (B, D) each, local
    z1, z2 = gather_with_grad(z1), gather_with_grad(z2)  # (N, D), rank order
    ids = gather_no_grad(cluster_ids[sl])       # (N, M) int64, or None
    loss = nt_xent(z1, z2, temperature, ids, mode)  # the global loss, same on every rank
    loss.backward()
    average_gradients(model.parameters())       # what DDP would do
    optimizer.step()

Why this gives exactly the single-process gradient of the global loss L: every rank
computes the same L on the gathered tensors. The backward of ``all_gather`` sums, over
the W ranks, the gradient each rank's copy of L sends to this rank's slice, i.e. W identical
terms, so rank r ends with W * dL/dz_r and its parameter gradient is W times rank r's share
of dL/dtheta. Averaging over ranks gives sum_r W * share_r / W = dL/dtheta. (Wrapping the
model in DistributedDataParallel instead of calling ``average_gradients`` does the same
averaging.) Models with BatchNorm see only their local B images unless converted with
``torch.nn.SyncBatchNorm``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place among ``world_size`` processes (torchrun's RANK etc.)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Read RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them (0, 1, 0 when absent)."""
        ctx = cls(rank=int(os.environ.get("RANK", "0")),
                  world_size=int(os.environ.get("WORLD_SIZE", "1")),
                  local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        if ctx.world_size < 1 or not 0 <= ctx.rank < ctx.world_size:
            raise ValueError(f"RANK={ctx.rank} is not in [0, WORLD_SIZE={ctx.world_size})")
        return ctx


def is_distributed() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(backend: str | None = None) -> DistContext:
    """Join torchrun's process group when WORLD_SIZE > 1 and none exists yet.

    ``backend`` defaults to nccl when CUDA is available, else gloo. With CUDA the process's
    device is set to ``cuda:LOCAL_RANK``. Returns the context from the environment (or, when a
    group already exists, from the group itself).
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                           local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    ctx = DistContext.from_env()
    if ctx.world_size > 1:
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
    return ctx


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each rank -> (B * W, ...), concatenated in rank order, differentiable.

    The backward sums the gradients that all ranks send to this rank's slice (see the module
    docstring). Every rank must pass the same shape. Identity when not distributed.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces (sums) the incoming gradient over ranks and
    returns this rank's slice of it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return gather_no_grad(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) on each rank -> (B * W, ...) in rank order, without autograd (e.g. int64
    cluster ids (B, M)). Every rank must pass the same shape. Identity when not distributed.
    """
    if not is_distributed():
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace every ``.grad`` by its mean over ranks (all_reduce SUM / W), as DDP does.

    Parameters without a gradient are skipped (every rank must skip the same ones). A no-op
    when not distributed.
    """
    if not is_distributed():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def shard(n: int, ctx: DistContext) -> slice:
    """The contiguous slice of a global batch of ``n`` that ``ctx.rank`` takes: n / W items.

    Raises ValueError unless ``n`` is divisible by the world size (the gathers need equal
    shapes on every rank).
    """
    if n % ctx.world_size:
        raise ValueError(f"global batch {n} is not divisible by world size {ctx.world_size}")
    per_rank = n // ctx.world_size
    return slice(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
