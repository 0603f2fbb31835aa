"""``edge export``: thin CLI over :mod:`export` (torch and onnx imported inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.trt_cache import DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_MB
from train.tiles import default_data_root

app = typer.Typer(help="Export trained models as bundles for the edge runtime (onnx needs "
                       "the [train] extra), and build TensorRT engines on the target (tensorrt "
                       "needs TensorRT 10, see docs/jetson.md).", no_args_is_help=True)


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


@app.command("tensorrt")
def tensorrt_command(
    bundle: str = typer.Argument(..., help="Bundle folder, or the name of a shipped bundle."),
    precision: str = typer.Option(None, "--precision",
                                  help="fp16, int8 (explicit, from the model's Q/DQ nodes) or "
                                       "fp32 (default: int8 for a Q/DQ model, else fp16)."),
    max_batch: int = typer.Option(DEFAULT_MAX_BATCH, "--max-batch", min=1,
                                  help="Largest batch of tiles per engine call; larger frames "
                                       "run in chunks."),
    workspace_mb: int = typer.Option(DEFAULT_WORKSPACE_MB, "--workspace-mb", min=1,
                                     help="TensorRT builder workspace limit, MiB."),
    cache: Path = typer.Option(None, "--cache",
                               help="Engine cache folder (default $EDGE_ENGINE_CACHE, else "
                                    "~/.cache/mars-edge/engines)."),
    check_tiles: int = typer.Option(64, "--check-tiles", min=0,
                                    help="Random tiles to compare with ONNX Runtime (0: none)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even if a cached engine fits."),
) -> None:
    """Build (or find) the TensorRT engine of a bundle on this machine's GPU, check it against
    ONNX Runtime, and print its path in the engine cache. Needs TensorRT 10 (JetPack 6.1/6.2)
    and cuda-python, not the [train] extra; see docs/jetson.md.

    Example: edge export tensorrt runs/bundle --precision fp16
    """
    from edge.bundle import BundleError, load_bundle
    from edge.trt_cache import PRECISIONS, remove_entry
    from edge.trt_qdq import has_qdq_nodes

    def warn(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    if precision is not None and precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    try:
        loaded = load_bundle(bundle)
    except BundleError as exc:
        raise _fail(str(exc)) from None
    if precision == "int8":
        try:
            quantized = has_qdq_nodes(loaded.model_path.read_bytes())
        except ValueError as exc:
            warn(f"cannot tell whether {loaded.model_path} carries Q/DQ nodes ({exc}); "
                 "building INT8 anyway")
            quantized = True
        if not quantized:
            raise _fail(f"{loaded.model_path} has no QuantizeLinear/DequantizeLinear nodes: INT8 "
                        "here is explicit quantization only (no calibration); export a Q/DQ "
                        "model or use --precision fp16")
    from edge.trt_runner import TensorRTRunner, verify_against_onnxruntime

    try:
        runner = TensorRTRunner(loaded, precision=precision, max_batch=max_batch,
                                workspace_mb=workspace_mb, cache_dir=cache, rebuild=rebuild,
                                warn=warn)
    except BundleError as exc:
        raise _fail(str(exc)) from None
    source, key = runner.source, runner.key
    how = f"built in {runner.build_seconds:.1f} s" if source.built else "found in the cache"
    profile = key.profile
    typer.echo(f"engine {source.path or '(kept in memory: no writable cache folder)'}")
    typer.echo(f"  {how}; {key.precision}, TensorRT {key.tensorrt_version}, {key.gpu_name} "
               f"(compute {key.compute_capability}), batch {profile.min_batch}/"
               f"{profile.opt_batch}/{profile.max_batch}, key {key.key[:16]}...")
    try:
        if check_tiles:
            comparison = verify_against_onnxruntime(loaded, runner, check_tiles)
            typer.echo(f"  {comparison.summary()}")
            if not comparison.within_tolerance:
                if source.path is not None:
                    remove_entry(source.path)
                raise _fail(f"TensorRT disagrees with ONNX Runtime beyond the {key.precision} "
                            "tolerance; the engine was removed from the cache")
    except BundleError as exc:
        raise _fail(str(exc)) from None
    finally:
        runner.close()
