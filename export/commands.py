"""``edge export``: thin CLI over :mod:`export` (torch and onnx imported inside commands)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from edge.trt_cache import DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_MB
from train.tiles import TileDataConfig, default_data_root

app = typer.Typer(help="Export trained models as bundles for the edge runtime (onnx needs "
                       "the [train] extra), and build TensorRT engines on the target (tensorrt "
                       "needs TensorRT 10, see docs/jetson.md).", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _require_train_extra() -> None:
    """Exit 1 with the install hint when torch or onnx (the [train] extra) is missing."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise _fail("this command needs torch and onnx: pip install '.[train]'") from None


def _checkpoint_kind(path: Path) -> str | None:
    """The ``kind`` of a project checkpoint, or None when it cannot be read (the loader then
    reports the problem)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # torch raises many types for bad files
        return None
    return obj.get("kind") if isinstance(obj, dict) else None


@app.command("onnx")
def onnx_command(
    checkpoint: Path = typer.Option(Path("runs/probe/probe.pt"),
                                    help="Probe or student checkpoint."),
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
    _require_train_extra()
    from export.onnx_export import ExportError, OnnxExportConfig, export_bundle
    from train.checkpoint import CheckpointError, load_checkpoint
    from train.datasets.errors import DatasetError
    from train.tiles import TileDataConfig, load_split_tiles

    try:
        if _checkpoint_kind(checkpoint) == "student":
            from export.student_export import export_student_bundle

            made = export_student_bundle(checkpoint, out, TileDataConfig(root=str(data)),
                                         check_frames, name=name, opset=opset)
            diff = made.manifest.provenance["onnx"]["max_abs_diff_vs_torch"]
            typer.echo(f"bundle {made.path}: sha256 {made.manifest.sha256[:16]}..., "
                       f"max |torch - onnxruntime| {diff:.2e}")
            return
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
    from edge.trt_cache import PRECISION_ENV, PRECISIONS, remove_entry
    from edge.trt_qdq import int8_source_problem

    def warn(message: str) -> None:
        typer.echo(f"warning: {message}", err=True)

    if precision is not None and precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    try:
        loaded = load_bundle(bundle)
    except BundleError as exc:
        raise _fail(str(exc)) from None
    # Before TensorRT is needed; the runner checks the precision it resolves
    # ($EDGE_TRT_PRECISION included) again.
    problem = int8_source_problem(loaded.model_path.read_bytes(),
                                  precision or os.environ.get(PRECISION_ENV, "").strip().lower())
    if problem:
        raise _fail(f"{loaded.model_path}: {problem}")
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
                if source.path is None:
                    what = "the engine was not cached"
                elif remove_entry(source.path):
                    what = "the engine was removed from the cache"
                else:
                    what = (f"the engine {source.path} could not be removed (read-only "
                            "folder?): remove it, or --rebuild")
                raise _fail(f"TensorRT disagrees with ONNX Runtime beyond the {key.precision} "
                            f"tolerance; {what}")
    except BundleError as exc:
        raise _fail(str(exc)) from None
    finally:
        runner.close()


def _numbers(text: str, what: str, cast: type, kind: str) -> tuple:
    """The comma-separated values of ``text`` as ``cast``; exit 1 naming ``what`` on a bad
    one."""
    try:
        return tuple(cast(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise _fail(f"{what} must be comma-separated {kind}, got '{text}'") from None


def _ints(text: str, what: str) -> tuple[int, ...]:
    values = _numbers(text, what, int, "integers")
    if not values or min(values) < 1:
        raise _fail(f"{what} must be positive integers, got '{text}'")
    return values


@app.command("distill")
def distill_command(
    teacher: Path = typer.Option(Path("runs/probe/probe.pt"), help="Teacher probe checkpoint."),
    out: Path = typer.Option(Path("runs/distill/student.pt"), help="Student checkpoint to write."),
    bundle: Path = typer.Option(None, help="Also export the student as an fp32 bundle here."),
    data: Path = typer.Option(Path(default_data_root() / "ai4mars-msl-ncam-256"),
                              help="AI4Mars folder (train tiles unlabelled, val for scoring)."),
    widths: str = typer.Option("16,32,64", help="Channels per stage."),
    blocks: str = typer.Option("1,1,1", help="Basic blocks per stage."),
    tile_pixels: int = typer.Option(
        32, min=8, help="The student's input tile size. The teacher sees the same tiles at its "
                        "own size (e.g. a 64-px ResNet-18 teaching a 32-px student)."),
    temperature: float = typer.Option(2.0, min=0.1, help="Softmax temperature of the KL term."),
    feature_weight: float = typer.Option(0.0, min=0.0,
                                         help="Weight of the feature cosine term (0: logits)."),
    hard_weight: float = typer.Option(
        0.0, min=0.0, help="Weight of a cross-entropy term on the teacher's decision (argmax)."),
    epochs: int = typer.Option(10, min=1),
    max_minutes: float = typer.Option(None, help="Training time budget (minutes)."),
    batch_size: int = typer.Option(256, min=1),
    lr: float = typer.Option(3e-3, min=0.0),
    threads: int = typer.Option(2, min=1),
    max_train_frames: int = typer.Option(None, min=1, help="Train frames, spread over the split."),
    max_val_frames: int = typer.Option(None, min=1, help="Val frames, spread over the split."),
    teacher_cache: Path = typer.Option(None, help="npz cache of the teacher's train outputs."),
    seed: int = typer.Option(0),
    resample_prob: float = typer.Option(
        0.0, min=0.0, max=1.0,
        help="Share of training tiles replaced by a cubic-up/area-down resampled version "
             "(robustness to camera resolution); target: the teacher on the clean tile."),
) -> None:
    """Distil the teacher (encoder + linear head) into a small student on unlabelled train
    tiles; scores student vs teacher on the val split.

    Example: edge export distill --out runs/distill/student.pt --max-minutes 10
    """
    _require_train_extra()
    from export.distill import DistillConfig, distill
    from export.onnx_export import ExportError
    from export.student_export import export_student_bundle
    from train.checkpoint import CheckpointError
    from train.datasets.errors import DatasetError
    from train.tiles import TileDataConfig

    data_cfg = TileDataConfig(root=str(data), tile_pixels=tile_pixels,
                              max_train_frames=max_train_frames, max_val_frames=max_val_frames)
    cfg = DistillConfig(teacher=str(teacher), out=str(out), data=data_cfg,
                        widths=_ints(widths, "--widths"), blocks=_ints(blocks, "--blocks"),
                        temperature=temperature, feature_weight=feature_weight,
                        hard_weight=hard_weight, epochs=epochs,
                        max_minutes=max_minutes, batch_size=batch_size, lr=lr, threads=threads,
                        seed=seed, teacher_cache=str(teacher_cache) if teacher_cache else None,
                        resample_prob=resample_prob)
    if len(cfg.widths) != len(cfg.blocks):
        raise _fail("--widths and --blocks need the same number of stages")
    try:
        metrics = distill(cfg, log=lambda m: typer.echo(m, err=True))
        if bundle is not None:
            made = export_student_bundle(out, bundle, data_cfg)
            typer.echo(f"bundle {made.path}: sha256 {made.manifest.sha256[:16]}...")
    except (CheckpointError, DatasetError, ExportError) as exc:
        raise _fail(str(exc)) from None
    s, t = metrics["student"], metrics["teacher"]
    typer.echo(f"student {out}: accuracy {s['accuracy']:.4f} (teacher {t['accuracy']:.4f}, "
               f"{metrics['accuracy_kept']:.1%} kept), mean recall {s['mean_recall']:.4f} "
               f"(teacher {t['mean_recall']:.4f}), agreement {metrics['agreement']:.4f}")


@app.command("teacher-cache")
def teacher_cache_command(
    teacher: Path = typer.Option(..., help="Teacher probe checkpoint."),
    out: Path = typer.Option(..., help="npz cache to write (give it to distill and qat as "
                                       "--teacher-cache)."),
    data: Path = typer.Option(Path(default_data_root() / "ai4mars-msl-ncam-256"),
                              help="AI4Mars folder: at the same path as where the cache is "
                                   "used, since the cache's key names it."),
    max_train_frames: int = typer.Option(None, min=1, help="Train frames, spread over the "
                                                           "split (as distill's)."),
    max_val_frames: int = typer.Option(None, min=1, help="Val frames, spread over the split "
                                                         "(as distill's)."),
    device: str = typer.Option("auto", help="cpu, cuda or auto (the GPU when there is one)."),
    features: bool = typer.Option(True, help="Also store the teacher's features (needed only "
                                             "by --feature-weight; most of the file)."),
    batch_size: int = typer.Option(None, min=1, help="Tiles per teacher forward (default: "
                                                     "64 on a CPU, 2048 on a GPU)."),
) -> None:
    """The teacher's logits on the unlabelled train tiles and the scored val tiles, for
    distill and qat to read instead of running the teacher: made on a GPU for a teacher too
    slow for the CPU (a ResNet-18 on 64-px tiles), then carried to where the student trains.

    Example: edge export teacher-cache --teacher runs/probe/probe.pt --out runs/teacher.npz
    --max-train-frames 2400 --device cuda --no-features
    """
    _require_train_extra()
    from export.distill import DistillConfig, load_teacher, teacher_view, write_teacher_cache
    from train.checkpoint import CheckpointError
    from train.datasets.errors import DatasetError
    from train.device import pick_device
    from train.tiles import TileDataConfig

    try:
        dev = pick_device(device)
        model, tckpt = load_teacher(teacher)
        data_cfg = TileDataConfig(root=str(data), max_train_frames=max_train_frames,
                                  max_val_frames=max_val_frames)
        cfg = DistillConfig(teacher=str(teacher), data=data_cfg, teacher_cache=str(out))
        write_teacher_cache(cfg, model, teacher_view(data_cfg, tckpt, str(teacher)), dev,
                            features, log=lambda m: typer.echo(m, err=True), batch=batch_size)
    except (ValueError, CheckpointError, DatasetError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"teacher cache {out} ({out.stat().st_size / 2**20:.1f} MiB)")


@app.command("qat")
def qat_command(
    student: Path = typer.Option(..., help="Trained student checkpoint to fine-tune."),
    out: Path = typer.Option(Path("runs/qat/student-qat.pt"),
                             help="Fine-tuned student checkpoint to write (BN folded)."),
    bundle: Path = typer.Option(None, help="Also export it as an fp32 bundle here (the one "
                                           "to give `edge export quantize`)."),
    teacher: Path = typer.Option(None, help="Teacher probe checkpoint (default: the one "
                                            "recorded in the student)."),
    teacher_cache: Path = typer.Option(None, help="npz cache of the teacher's train outputs "
                                                  "(the distill run's)."),
    data: Path = typer.Option(None, help="AI4Mars folder (default: the student's own)."),
    steps: int = typer.Option(2000, min=0, help="Fine-tuning steps."),
    max_minutes: float = typer.Option(None, help="Fine-tuning time budget (minutes)."),
    batch_size: int = typer.Option(256, min=1),
    lr: float = typer.Option(1e-4, min=0.0, help="Peak learning rate (cosine decay)."),
    temperature: float = typer.Option(2.0, min=0.1, help="Softmax temperature of the KL terms."),
    float_weight: float = typer.Option(1.0, min=0.0, help="Weight of the KL to the source "
                                                          "float student's logits."),
    self_weight: float = typer.Option(1.0, min=0.0, help="Weight of the KL to the float "
                                                         "forward of the same weights."),
    calib_batches: int = typer.Option(16, min=1, help="Batches observed before the activation "
                                                      "ranges freeze."),
    observer: str = typer.Option("ema", help="Activation range observer: ema or minmax "
                                             "(ONNX Runtime's MinMax calibrator)."),
    resample_prob: float = typer.Option(None, min=0.0, max=1.0,
                                        help="Resampled-tile share (default: the student's)."),
    max_train_frames: int = typer.Option(None, min=1, help="Train frames (default: the "
                                                           "student's)."),
    max_val_frames: int = typer.Option(None, min=1, help="Val frames, spread over the split."),
    threads: int = typer.Option(2, min=1),
    seed: int = typer.Option(0),
    stem_float: bool = typer.Option(False, "--stem-float",
                                    help="Simulate the -stemfp variants: the first "
                                         "convolution and its input stay float."),
    head_float: bool = typer.Option(False, "--head-float",
                                    help="Simulate the -headfp variants: the head and the "
                                         "logits stay float."),
    margin: float = typer.Option(0.0, min=0.0, help="Hinge on the quantized logits keeping "
                                                    "the float path's class by this logit "
                                                    "margin (0: off)."),
    margin_weight: float = typer.Option(1.0, min=0.0, help="Weight of the --margin hinge."),
    snap_weights: bool = typer.Option(False, "--snap-weights",
                                      help="Write (and train against) the float model whose "
                                           "quantized weights lie on their int8 grid, so that "
                                           "INT8 differs from it by activation rounding only."),
) -> None:
    """Quantization-aware fine-tuning: fold the student's batch norms, fine-tune it with fake
    INT8 quantization that mimics ONNX Runtime's static QDQ quantization (per-channel int8
    weights, uint8 activations), write a float 'student' checkpoint of the fine-tuned weights.

    Example: edge export qat --student runs/distill/student-C.pt --out runs/qat/student-qat.pt
    --bundle runs/bundles/student-qat-fp32 --teacher-cache runs/distill/teacher_cache.npz
    """
    _require_train_extra()
    from export.onnx_export import ExportError
    from export.qat import OBSERVERS, QatConfig, qat, summary
    from export.student_export import export_student_bundle
    from train.checkpoint import CheckpointError
    from train.datasets.errors import DatasetError

    if observer not in OBSERVERS:
        raise _fail(f"--observer must be one of {', '.join(OBSERVERS)}, got '{observer}'")
    if not student.is_file():
        raise _fail(f"{student}: no such checkpoint")
    cfg = QatConfig(student=str(student), out=str(out),
                    teacher=str(teacher) if teacher else None,
                    teacher_cache=str(teacher_cache) if teacher_cache else None,
                    data_root=str(data) if data else None, max_train_frames=max_train_frames,
                    max_val_frames=max_val_frames, steps=steps, max_minutes=max_minutes,
                    batch_size=batch_size, lr=lr, temperature=temperature,
                    float_weight=float_weight, self_weight=self_weight,
                    calib_batches=calib_batches, observer=observer,
                    resample_prob=resample_prob, threads=threads, seed=seed,
                    stem_float=stem_float, head_float=head_float, margin=margin,
                    margin_weight=margin_weight, snap_weights=snap_weights)
    try:
        metrics = qat(cfg, log=lambda m: typer.echo(m, err=True))
        if bundle is not None:
            made = export_student_bundle(out, bundle, _student_data(out))
            typer.echo(f"bundle {made.path}: sha256 {made.manifest.sha256[:16]}...")
    except (CheckpointError, DatasetError, ExportError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"student {out}: {summary(metrics)}")


def _floats(text: str, what: str) -> tuple[float, ...]:
    values = _numbers(text, what, float, "numbers")
    if not values:
        raise _fail(f"{what} is empty")
    return values


@app.command("operating-point")
def operating_point_command(
    student: Path = typer.Option(..., help="Student checkpoint (distilled or QAT)."),
    out: Path = typer.Option(..., help="Shifted student checkpoint to write (its sweep goes "
                                       "beside it as OUT.sweep.json)."),
    bundle: Path = typer.Option(None, help="Also export it as an fp32 bundle here."),
    class_name: str = typer.Option("big rock", "--class", help="The class whose logit moves."),
    offsets: str = typer.Option(None, help="Comma-separated logit offsets to sweep "
                                           "(default: 0, 0.25, ..., 4)."),
    offset: float = typer.Option(None, help="Use this offset (the sweep is still written); "
                                            "default: chosen from the sweep by --criterion."),
    criterion: str = typer.Option("mean_recall", help="How the sweep chooses: mean_recall "
                                                      "or accuracy (on validation tiles)."),
    tolerance: float = typer.Option(0.002, min=0.0, help="Offsets whose criterion is within "
                                    "this of the best count as equal; the one nearest zero "
                                    "is chosen."),
    data: Path = typer.Option(None, help="AI4Mars folder (default: the student's own)."),
    max_val_frames: int = typer.Option(None, min=1, help="Val frames the sweep scores, spread "
                                                         "over the split (default: all)."),
    teacher_cache: Path = typer.Option(None, help="Teacher cache holding its val answers "
                                                  "(default: the one the student recorded)."),
    threads: int = typer.Option(2, min=1),
) -> None:
    """Move the student's operating point for one class: sweep an offset added to that class's
    logit on the validation tiles, report accuracy and per-class recall for each, and write
    the student with the chosen offset in its head's bias (a float parameter in every
    -headfp INT8 variant, so QAT's int8 weight grid is kept).

    Example: edge export operating-point --student runs/qat/student-qat.pt
    --out runs/qat/student-qat-op.pt --bundle runs/bundles/student-qat-op-fp32 --class "big rock"
    """
    _require_train_extra()
    from export.onnx_export import ExportError
    from export.operating_point import CRITERIA, OperatingPointConfig, operating_point
    from export.student_export import export_student_bundle
    from train.checkpoint import CheckpointError
    from train.datasets.errors import DatasetError

    if criterion not in CRITERIA:
        raise _fail(f"--criterion must be one of {', '.join(CRITERIA)}, got '{criterion}'")
    if not student.is_file():
        raise _fail(f"{student}: no such checkpoint")
    sweep = {} if offsets is None else {"offsets": _floats(offsets, "--offsets")}
    cfg = OperatingPointConfig(student=str(student), out=str(out), class_name=class_name,
                               **sweep, offset=offset,
                               criterion=criterion, tolerance=tolerance,
                               data_root=str(data) if data else None,
                               max_val_frames=max_val_frames,
                               teacher_cache=str(teacher_cache) if teacher_cache else None,
                               threads=threads)
    try:
        record = operating_point(cfg, log=lambda m: typer.echo(m, err=True))
        if bundle is not None:
            made = export_student_bundle(out, bundle, TileDataConfig(root=str(data)) if data
                                         else _distilled_data_root(out))
            typer.echo(f"bundle {made.path}: sha256 {made.manifest.sha256[:16]}...")
    except (CheckpointError, DatasetError, ExportError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{'offset':>7} {'accuracy':>8} {'mean recall':>11} {class_name + ' recall':>16}")
    for row in record["sweep"]:
        mark = "  <-" if row["offset"] == record["offset"] else ""
        typer.echo(f"{row['offset']:>7g} {row['accuracy']:>8.4f} {row['mean_recall']:>11.4f} "
                   f"{row['per_class_recall'].get(class_name, float('nan')):>16.3f}{mark}")
    typer.echo(f"student {out}: '{class_name}' logit +{record['offset']:g} ({record['chosen_by']}"
               f", {record['tiles']} validation tiles)")


def _distilled_data_root(checkpoint: Path) -> TileDataConfig:
    """The data folder a student checkpoint was distilled on (for the ONNX check)."""
    from export.distill import recorded_data
    from train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, "student")
    return TileDataConfig(root=recorded_data(ckpt, str(checkpoint)).root)


def _student_data(checkpoint: Path) -> TileDataConfig:
    """The data folder a QAT student checkpoint was fine-tuned on (for the ONNX check)."""
    from train.checkpoint import load_checkpoint

    return TileDataConfig(root=load_checkpoint(checkpoint, "student")["qat_config"]["data"]["root"])


def _threads(text: str) -> tuple[int, ...]:
    return _ints(text, "--threads")


@app.command("quantize")
def quantize_command(
    bundle: str = typer.Argument(..., help="fp32 bundle folder to quantize."),
    out: Path = typer.Option(Path("runs/bundles/student-int8"), help="INT8 bundle to write."),
    trt_out: Path = typer.Option(None, "--trt-out",
                                 help="Also write the TensorRT-targeted INT8 (symmetric QDQ) "
                                      "bundle here."),
    data: Path = typer.Option(Path(default_data_root() / "ai4mars-msl-ncam-256"),
                              help="AI4Mars folder: train frames calibrate (unless --calib), "
                                   "scored val tiles gate."),
    calib: Path = typer.Option(None, "--calib", help="Folder of images to calibrate on "
                                                     "instead of the train split."),
    calib_frames: int = typer.Option(64, min=1, help="Calibration frames, spread evenly."),
    val_frames: int = typer.Option(None, min=1, help="Val frames for the gate (default all)."),
    grid: str = typer.Option("full", help="full (31 variants) or short (13)."),
    variants: str = typer.Option("", help="Only these variants (comma-separated names, "
                                 "from the full grid whatever --grid; an unknown name is "
                                 "refused)."),
    repeats: int = typer.Option(10, min=1, help="Timing passes over 16 frames per variant."),
    threads: str = typer.Option("1,2", help="Thread counts to time; the first one ranks."),
    min_agreement: float = typer.Option(0.99, min=0.0, max=1.0,
                                        help="Gate: least share of val tiles where INT8 and "
                                             "float agree (the issue's gate: 0.99)."),
    max_accuracy_drop: float = typer.Option(0.005, min=0.0, max=1.0,
                                            help="Gate: most accuracy lost (0.005 = 0.5 "
                                                 "points)."),
    float_search: int = typer.Option(0, min=0, help="If no variant passes: keep up to N more "
                                                    "layers in float, most sensitive first "
                                                    "(ranked on train frames outside the "
                                                    "calibration), until one passes."),
    search_frames: int = typer.Option(400, min=1, help="Train frames that rank the layers "
                                                       "for --float-search."),
    min_speedup: float = typer.Option(1.2, min=0.0, help="Write a variant only if it is at "
                                                         "least this many times as fast as "
                                                         "the float model (first of "
                                                         "--threads; 1.2: above this shared "
                                                         "box's timing noise); 0: any "
                                                         "speed."),
) -> None:
    """Static INT8 post-training quantization with ONNX Runtime: every variant of the grid is
    timed and gated; the fastest that passes the gate and is at least --min-speedup times the
    float model (timed side by side) is written, with the table in its manifest. With
    --float-search N, a failing grid is followed by a search that keeps layers in float.

    Example: edge export quantize runs/bundles/student-fp32 --out runs/bundles/student-int8
    """
    import logging

    from export.accuracy_gate import GateError
    from export.quantize import QuantizeConfig, QuantizeError, quantize_bundle

    if grid not in ("full", "short"):
        raise _fail(f"--grid must be 'full' or 'short', got '{grid}'")
    for flag, path in (("--out", out), ("--trt-out", trt_out)):
        if path is not None and not path.name:  # "" or "." would write into the working dir
            raise _fail(f"{flag} '{path}': give the bundle folder to write")
    logging.getLogger().setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice
    cfg = QuantizeConfig(bundle=bundle, out=str(out), trt_out=str(trt_out) if trt_out else None,
                         data=str(data), calib_dir=str(calib) if calib else None,
                         calib_frames=calib_frames, val_frames=val_frames,
                         full_grid=grid == "full", repeats=repeats, threads=_threads(threads),
                         variants=[v.strip() for v in variants.split(",") if v.strip()],
                         min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop,
                         float_search=float_search, search_frames=search_frames,
                         min_speedup=min_speedup)
    try:
        summary = quantize_bundle(cfg, log=lambda m: typer.echo(m, err=True))
    except (QuantizeError, GateError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"bundle {summary['bundle']}: {summary['chosen']} ({summary['reason']})")
    if "trt" in summary:
        t = summary["trt"]
        typer.echo(f"bundle {t['bundle']}: TensorRT variant {t['variant']}, agreement "
                   f"{t['agreement']:.4f}, accuracy {t['accuracy']:.4f}")


@app.command("bench")
def bench_command(
    source: str = typer.Argument(str(default_data_root() / "ai4mars-msl-ncam-256" / "images"),
                                 help="Directory, quoted glob or image file of frames."),
    teacher: Path = typer.Option(Path("runs/probe/probe.pt"), help="Teacher probe checkpoint."),
    student: str = typer.Option("runs/bundles/student-fp32", help="fp32 student bundle."),
    int8: str = typer.Option("runs/bundles/student-int8", help="INT8 student bundle."),
    threads: str = typer.Option("1,2", help="Comma-separated thread counts."),
    max_frames: int = typer.Option(100, min=1, help="Frames per pass."),
    repeats: int = typer.Option(3, min=1, help="Passes over the frames per model and round."),
    rounds: int = typer.Option(5, min=1, help="Interleaved rounds (model order rotated each "
                                              "round; medians reported)."),
    json_out: Path = typer.Option(None, "--json", help="Also write the rows as JSON here."),
) -> None:
    """Teacher (torch eager), float student and INT8 student (ONNX Runtime) side by side on
    the same frames: tiles/s and per-frame p50/p99. (`edge bench` times one ONNX bundle; this
    one needs torch for the teacher, which the runtime never imports.)

    Example: edge export bench --student runs/bundles/student-fp32 --int8 runs/bundles/student-int8
    """
    import itertools

    from edge.bundle import BundleError, load_bundle
    from edge.outputs import write_json_atomic
    from edge.sources import SourceError, open_source
    from export.speed import SpeedConfig, format_rows, side_by_side
    from train.checkpoint import CheckpointError

    try:
        fp32, q8 = load_bundle(student), load_bundle(int8)
        frames = list(itertools.islice(open_source(source), max_frames))
        rows = side_by_side(teacher, fp32, q8, frames,
                            SpeedConfig(threads=_threads(threads), repeats=repeats,
                                        rounds=rounds))
    except (BundleError, SourceError, CheckpointError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{len(frames)} frames x {repeats} passes x {rounds} interleaved rounds; "
               f"teacher {teacher}, student {fp32.path} "
               f"({fp32.manifest.precision}), int8 {q8.path} ({q8.manifest.precision}); "
               f"CPU: {rows[0]['cpu'] if rows else '?'}")
    typer.echo(format_rows(rows))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(json_out, rows)


@app.command("card")
def card_command(
    bundle: str = typer.Argument(..., help="The shipped bundle the card is about."),
    out: Path = typer.Option(..., "--out", help="Card to write, e.g. docs/models/terrain.md; "
                             "its text outside the measured section is kept."),
    compare: list[str] = typer.Option([], "--compare", help="LABEL=BUNDLE shown beside it "
                                      "(repeatable), e.g. 'float teacher=runs/models/...'."),
    data_root: Path = typer.Option(default_data_root(), help="Folder holding the datasets."),
    threads: str = typer.Option("1,2", help="Thread counts to time."),
    repeats: int = typer.Option(3, min=1, help="Timed passes over the speed frames per "
                                               "bundle and round."),
    rounds: int = typer.Option(5, min=1, help="Interleaved timing rounds (bundle order "
                                              "rotated each round; medians reported)."),
    speed_frames: int = typer.Option(32, min=1, help="Validation frames to time."),
    max_val_frames: int = typer.Option(None, min=1, help="AI4Mars val frames (default all)."),
    reproduce: str = typer.Option("bash scripts/make_default_models.sh", help="The command that "
                                  "remakes the bundle, quoted in the card."),
) -> None:
    """Rewrite a model card's measured section: validation accuracy, mean per-class recall,
    confusion matrix (Markdown and PNG), and beside the compared bundles: parameters,
    MFLOPs per tile, size, tiles/s, speed relative to the shipped bundle and p50 per thread
    count, timed interleaved.

    Example: edge export card edge/models/terrain --out docs/models/terrain.md
    """
    _require_train_extra()
    import shlex
    import sys

    from edge.bundle import BundleError
    from export.model_card import CardConfig, CardError, write_card
    from train.datasets.errors import DatasetError

    pairs = []
    for item in compare:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise _fail(f"--compare wants LABEL=BUNDLE, got {item!r}")
        pairs.append((label, path))
    cfg = CardConfig(bundle=bundle, out=str(out), compare=tuple(pairs), data_root=str(data_root),
                     threads=_threads(threads), repeats=repeats, rounds=rounds,
                     speed_frames=speed_frames,
                     max_val_frames=max_val_frames, reproduce=reproduce,
                     command=shlex.join(["edge", *sys.argv[1:]]))
    try:
        path = write_card(cfg, log=typer.echo)
    except (BundleError, CardError, DatasetError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"model card: {path}")
