"""Tiny synthetic dataset folders for the train/ unit tests, in the published layouts.

A module of its own (not conftest) so that test files can import its builders whatever
other conftest.py files pytest has loaded. Nothing here needs torch.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

AI4MARS_FRAME = 64  # frames (and masks) are 64x64: 8x8 tiles of 8 px at the 256 reference

# Grey level and texture of each AI4Mars class in the synthetic frames.
_CLASS_LOOK = {0: (0.45, 0.02), 1: (0.8, 0.05), 2: (0.25, 0.01), 3: (0.55, 0.2)}


def navcam_id(clock: int, k: int = 0) -> str:
    """A Navcam product id carrying ``clock`` (the AI4Mars naming)."""
    return f"NLA_{clock:09d}EDR_F{k:07d}AUT_04096M1"


def write_image(path: Path, image: np.ndarray) -> Path:
    """cv2.imwrite that fails loudly; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), f"cv2.imwrite failed for {path}"
    return path


def synthetic_mask(seed: int, size: int = AI4MARS_FRAME, block: int = 8) -> np.ndarray:
    """Mask uint8 (size, size) of ``block``-px squares of classes 0..3, some unlabelled (255)."""
    rng = np.random.default_rng(seed)
    n = size // block
    grid = rng.integers(0, 4, size=(n, n)).astype(np.uint8)
    grid[rng.random((n, n)) < 0.1] = 255
    return np.kron(grid, np.ones((block, block), dtype=np.uint8))


def frame_for_mask(mask: np.ndarray, seed: int) -> np.ndarray:
    """A grey uint8 frame whose texture follows the mask's classes."""
    rng = np.random.default_rng(seed + 1000)
    out = np.full(mask.shape, 0.5, dtype=np.float32)
    for cls, (level, noise) in _CLASS_LOOK.items():
        sel = mask == cls
        out[sel] = level + rng.normal(0, noise, int(sel.sum()))
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def make_ai4mars(root: Path, clocks: list[int], size: int = AI4MARS_FRAME) -> list[str]:
    """An AI4Mars Navcam folder (images/*.jpg, masks/*.png, train.txt); returns the ids
    in clock order."""
    ids = [navcam_id(c, k) for k, c in enumerate(clocks)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for k, frame_id in enumerate(ids):
        mask = synthetic_mask(k, size)
        write_image(root / "masks" / f"{frame_id}.png", mask)
        write_image(root / "images" / f"{frame_id}.jpg", frame_for_mask(mask, k))
    # train.txt is not in clock order in the wild either.
    (root / "train.txt").write_text("\n".join(reversed(ids)) + "\n")
    return ids


# 12 frames: two drive sequences with a large clock gap before the last two frames.
AI4MARS_CLOCKS = [397681000 + 100 * k for k in range(10)] + [397700000, 397700100]


MSL_CLASSES = ["Arm cover", "Other rover part", "Drill holes"]


def msl_file(sol: int, k: int, suffix: str = "") -> str:
    """An MSL v2.1 image name of ``sol`` (``-fh``, ``-r90``... copies via ``suffix``)."""
    return f"{sol:04d}ML{k:019d}E01_DRCL{suffix}.jpg"


def make_msl(root: Path, with_test: bool = False,
             with_images: bool = False) -> dict[str, list[tuple[str, int]]]:
    """An MSL v2.1 folder: 3 classes, train originals with -fh and -r90 copies, val (and test).

    Train: class c has 4 * (c + 1) originals (4, 8, 12), each listed with two copies.
    ``with_images``: also write a 40x30 colour JPEG per row, brighter for higher classes.
    Returns the rows written per split.
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "class_map.csv").write_text(
        "".join(f"{i},{name}\n" for i, name in enumerate(MSL_CLASSES)))
    train, k = [], 0
    for cls in range(len(MSL_CLASSES)):
        for _ in range(4 * (cls + 1)):
            for suffix in ("", "-fh", "-r90"):
                train.append((msl_file(3 + k % 7, k, suffix), cls))
            k += 1
    rows = {"train": train,
            "val": [(msl_file(100 + i, 1000 + i), i % 3) for i in range(6)]}
    if with_test:
        rows["test"] = [(msl_file(200 + i, 2000 + i), i % 3) for i in range(3)]
    names = {"train": "train-set-v2.1.txt", "val": "val-set-v2.1.txt",
             "test": "test-set-v2.1.txt"}
    for split, items in rows.items():
        # Copies listed before their original, as in the published list; a blank line too.
        (root / names[split]).write_text(
            "\n".join(f"{f} {c}" for f, c in sorted(items)) + "\n\n")
        if with_images:
            rng = np.random.default_rng(len(items))
            for f, c in items:
                pixels = 60 + 60 * c + rng.integers(0, 30, (30, 40, 3))
                write_image(root / "images" / f, pixels.astype(np.uint8))
    return rows


HIRISE_CLASSES = ["other", "crater", "dark_dune"]


def make_hirise(root: Path, observations: int = 40, crops: int = 3) -> list[tuple[str, int]]:
    """A HiRISE v1 folder: ``observations`` observations of ``crops`` crops each."""
    (root / "map-proj").mkdir(parents=True, exist_ok=True)
    (root / "class_map.csv").write_text(
        "".join(f"{i},{name}\n" for i, name in enumerate(HIRISE_CLASSES)))
    rows = []
    for o in range(observations):
        obs = f"ESP_{11000 + 7 * o:06d}_{1500 + o:04d}"
        for c in range(crops):
            rows.append((f"{obs}_RED-{c:04d}.jpg", (o + c) % 3))
    (root / "labels-map-proj.txt").write_text("\n".join(f"{f} {c}" for f, c in rows) + "\n")
    return rows
