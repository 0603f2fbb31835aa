"""Tiny synthetic frames, bundles and runners for the reliability tests (no real images).

A module of its own with a unique basename (there is no ``__init__.py`` under ``tests/``), so
that every test file can import it whatever other conftest.py files pytest has loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from onnx import helper, numpy_helper
from onnx_graphs import tiles_to_logits_model

from edge.bundle import Bundle, Manifest, write_bundle
from edge.preprocess import InputSpec
from edge.tiling import TilingSpec

CLASSES = ["soil", "bedrock", "sand", "big rock"]
REPO = Path(__file__).resolve().parents[2]


def synthetic_frame(height: int, width: int, channels: int = 0, dtype: type = np.uint8,
                    seed: int = 0) -> np.ndarray:
    """A smooth textured picture (H, W) or (H, W, channels) of ``dtype``: gradients + noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / 7.0 + seed) * np.cos(yy / 11.0)
    shape = (height, width) if channels == 0 else (height, width, channels)
    if channels:
        base = base[:, :, None] * np.linspace(0.6, 1.0, channels, dtype=np.float32)
    unit = np.clip(base + rng.normal(0, 0.05, shape).astype(np.float32), 0, 1)
    return np.round(unit * np.iinfo(dtype).max).astype(dtype)


def encode(image: np.ndarray, ext: str) -> bytes:
    """``cv2.imencode`` that fails loudly."""
    ok, buf = cv2.imencode(ext, image)
    assert ok, f"cv2.imencode({ext}) failed"
    return buf.tobytes()


def write_frames(folder: Path, count: int, size: int = 64, prefix: str = "good") -> list[str]:
    """``count`` small grey PNG frames ``PREFIX_000.png``...; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"{prefix}_{i:03d}.png"
        (folder / name).write_bytes(encode(synthetic_frame(size, size, seed=i), ".png"))
        names.append(name)
    return names


def tiny_model_bytes(n_classes: int = 4, channels: int = 1, tile_pixels: int = 16,
                     seed: int = 0) -> bytes:
    """A tiny ONNX tile classifier: (N, C, S, S) -> (N, n_classes), dynamic batch.
    Conv(3x3, 2 features) -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    feats = 2
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (feats, channels, 3, 3)).astype(np.float32),
                                "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (feats,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (n_classes, feats)).astype(np.float32),
                                "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (n_classes,)).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["tiles", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    return tiles_to_logits_model(nodes, inits, "reliability_tiny", channels, tile_pixels, n_classes)


def tiny_manifest(classes: list[str] | None = None, tile_pixels: int = 16) -> Manifest:
    """Grey tiles of ``tile_pixels``; 32-px tiles, stride 32 at a 256-px reference width."""
    return Manifest(
        name="reliability-tiny", classes=list(classes or CLASSES),
        input=InputSpec(tile_pixels=tile_pixels, channels=1, mean=(0.5,), std=(0.25,)),
        tiling=TilingSpec(reference_width=256, tile=32, stride=32), precision="fp32",
        sha256="", provenance={"data": "synthetic", "config": {},
                               "made_by": "tests/reliability/reliability_data.py"},
        metrics={})


def make_bundle(out_dir: Path, classes: list[str] | None = None, n_outputs: int | None = None,
                model_bytes: bytes | None = None) -> Bundle:
    """Write a tiny bundle; ``n_outputs`` different from the class count makes a mismatch."""
    classes = list(classes or CLASSES)
    if model_bytes is None:
        model_bytes = tiny_model_bytes(n_outputs if n_outputs is not None else len(classes))
    return write_bundle(out_dir, model_bytes, tiny_manifest(classes))


def edge_cmd(*args: str) -> list[str]:
    """argv that runs the ``edge`` CLI in a fresh interpreter (one ONNX Runtime thread)."""
    return [sys.executable, "-m", "toolkit_cli.main", *args]


def edge_env() -> dict[str, str]:
    """Environment for ``edge`` subprocesses: light on the shared CPU."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1",
            "PYTHONPATH": str(REPO)}


def run_edge(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    """Run ``edge ARGS`` to completion; stdout and stderr captured as text."""
    return subprocess.run(edge_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=edge_env(), cwd=REPO, **kwargs)


def make_tiny_ai4mars(root: Path, frames: int = 4, size: int = 64) -> list[str]:
    """A tiny synthetic AI4Mars Navcam folder (images/*.jpg, masks/*.png, train.txt) with
    ``frames`` frames of ``size`` px whose texture follows random 8-px class blocks."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    looks = {0: (0.45, 0.02), 1: (0.8, 0.05), 2: (0.25, 0.01), 3: (0.55, 0.2)}
    ids = []
    for k in range(frames):
        frame_id = f"NLA_{397681000 + 100 * k:09d}EDR_F{k:07d}AUT_04096M1"
        rng = np.random.default_rng(k)
        grid = rng.integers(0, 4, size=(size // 8, size // 8)).astype(np.uint8)
        mask = np.kron(grid, np.ones((8, 8), dtype=np.uint8))
        picture = np.full(mask.shape, 0.5, dtype=np.float32)
        for cls, (level, noise) in looks.items():
            sel = mask == cls
            picture[sel] = level + rng.normal(0, noise, int(sel.sum()))
        (root / "masks" / f"{frame_id}.png").write_bytes(encode(mask, ".png"))
        image = np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8)
        (root / "images" / f"{frame_id}.jpg").write_bytes(encode(image, ".jpg"))
        ids.append(frame_id)
    (root / "train.txt").write_text("\n".join(ids) + "\n")
    return ids
