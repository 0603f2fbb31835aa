"""``edge train`` and ``edge data``: thin CLI over :mod:`train`. Torch is imported inside the
torch-only commands, so that ``edge`` starts where torch is not installed."""

from __future__ import annotations

from pathlib import Path

import typer

from train.datasets.errors import DatasetError
from train.tiles import default_data_root

DATA_ROOT = str(default_data_root())
AI4MARS = str(default_data_root() / "ai4mars-msl-ncam-256")

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
) -> None:
    """SimCLR on unlabelled AI4Mars train tiles; writes OUT/encoder.pt atomically each epoch.

    Example: edge train pretrain --out runs/pretrain --epochs 2 --max-minutes 20
    """
    _require_torch()
    from train.checkpoint import CheckpointError
    from train.pretrain import PretrainConfig, TrainingError, pretrain
    from train.tiles import TileDataConfig

    cfg = PretrainConfig(out_dir=str(out), preset=preset,
                         data=TileDataConfig(root=str(data), max_train_frames=max_frames),
                         batch_size=batch_size, epochs=epochs, max_minutes=max_minutes, lr=lr,
                         seed=seed, threads=threads, resume=resume)
    try:
        path = pretrain(cfg, log=typer.echo)
    except (CheckpointError, DatasetError, TrainingError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"encoder checkpoint: {path}")


@train_app.command("probe")
def probe_command(
    encoder: Path = typer.Option(Path("runs/pretrain/encoder.pt"), help="Encoder checkpoint."),
    out: Path = typer.Option(Path("runs/probe/probe.pt"), help="Probe checkpoint to write."),
    data: Path = typer.Option(Path(AI4MARS), help="AI4Mars Navcam folder."),
    label_fraction: float = typer.Option(0.1, min=0.0001, max=1.0),
    max_frames: int = typer.Option(None, min=1, help="Use only the first N frames of each split."),
    seed: int = typer.Option(0),
    class_balanced: bool = typer.Option(True, help="Weight the loss by inverse class frequency."),
    standardize: bool = typer.Option(True, help="Standardise features (folded into the head)."),
) -> None:
    """Linear head on frozen features from a fraction of the labelled train tiles; prints
    validation accuracy and mean per-class recall.

    Example: edge train probe --encoder runs/pretrain/encoder.pt --label-fraction 0.1
    """
    _require_torch()
    from train.checkpoint import CheckpointError
    from train.probe import ProbeConfig, probe
    from train.tiles import TileDataConfig

    cfg = ProbeConfig(encoder=str(encoder), out=str(out),
                      data=TileDataConfig(root=str(data), max_train_frames=max_frames,
                                          max_val_frames=max_frames),
                      label_fraction=label_fraction, seed=seed,
                      class_balanced=class_balanced, standardize=standardize)
    try:
        m = probe(cfg, log=typer.echo)
    except (DatasetError, CheckpointError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"validation accuracy {m['accuracy']:.4f}, mean recall {m['mean_recall']:.4f} "
               f"over {m['tiles']} tiles; per class {m['per_class_recall']}")
    typer.echo(f"probe checkpoint: {out}")
