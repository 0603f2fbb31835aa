"""SimCLR pretraining of a tile encoder on an unlabelled pool, with the optional
cluster-corrected loss (false-negative elimination or attraction), domain mixing, a weighted
kNN monitor, and torchrun data parallelism.

Tensors: pool items (N, 1, S, S) -> a global batch of B indices per step (this rank takes
B / world_size of them) -> two views -> encoder (b, D) -> projection (b, 128) -> gathered
(B, 128) on every rank -> NT-Xent over the global batch (see train/distributed.py).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.augment import AugmentConfig, augment
from train.checkpoint import git_revision, load_checkpoint, save_atomic
from train.clustering import (
    ClusterConfig,
    PairTally,
    cluster_assignments,
    cluster_purity,
    pick_backend,
)
from train.device import autocast_context, autocast_dtype, cpu_precision_note, pick_device
from train.distributed import (
    DistContext,
    average_gradients,
    gather_no_grad,
    gather_with_grad,
    init_distributed,
    shard,
)
from train.knn_monitor import KnnMonitor
from train.losses import cluster_pair_mask, nt_xent
from train.models import ENCODER_PRESETS, Encoder, ProjectionHead
from train.pool import Pool, PoolConfig, epoch_indices, load_pool
from train.probe import extract_features
from train.tiles import TileDataConfig, default_data_root

POOL_ON_GPU_SHARE = 0.25


class TrainingError(Exception):
    """Training cannot go on (for example, the loss became non-finite)."""


@dataclass
class PretrainConfig:
    """A pretraining run. ``max_minutes`` stops the run once that time is spent (mid-epoch
    if need be); the checkpoint then holds the last completed step.

    ``domains`` draws the pool from several image sources in set proportions (``data`` gives
    the AI4Mars folder and the input size for all); ``epoch_size`` is the number of pool draws
    per epoch (None: the pool's size); ``cluster`` turns on the false-negative correction;
    ``monitor`` ('ai4mars' or 'msl') logs a weighted kNN accuracy on validation each epoch;
    ``device``: ``auto`` (the GPU of this process's local rank when CUDA is available, else the
    CPU), ``cpu`` (also under torchrun: gloo) or ``cuda``; ``check_every``: the loss stays on
    the device and is checked for non-finite values every that many steps and at the end of
    each epoch (a GPU need not wait for the host each step; no checkpoint is written between
    checks, so a non-finite model is never saved); ``precision``: the forward pass's
    arithmetic, ``auto`` (bfloat16 autocast on CUDA, float32 on a CPU), ``fp32`` or ``bf16``
    (:func:`train.device.autocast_dtype`; bf16 on a CPU pays only with native bfloat16)."""

    out_dir: str = "runs/pretrain"
    preset: str = "tiny"
    data: TileDataConfig = field(default_factory=TileDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 256
    epochs: int = 5
    max_minutes: float | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    seed: int = 0
    threads: int | None = None
    resume: bool = False
    domains: tuple[tuple[str, float], ...] = (("ai4mars", 1.0),)
    msl_root: str = str(default_data_root() / "msl-v2.1")
    hirise_root: str = str(default_data_root() / "hirise-v1")
    max_items_per_domain: int | None = None
    epoch_size: int | None = None
    cluster: ClusterConfig | None = None
    monitor: str | None = None
    monitor_max_items: int = 4000
    device: str = "auto"
    check_every: int = 25
    precision: str = "auto"

    def pool_config(self) -> PoolConfig:
        """The pool this run draws from."""
        return PoolConfig(domains=self.domains, ai4mars=self.data, msl_root=self.msl_root,
                          hirise_root=self.hirise_root,
                          max_items_per_domain=self.max_items_per_domain)


def _save(cfg: PretrainConfig, encoder: Encoder, history: list[dict], path: Path,
          train_state: dict[str, Any]) -> None:
    save_atomic({
        "kind": "encoder",
        "encoder_config": encoder.config.to_dict(),
        "state_dict": encoder.state_dict(),
        "input": asdict(cfg.data.input_spec),
        "tiling": asdict(cfg.data.tiling),
        "config": asdict(cfg),
        "history": history,
        "git_revision": git_revision(),
        "torch": str(torch.__version__),
        # Everything --resume needs to continue exactly where this checkpoint stands.
        "train_state": train_state,
    }, path)


RESUME_MUST_MATCH = ("preset", "batch_size", "epochs", "lr", "weight_decay", "temperature", "seed",
                     "domains", "max_items_per_domain", "epoch_size", "cluster", "precision")
#: What a checkpoint written before a setting existed ran with.
RESUME_DEFAULTS = {"precision": "auto"}


def _check_resumable(cfg: PretrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run made with different settings (it would not be the same run)."""
    if "train_state" not in ckpt:
        raise TrainingError(f"{path}: holds no training state to resume from")
    old = ckpt["config"]
    new = asdict(cfg)
    diff = [f"{k}: {old.get(k, RESUME_DEFAULTS.get(k))!r} -> {new[k]!r}"
            for k in RESUME_MUST_MATCH
            if _plain(old.get(k, RESUME_DEFAULTS.get(k))) != _plain(new[k])]
    if old.get("data") != asdict(cfg.data):
        diff.append("data settings differ")
    if diff:
        raise TrainingError(f"{path}: cannot resume with different settings ({'; '.join(diff)})")


def _plain(value: Any) -> Any:
    """Tuples and lists compare equal after a checkpoint round trip."""
    return json.loads(json.dumps(value))


def _features(encoder: Encoder, items: np.ndarray, device: torch.device) -> np.ndarray:
    """Un-augmented items (N, C, S, S) -> encoder features float32 (N, D), eval mode."""
    return extract_features(encoder, items, device=device).numpy()


def _cluster_pool(encoder: Encoder, pool: Pool, cfg: PretrainConfig, epoch: int,
                  ctx: DistContext, device: torch.device) -> tuple[np.ndarray, dict[str, Any]]:
    """Cluster ids int64 (N, len(ks)) for every pool item, from features of un-augmented items.
    Each rank embeds a slice of the pool; the main rank clusters all of them; ids are shared."""
    assert cfg.cluster is not None
    if ctx.world_size > 1:
        # BatchNorm statistics are per rank (each saw only its shards): embed every slice with
        # rank 0's, i.e. with the model that is saved (as DDP's broadcast_buffers would).
        for buf in encoder.buffers():
            torch.distributed.broadcast(buf, src=0)
    n = len(pool.items)
    per_rank = -(-n // ctx.world_size)
    lo, hi = min(n, ctx.rank * per_rank), min(n, (ctx.rank + 1) * per_rank)
    local = torch.from_numpy(_features(encoder, pool.items[lo:hi], device))
    if ctx.world_size > 1:
        local = torch.cat([local, local.new_zeros(per_rank - len(local), local.shape[1])])
        feats = gather_no_grad(local.to(device)).cpu().numpy()[:n]
    else:
        feats = local.numpy()
    ids = np.zeros((n, len(cfg.cluster.ks)), dtype=np.int64)
    backend = pick_backend(str(device))
    if ctx.is_main:
        ids = cluster_assignments(feats, cfg.cluster.ks, seed=cfg.seed * 1000 + epoch,
                                  iterations=cfg.cluster.iterations, backend=backend,
                                  device=str(device))
    if ctx.world_size > 1:
        shared = torch.from_numpy(ids).to(device)
        torch.distributed.broadcast(shared, src=0)
        ids = shared.cpu().numpy()
    stats: dict[str, Any] = {f"purity_k{k}": round(cluster_purity(ids[:, j], pool.labels), 4)
                             for j, k in enumerate(cfg.cluster.ks)}
    stats["cluster_backend"] = backend
    return ids, stats


def _rank_rng_states(gen: torch.Generator, ctx: DistContext) -> list[dict[str, torch.Tensor]]:
    """Each rank's augmentation generator and torch RNG state, in rank order, so that a resumed
    multi-rank run continues every rank's own random stream."""
    state = {"generator": gen.get_state(), "torch_rng": torch.get_rng_state()}
    if ctx.world_size == 1:
        return [state]
    states: list[Any] = [None] * ctx.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def pretrain(cfg: PretrainConfig, log: Any = print, pool: Pool | None = None) -> Path:
    """Run SimCLR (optionally cluster-corrected) on the pool (``pool``, if given, must be
    ``cfg.pool_config()`` already loaded); returns the path of ``encoder.pt``.

    Channels-last, float32 on a CPU and bfloat16 autocast on CUDA unless ``cfg.precision``
    says otherwise (see README). Under torchrun each rank takes its shard of every global batch.
    """
    if cfg.preset not in ENCODER_PRESETS:
        raise TrainingError(
            f"unknown preset '{cfg.preset}' (choose from {sorted(ENCODER_PRESETS)})")
    try:
        device = pick_device(cfg.device, DistContext.from_env().local_rank)
        amp = autocast_dtype(device, cfg.precision)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    ctx = init_distributed("gloo" if device.type == "cpu" else "nccl")
    if not ctx.is_main:
        log = _silent
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        (out / "config.json").write_text(json.dumps(
            asdict(cfg) | {"git_revision": git_revision()}, indent=2))
    t_load = time.perf_counter()
    pool = pool if pool is not None else load_pool(cfg.pool_config(), log=log)
    weights = cfg.pool_config().weights()
    if amp is not None and device.type == "cpu":
        log(cpu_precision_note())
    log(f"loaded a pool of {len(pool.items)} unlabelled items in "
        f"{time.perf_counter() - t_load:.1f} s")
    epoch_size = cfg.epoch_size or len(pool.items)
    if min(len(pool.items), epoch_size) < 2 * cfg.batch_size:
        raise TrainingError(f"only {min(len(pool.items), epoch_size)} items per epoch: need at "
                            f"least two batches of {cfg.batch_size}")
    if cfg.batch_size % ctx.world_size:
        raise TrainingError(f"batch size {cfg.batch_size} is not divisible by the "
                            f"{ctx.world_size} ranks")
    monitor = KnnMonitor.build(cfg.monitor, cfg.data, cfg.msl_root, cfg.monitor_max_items) \
        if cfg.monitor and ctx.is_main else None
    items = _stage_pool(torch.from_numpy(pool.items), device, log)

    encoder = Encoder(ENCODER_PRESETS[cfg.preset]).to(device, memory_format=torch.channels_last)
    head = ProjectionHead(encoder.config.feature_dim).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = epoch_size // cfg.batch_size
    total = steps_per_epoch * cfg.epochs

    def lr_factor(s: int) -> float:
        """Linear warm-up over min(100, total / 10) steps, then cosine decay to zero."""
        warmup = max(1, min(100, total // 10))
        return min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    # The augmentation draws its random numbers on the device that holds the batch (a CPU
    # generator cannot serve CUDA tensors).
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + ctx.rank)
    ckpt = out / "encoder.pt"
    history: list[dict] = []
    step = first_epoch = 0
    cluster_ids: np.ndarray | None = None
    if cfg.resume and ckpt.exists():
        saved = load_checkpoint(ckpt, "encoder")
        _check_resumable(cfg, saved, ckpt)
        state = saved["train_state"]
        encoder.load_state_dict(saved["state_dict"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        own = state.get("rank_rng", [])
        own = own[ctx.rank] if len(own) == ctx.world_size else state
        gen.set_state(own["generator"])
        torch.set_rng_state(own["torch_rng"])
        cluster_ids = state.get("cluster_ids")
        history, step, first_epoch = saved["history"], state["step"], state["next_epoch"]
        log(f"resuming from {ckpt}: epoch {first_epoch} of {cfg.epochs}, step {step}")
    elif cfg.resume:
        log(f"no checkpoint at {ckpt}: starting from scratch")
    local = shard(cfg.batch_size, ctx)
    start = time.perf_counter()
    deadline = start + cfg.max_minutes * 60 if cfg.max_minutes else None
    for epoch in range(first_epoch, cfg.epochs):
        record: dict[str, Any] = {"epoch": epoch}
        if cfg.cluster and cfg.cluster.due(epoch):
            t_c = time.perf_counter()
            cluster_ids, stats = _cluster_pool(encoder, pool, cfg, epoch, ctx, device)
            record |= stats | {"cluster_s": round(time.perf_counter() - t_c, 1)}
        use_clusters = cfg.cluster is not None and cluster_ids is not None
        ids_on_device = torch.from_numpy(cluster_ids).to(device) if use_clusters else None
        tally = PairTally()
        encoder.train()
        head.train()
        order = torch.from_numpy(epoch_indices(pool.sizes(), weights, epoch_size, cfg.seed, epoch))
        step_losses = torch.zeros(steps_per_epoch, device=device)
        done = checked = 0
        t_epoch = time.perf_counter()
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            batch = items[idx[local]].to(device, non_blocking=True)
            v1 = augment(batch, cfg.augment, gen).contiguous(memory_format=torch.channels_last)
            v2 = augment(batch, cfg.augment, gen).contiguous(memory_format=torch.channels_last)
            with autocast_context(device, amp):
                z1, z2 = head(encoder(v1)), head(encoder(v2))
            z1, z2 = gather_with_grad(z1.float()), gather_with_grad(z2.float())
            if ids_on_device is None:
                loss = nt_xent(z1, z2, cfg.temperature)
            else:
                assert cluster_ids is not None and cfg.cluster is not None
                host_ids = torch.from_numpy(cluster_ids[idx.numpy()])
                tally.add(cluster_pair_mask(host_ids, cfg.cluster.mode).numpy(),
                          pool.labels[idx.numpy()])
                loss = nt_xent(z1, z2, cfg.temperature, cluster_ids=ids_on_device[idx.to(device)],
                               mode=cfg.cluster.mode)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(params)
            opt.step()
            sched.step()
            step += 1
            step_losses[i] = loss.detach()
            done = i + 1
            late = _out_of_time(deadline, ctx, device)
            if late or done - checked >= cfg.check_every or done == steps_per_epoch:
                _check_finite(step_losses[checked:done], checked, epoch, ckpt)
                checked = done
            if late:
                break
        now = time.perf_counter()
        record |= {"steps": done, "loss": float(step_losses[:done].mean()),
                   "images_per_s": round(done * cfg.batch_size / (now - t_epoch), 1),
                   "elapsed_s": round(now - start, 1)}
        if use_clusters:
            record |= {k: round(v, 4) for k, v in tally.summary().items()}
        if monitor is not None:
            record["knn_accuracy"] = round(monitor.accuracy(
                lambda x: _features(encoder, x, device)), 4)
        history.append(record)
        log(json.dumps(record))
        # A run stopped mid-epoch by its time budget resumes at the next epoch.
        rank_rng = _rank_rng_states(gen, ctx)  # every rank takes part in the gather
        if ctx.is_main:
            _save(cfg, encoder, history, ckpt, {
                "next_epoch": epoch + 1, "step": step, "head": head.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "rank_rng": rank_rng, "cluster_ids": cluster_ids,
            })
        if _out_of_time(deadline, ctx, device):
            log(f"time budget of {cfg.max_minutes} min spent after {step} steps")
            break
    return ckpt


def _stage_pool(items: torch.Tensor, device: torch.device, log: Any) -> torch.Tensor:
    """The pool (N, C, S, S) that batches are drawn from: on a GPU, moved there when it takes at
    most ``POOL_ON_GPU_SHARE`` of the free GPU memory (each step then gathers its batch on the
    device instead of copying it from pageable host memory); otherwise left on the host."""
    if device.type != "cuda":
        return items
    free, _total = torch.cuda.mem_get_info(device)
    if items.nbytes > POOL_ON_GPU_SHARE * free:
        log(f"pool of {items.nbytes / 2**20:.0f} MiB stays in host memory "
            f"({free / 2**20:.0f} MiB free on {device})")
        return items
    return items.to(device)


def _check_finite(losses: torch.Tensor, first_step: int, epoch: int, ckpt: Path) -> None:
    """Raise TrainingError naming the first non-finite loss among ``losses`` (n,), the losses of
    steps ``first_step`` .. ``first_step + n - 1`` of ``epoch`` (one device-to-host sync)."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise TrainingError(f"loss became {losses[i].item()} at epoch {epoch} step "
                            f"{first_step + i}; last good checkpoint: "
                            f"{ckpt if ckpt.exists() else 'none'}")


def _out_of_time(deadline: float | None, ctx: DistContext, device: torch.device) -> bool:
    """Whether the time budget is spent on any rank: under torchrun all ranks must stop at the
    same step, or those still going would wait forever in the next gather."""
    if not deadline:
        return False
    late = time.perf_counter() > deadline
    if ctx.world_size > 1:
        flag = torch.tensor([float(late)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        late = bool(flag.item())
    return late


def _silent(*_args: object) -> None:
    """The log of non-main ranks."""

