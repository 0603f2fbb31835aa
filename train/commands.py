"""``edge train`` and ``edge data``: thin CLI over :mod:`train`. Torch is imported inside the
torch-only commands, so that ``edge`` starts where torch is not installed."""

from __future__ import annotations

from pathlib import Path

import typer

from train.datasets.errors import DatasetError
from train.tiles import default_data_root

DATA_ROOT = str(default_data_root())
AI4MARS = str(default_data_root() / "ai4mars-msl-ncam-256")
MSL = str(default_data_root() / "msl-v2.1")

train_app = typer.Typer(help="Contrastive pretraining and linear probes (needs the [train] extra).",
                        no_args_is_help=True)
data_app = typer.Typer(help="Inspect the datasets in ../shared/data.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise _fail("this command needs torch: pip install '.[train]'") from None


@data_app.command("info")
def info_command(
    path: Path = typer.Argument(Path(DATA_ROOT), help="A dataset folder, or a folder of them."),
) -> None:
    """Per-split, per-class counts (images; scored tiles for AI4Mars).

    Example: edge data info ../shared/data
    """
    from train.datasets.info import dataset_info

    try:
        for line in dataset_info(path):
            typer.echo(line)
    except DatasetError as exc:
        raise _fail(str(exc)) from None


@train_app.command("pretrain")
def pretrain_command(
    out: Path = typer.Option(Path("runs/pretrain"), help="Run folder (encoder.pt, config.json)."),
    data: Path = typer.Option(Path(AI4MARS), help="AI4Mars Navcam folder."),
    preset: str = typer.Option("tiny", help="Encoder preset: tiny, small, resnet18."),
    epochs: int = typer.Option(2, min=1),
    batch_size: int = typer.Option(256, min=2),
    max_minutes: float = typer.Option(None, help="Stop after this many minutes."),
    max_frames: int = typer.Option(None, min=1, help="Use only the first N train frames."),
    lr: float = typer.Option(2e-3),
    seed: int = typer.Option(0),
    threads: int = typer.Option(None, min=1, help="Torch CPU threads."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue from OUT/encoder.pt (same settings required)."),
    domains: str = typer.Option("ai4mars", help="Pool domains and proportions, e.g. "
                                "'ai4mars:0.5,msl:0.3,hirise:0.2' (domain mixing)."),
    data_root: Path = typer.Option(Path(DATA_ROOT), help="Folder holding msl-v2.1 and "
                                   "hirise-v1 (for --domains)."),
    epoch_size: int = typer.Option(None, min=2, help="Pool draws per epoch (default: pool size)."),
    max_items_per_domain: int = typer.Option(None, min=1, help="Cap each domain's items."),
    cluster_mode: str = typer.Option(None, help="False-negative correction: eliminate or "
                                     "attract (default: off)."),
    cluster_k: str = typer.Option("64", help="k-means cluster counts, comma-separated."),
    cluster_warmup: int = typer.Option(1, min=0, help="Epochs before the first clustering."),
    cluster_every: int = typer.Option(1, min=1, help="Re-cluster every N epochs."),
    monitor: str = typer.Option(None, help="Log weighted kNN val accuracy each epoch on "
                                "'ai4mars' or 'msl'."),
    device: str = typer.Option("auto", help="auto (the GPU when there is one), cpu or cuda."),
    precision: str = typer.Option("auto", help="Forward pass: auto (bfloat16 autocast on "
                                  "CUDA, float32 on a CPU), fp32, or bf16 (on a CPU, faster "
                                  "only with native bfloat16: AMX or AVX-512 BF16)."),
) -> None:
    """SimCLR on an unlabelled pool (AI4Mars tiles by default, or mixed domains), optionally
    cluster-corrected; writes OUT/encoder.pt atomically each epoch. Runs under torchrun too.

    Example: edge train pretrain --out runs/pretrain --epochs 2 --max-minutes 20
    --cluster-mode eliminate --cluster-k 32,64 --domains ai4mars:0.5,msl:0.3,hirise:0.2
    """
    _require_torch()
    from train.checkpoint import CheckpointError
    from train.clustering import ClusterConfig
    from train.losses import CLUSTER_MODES
    from train.pool import parse_domains
    from train.pretrain import PretrainConfig, TrainingError, pretrain
    from train.tiles import TileDataConfig

    cluster = None
    if cluster_mode is not None:
        if cluster_mode not in CLUSTER_MODES:
            raise _fail(f"--cluster-mode must be one of {', '.join(CLUSTER_MODES)}")
        try:
            ks = tuple(int(k) for k in cluster_k.split(","))
        except ValueError:
            raise _fail(f"--cluster-k {cluster_k!r}: expected integers like 32,64") from None
        cluster = ClusterConfig(mode=cluster_mode, ks=ks, warmup_epochs=cluster_warmup,
                                every_epochs=cluster_every)
    try:
        cfg = PretrainConfig(out_dir=str(out), preset=preset,
                             data=TileDataConfig(root=str(data), max_train_frames=max_frames),
                             batch_size=batch_size, epochs=epochs, max_minutes=max_minutes,
                             lr=lr, seed=seed, threads=threads, resume=resume,
                             domains=parse_domains(domains),
                             msl_root=str(data_root / "msl-v2.1"),
                             hirise_root=str(data_root / "hirise-v1"),
                             max_items_per_domain=max_items_per_domain, epoch_size=epoch_size,
                             cluster=cluster, monitor=monitor, device=device,
                             precision=precision)
        path = pretrain(cfg, log=typer.echo)
    except (CheckpointError, DatasetError, TrainingError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"encoder checkpoint: {path}")


@train_app.command("probe")
def probe_command(
    encoder: Path = typer.Option(Path("runs/pretrain/encoder.pt"), help="Encoder checkpoint."),
    out: Path = typer.Option(Path("runs/probe/probe.pt"), help="Probe checkpoint to write."),
    dataset: str = typer.Option("ai4mars", help="ai4mars (Navcam tiles, 4 terrain classes) or "
                                "msl-v2.1 (whole Mastcam/MAHLI images, 19 classes)."),
    data: Path = typer.Option(Path(AI4MARS), help="AI4Mars Navcam folder."),
    msl_data: Path = typer.Option(Path(MSL), help="MSL v2.1 folder (with --dataset msl-v2.1)."),
    label_fraction: float = typer.Option(0.1, min=0.0001, max=1.0),
    max_frames: int = typer.Option(None, min=1, help="Use only the first N frames of each split."),
    max_train_frames: int = typer.Option(
        None, min=1, help="AI4Mars: N train frames spread over the split."),
    max_val_frames: int = typer.Option(
        None, min=1, help="AI4Mars: N val frames spread over the split."),
    seed: int = typer.Option(0),
    class_balanced: bool = typer.Option(True, help="Weight the loss by inverse class frequency."),
    balance_power: float = typer.Option(
        1.0, min=0.0, max=1.0, help="With --class-balanced: weights (N / (K n_k)) ** power; 1 "
        "balances the classes fully, lower trades rare-class recall for accuracy."),
    standardize: bool = typer.Option(True, help="Standardise features (folded into the head)."),
    device: str = typer.Option("cpu", help="Where the encoder computes features: cpu, cuda or "
                               "auto (the head trains on the CPU)."),
) -> None:
    """Linear head on frozen features from a fraction of the labelled train items; prints
    validation accuracy and mean per-class recall. With --dataset msl-v2.1 the probe
    classifies whole images (their centred square), and its bundle does too.

    Example: edge train probe --encoder runs/pretrain/encoder.pt --label-fraction 0.1
    """
    _require_torch()
    from train.checkpoint import CheckpointError
    from train.probe import ProbeConfig, probe
    from train.tiles import TileDataConfig

    if max_frames is not None and (max_train_frames, max_val_frames) != (None, None):
        raise _fail("give --max-frames, or --max-train-frames / --max-val-frames, not both")
    cfg = ProbeConfig(encoder=str(encoder), out=str(out),
                      data=TileDataConfig(root=str(data),
                                          max_train_frames=max_train_frames or max_frames,
                                          max_val_frames=max_val_frames or max_frames),
                      dataset=dataset, msl_root=str(msl_data),
                      label_fraction=label_fraction, seed=seed,
                      class_balanced=class_balanced, balance_power=balance_power,
                      standardize=standardize, device=device)
    try:
        from train.device import pick_device

        pick_device(device)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        m = probe(cfg, log=typer.echo)
    except (DatasetError, CheckpointError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"validation accuracy {m['accuracy']:.4f}, mean recall {m['mean_recall']:.4f} "
               f"over {m['tiles']} {m['unit']}; per class {m['per_class_recall']}")
    typer.echo(f"probe checkpoint: {out}")


@train_app.command("show-augment")
def show_augment_command(
    data: Path = typer.Option(Path(AI4MARS), help="AI4Mars Navcam folder."),
    out: Path = typer.Option(Path("runs/augment.png"), help="PNG to write."),
    tiles: int = typer.Option(8, min=1, help="Rows: tiles shown."),
    views: int = typer.Option(6, min=0, help="Augmented views per tile."),
    seed: int = typer.Option(0),
    scale: int = typer.Option(4, min=1, help="Nearest-neighbour upscaling of each tile."),
    max_frames: int = typer.Option(20, min=1, help="Load N train frames spread over the split."),
) -> None:
    """Grid PNG of train tiles (first column) and their augmented views (the default
    AugmentConfig). Tiles are the most textured (highest std) of a sample spread over the
    loaded tiles.

    Example: edge train show-augment --out runs/augment.png --tiles 8 --views 6
    """
    _require_torch()
    import torch

    from train.augment import AugmentConfig
    from train.augment_preview import augment_grid, pick_textured, write_png_atomic
    from train.tiles import TileDataConfig, load_split_tiles

    cfg = TileDataConfig(root=str(data), max_train_frames=max_frames)
    try:
        tileset = load_split_tiles(cfg, "train", with_labels=False)
    except DatasetError as exc:
        raise _fail(str(exc)) from None
    picks = pick_textured(tileset.tiles, tiles)
    spec = cfg.input_spec
    grid = augment_grid(torch.from_numpy(tileset.tiles[picks]), AugmentConfig(), views=views,
                        seed=seed, scale=scale, mean=spec.mean, std=spec.std)
    path = write_png_atomic(out, grid)
    typer.echo(f"augmentation grid ({len(picks)} tiles x {views} views): {path}")


@train_app.command("throughput")
def throughput_command(
    preset: str = typer.Option("tiny,small,resnet18", help="Comma-separated encoder presets."),
    tile_pixels: int = typer.Option(32, min=4),
    batch_size: int = typer.Option(256, min=2),
    steps: int = typer.Option(10, min=1, help="Timed steps."),
    warmup: int = typer.Option(2, min=0, help="Untimed steps first."),
    threads: int = typer.Option(None, min=1, help="Torch CPU threads."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", help="auto (bfloat16 autocast on CUDA, float32 on "
                                  "a CPU), fp32 or bf16."),
    json_path: Path = typer.Option(None, "--json", help="Also write the results as JSON."),
) -> None:
    """SimCLR training images/s per preset on random tiles (two views, encoder + head,
    nt_xent, AdamW; median and p10/p90 over the timed steps); prints a Markdown table.

    Example: edge train throughput --preset tiny,small --batch-size 256 --steps 10 --threads 4
    """
    _require_torch()
    import json

    from edge.atomic_file import write_bytes_atomic
    from train.models import ENCODER_PRESETS
    from train.throughput import markdown_table, training_throughput

    presets = [p.strip() for p in preset.split(",") if p.strip()]
    if not presets:
        raise _fail("--preset names no preset")
    unknown = [p for p in presets if p not in ENCODER_PRESETS]
    if unknown:  # before any timing, not after the first presets have run
        raise _fail(f"unknown preset {unknown[0]!r}; choose from {sorted(ENCODER_PRESETS)}")
    try:
        results = [training_throughput(p, tile_pixels=tile_pixels, batch_size=batch_size,
                                       steps=steps, warmup=warmup, threads=threads,
                                       device=device, precision=precision) for p in presets]
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(markdown_table(results))
    if json_path is not None:
        write_bytes_atomic(json_path, (json.dumps({"results": results}, indent=2) + "\n")
                           .encode())
        typer.echo(f"results: {json_path}")


@train_app.command("benchmark")
def benchmark_command(
    preset: str = typer.Option("cpu-tiny",
                               help="Benchmark preset: cpu-tiny, cpu-small, gpu-resnet18."),
    seeds: str = typer.Option("0,1,2", help="Seeds, comma-separated (at least 3 for a spread)."),
    datasets: str = typer.Option("ai4mars,msl-v2.1", help="ai4mars and/or msl-v2.1."),
    methods: str = typer.Option("all", help="Comma-separated methods, or 'all'."),
    fractions: str = typer.Option("0.01,0.1,1", help="Label fractions."),
    work_dir: Path = typer.Option(Path("runs/benchmark"), help="Encoders and per-run results "
                                  "(an interrupted benchmark resumes from here)."),
    out: Path = typer.Option(Path("docs/results"), help="Where benchmark.json/.md go."),
    data_root: Path = typer.Option(Path(DATA_ROOT), help="The shared data folder."),
    threads: int = typer.Option(None, min=1, help="Torch CPU threads."),
    override: list[str] = typer.Option([], "--override", help="KEY=VALUE changing one preset "
                                       "setting (repeatable), e.g. supervised_steps=2000; the "
                                       "preset is then named after the changes."),
) -> None:
    """Supervised vs SimCLR vs cluster-corrected vs domain-mixed pretraining, linear probes at
    several label fractions, mean and spread over seeds, on validation data.

    Example: edge train benchmark --preset cpu-tiny --seeds 0,1,2 --threads 2
    """
    _require_torch()
    import sys

    from train.benchmark import METHODS, BenchmarkConfig, parse_overrides, run_benchmark
    from train.checkpoint import CheckpointError
    from train.pretrain import TrainingError

    try:
        overrides = parse_overrides(override)
        if overrides:
            overrides["name"] = preset + "".join(f"+{item.strip()}" for item in override)
        cfg = BenchmarkConfig(
            preset=preset, seeds=tuple(int(s) for s in seeds.split(",")),
            datasets=tuple(d.strip() for d in datasets.split(",")),
            methods=METHODS if methods == "all" else tuple(m.strip() for m in methods.split(",")),
            fractions=tuple(float(f) for f in fractions.split(",")), work_dir=str(work_dir),
            out_dir=str(out), data_root=str(data_root), threads=threads,
            command="edge " + " ".join(sys.argv[1:]), preset_overrides=overrides)
        records = run_benchmark(cfg, log=typer.echo)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except (CheckpointError, DatasetError, TrainingError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{len(records)} records: {out / 'benchmark.json'}, {out / 'benchmark.md'}")


@train_app.command("finetune")
def finetune_command(
    encoder: Path = typer.Option(..., help="Encoder checkpoint (edge train pretrain)."),
    out: Path = typer.Option(None, help="Write the fine-tuned model here, as a probe "
                             "checkpoint that edge export onnx/distill take."),
    dataset: str = typer.Option("ai4mars", help="ai4mars or msl-v2.1."),
    label_fraction: float = typer.Option(0.1, min=0.0001, max=1.0),
    steps: int = typer.Option(400, min=1),
    lr: float = typer.Option(5e-4),
    probe_first: bool = typer.Option(True, help="Start the head from the linear probe on the "
                                     "frozen features (LP-FT) rather than at random."),
    seed: int = typer.Option(0),
    data_root: Path = typer.Option(Path(DATA_ROOT), help="The shared data folder."),
    max_frames: int = typer.Option(None, min=1, help="AI4Mars: frames per split, spread."),
    threads: int = typer.Option(None, min=1, help="Torch CPU threads."),
    json_out: Path = typer.Option(None, "--json", help="Also write the metrics here."),
) -> None:
    """Fine-tune a pretrained encoder end to end with a linear head on a label fraction; prints
    validation accuracy and mean per-class recall, and with --out writes the model.

    Example: edge train finetune --encoder runs/pretrain/encoder.pt --label-fraction 0.1
    --out runs/finetune/finetune.pt
    """
    _require_torch()
    import torch

    from edge.outputs import write_json_atomic
    from train.checkpoint import CheckpointError
    from train.finetune import FinetuneConfig, finetune
    from train.tiles import TileDataConfig

    if threads:
        torch.set_num_threads(threads)
    cfg = FinetuneConfig(
        encoder=str(encoder), out=str(out) if out else None,
        data=TileDataConfig(root=str(data_root / "ai4mars-msl-ncam-256"),
                            max_train_frames=max_frames, max_val_frames=max_frames),
        dataset=dataset, msl_root=str(data_root / "msl-v2.1"), label_fraction=label_fraction,
        seed=seed, steps=steps, lr=lr, probe_first=probe_first)
    try:
        metrics = finetune(cfg, log=typer.echo)
    except (CheckpointError, DatasetError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{metrics['dataset']} validation: accuracy {metrics['accuracy']:.4f}, mean "
               f"recall {metrics['mean_recall']:.4f} ({metrics['labelled_items']} labelled "
               "items)")
    if out:
        typer.echo(f"fine-tuned checkpoint: {out}")
    if json_out:
        write_json_atomic(json_out, metrics)
