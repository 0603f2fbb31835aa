"""A tiny synthetic AI4Mars folder and a probe checkpoint trained on it, for the export/ tests.

A module of its own (not conftest) so that test files can import it whatever other
conftest.py files pytest has loaded; it does not import from other test folders.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from train.pretrain import PretrainConfig, pretrain
from train.probe import ProbeConfig, probe
from train.tiles import TileDataConfig

# 12 frames: a large clock gap before the last two, which become the val split.
CLOCKS = [397681000 + 100 * k for k in range(10)] + [397700000, 397700100]
LEVELS = {0: 0.45, 1: 0.8, 2: 0.25, 3: 0.6}


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), f"cv2.imwrite failed for {path}"


def frame_and_mask(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 frame and its mask: 8-px blocks of classes 0..3 (some unlabelled)."""
    rng = np.random.default_rng(seed)
    n = size // 8
    grid = rng.integers(0, 4, size=(n, n)).astype(np.uint8)
    grid[rng.random((n, n)) < 0.1] = 255
    mask = np.kron(grid, np.ones((8, 8), dtype=np.uint8))
    unit = np.full(mask.shape, 0.5, dtype=np.float32)
    for cls, level in LEVELS.items():
        unit[mask == cls] = level
    unit += rng.normal(0, 0.03 + 0.05 * (mask == 3), mask.shape).astype(np.float32)
    return np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8), mask


def make_ai4mars(root: Path) -> list[str]:
    """images/*.jpg, masks/*.png and train.txt of 12 64x64 frames; returns the ids."""
    ids = [f"NLA_{c:09d}EDR_F{k:07d}AUT_04096M1" for k, c in enumerate(CLOCKS)]
    for k, frame_id in enumerate(ids):
        frame, mask = frame_and_mask(k)
        _write(root / "images" / f"{frame_id}.jpg", frame)
        _write(root / "masks" / f"{frame_id}.png", mask)
    (root / "train.txt").write_text("\n".join(ids) + "\n")
    return ids


def write_frame(path: Path, seed: int = 0, size: int = 64) -> Path:
    """One synthetic frame (what ``edge classify`` gets)."""
    _write(path, frame_and_mask(seed, size)[0])
    return path


def train_probe(root: Path, out: Path) -> tuple[Path, Path]:
    """Pretrain a tiny encoder for one short epoch and probe it; returns (encoder.pt, probe.pt)."""
    data = TileDataConfig(root=str(root), max_train_frames=4)
    encoder = pretrain(PretrainConfig(out_dir=str(out / "pretrain"), preset="tiny", data=data,
                                      batch_size=32, epochs=1, threads=1), log=lambda *_: None)
    probe_path = out / "probe" / "probe.pt"
    probe(ProbeConfig(encoder=str(encoder), out=str(probe_path), data=data, label_fraction=0.5,
                      steps=30), log=lambda *_: None)
    return encoder, probe_path


def distill_student(root: Path, probe_path: Path, out: Path) -> tuple[Path, Path]:
    """Distil a very small student from the tiny probe (one epoch) and export it as an fp32
    bundle checked on random tiles; returns (student.pt, bundle folder)."""
    from export.distill import DistillConfig, distill
    from export.student_export import export_student_bundle

    data = TileDataConfig(root=str(root), max_train_frames=4)
    ckpt = out / "student.pt"
    distill(DistillConfig(teacher=str(probe_path), out=str(ckpt), data=data, widths=(8, 8, 8),
                          epochs=1, batch_size=32, threads=1, feature_weight=0.5),
            log=lambda *_: None)
    bundle = export_student_bundle(ckpt, out / "student-fp32", None)
    return ckpt, bundle.path
