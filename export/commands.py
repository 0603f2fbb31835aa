"""``edge export``: thin CLI over :mod:`export` (torch and onnx imported inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer

from train.tiles import default_data_root

app = typer.Typer(help="Export trained models as bundles for the edge runtime "
                       "(needs the [train] extra).", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


@app.command("onnx")
def onnx_command(
    checkpoint: Path = typer.Option(Path("runs/probe/probe.pt"), help="Probe checkpoint."),
    out: Path = typer.Option(Path("runs/bundle"), help="Bundle folder to write."),
    name: str = typer.Option("terrain", help="Model name recorded in the manifest."),
    data: Path = typer.Option(Path(default_data_root() / "ai4mars-msl-ncam-256"),
                              help="AI4Mars folder whose val tiles the check runs on."),
    check_frames: int = typer.Option(16, min=0, help="Val frames to compare torch and ONNX on "
                                                      "(0: random tiles)."),
    opset: int = typer.Option(17, min=17),
) -> None:
    """Encoder + linear head to ONNX, compared with torch on real tiles, written as a bundle
    (model.onnx + manifest.json).

    Example: edge export onnx --checkpoint runs/probe/probe.pt --out runs/bundle
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise _fail("this command needs torch and onnx: pip install '.[train]'") from None
    from export.onnx_export import ExportError, OnnxExportConfig, export_bundle
    from train.checkpoint import CheckpointError, load_checkpoint
    from train.datasets.errors import DatasetError
    from train.tiles import TileDataConfig, load_split_tiles

    try:
        tiles = None
        if check_frames:
            ckpt = load_checkpoint(checkpoint, "probe")
            til, inp = ckpt["tiling"], ckpt["input"]
            cfg = TileDataConfig(root=str(data), tile_pixels=inp["tile_pixels"],
                                 reference_width=til["reference_width"], tile=til["tile"],
                                 stride=til["stride"], max_val_frames=check_frames)
            tiles = load_split_tiles(cfg, "val", with_labels=False).tiles
        bundle = export_bundle(OnnxExportConfig(checkpoint=str(checkpoint), out_dir=str(out),
                                                name=name, opset=opset), tiles)
    except (CheckpointError, DatasetError, ExportError) as exc:
        raise _fail(str(exc)) from None
    diff = bundle.manifest.provenance["onnx"]["max_abs_diff_vs_torch"]
    typer.echo(f"bundle {bundle.path}: sha256 {bundle.manifest.sha256[:16]}..., "
               f"max |torch - onnxruntime| {diff:.2e}")
