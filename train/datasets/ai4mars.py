"""AI4Mars terrain labels on Curiosity Navcam frames (``ai4mars-msl-ncam-256``).

Folder: ``images/<id>.jpg``, ``masks/<id>.png`` (0 soil, 1 bedrock, 2 sand,
3 big rock, 255 unlabelled), ``train.txt`` listing the ids. Ids carry the
spacecraft clock, so the train/val split is made in clock order (neighbouring
frames overlap; a random split would leak).

Tiles are cut with the runtime's own tiling and preprocessing (``edge``), and
labelled by DESIGN.md's rule: scored only where labelled pixels cover at least
half of the tile and the majority class holds at least three quarters of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.decode import FrameError, read_image
from edge.preprocess import InputSpec, frame_to_tiles
from edge.tiling import TilingSpec, reference_size, tile_boxes
from train.datasets.errors import DatasetError
from train.datasets.listfile import require

CLASSES = ["soil", "bedrock", "sand", "big rock"]
UNLABELLED = 255
UNSCORED = -1
_CLOCK = re.compile(r"^N[A-Z]{2}_(\d{9})")


def clock_of(frame_id: str) -> int:
    """Spacecraft clock of a Navcam product id (``NLA_397681586EDR_...`` -> 397681586)."""
    match = _CLOCK.match(frame_id)
    if not match:
        raise DatasetError(f"id {frame_id!r} is not a Navcam product id (NxX_<9-digit clock>...)")
    return int(match.group(1))


def split_by_clock(ids: list[str], val_fraction: float = 0.2,
                   window: float = 0.05) -> dict[str, list[str]]:
    """Clock-ordered split: earlier frames train, the latest (about ``val_fraction``) val.

    The cut is placed at the largest clock gap within ``window`` (as a fraction of
    the frames) of the target position, so that one drive sequence of overlapping
    frames is not split between train and val.
    """
    ordered = sorted(ids, key=lambda i: (clock_of(i), i))
    n = len(ordered)
    target = n - int(round(n * val_fraction))
    if n < 2 or target in (0, n):
        return {"train": ordered[:target], "val": ordered[target:]}
    lo, hi = max(1, target - int(n * window)), min(n - 1, target + int(n * window))
    clocks = [clock_of(i) for i in ordered]
    cut = max(range(lo, hi + 1), key=lambda k: (clocks[k] - clocks[k - 1], -abs(k - target)))
    return {"train": ordered[:cut], "val": ordered[cut:]}


def tile_reference_labels(mask: np.ndarray, tiling: TilingSpec) -> np.ndarray:
    """Mask uint8 (H, W) -> reference label int64 (N,) per tile of the grid, UNSCORED (-1)
    where the tile is not scored (too few labelled pixels, or no 3/4 majority)."""
    h, w = mask.shape[:2]
    ref_w, ref_h = reference_size(w, h, tiling)
    if (ref_w, ref_h) != (w, h):
        mask = cv2.resize(mask, (ref_w, ref_h), interpolation=cv2.INTER_NEAREST)
    ref_boxes, _ = tile_boxes(w, h, tiling)
    labels = np.full(len(ref_boxes), UNSCORED, dtype=np.int64)
    area = tiling.tile * tiling.tile
    for i, (x, y, tw, th) in enumerate(ref_boxes):
        patch = mask[y : y + th, x : x + tw]
        counts = np.bincount(patch[patch != UNLABELLED].ravel(), minlength=len(CLASSES))
        labelled = counts[: len(CLASSES)].sum()
        if labelled * 2 < area or counts.size > len(CLASSES) and counts[len(CLASSES):].any():
            continue
        top = int(counts.argmax())
        if counts[top] * 4 >= labelled * 3:
            labels[i] = top
    return labels


@dataclass
class TileSet:
    """Tiles of many frames: tiles float32 (N, C, S, S), labels int64 (N,) (-1 unscored),
    frame int64 (N,) index into ``ids``."""

    tiles: np.ndarray
    labels: np.ndarray
    frame: np.ndarray
    ids: list[str]

    def scored(self) -> TileSet:
        """Only the scored tiles."""
        keep = self.labels != UNSCORED
        return TileSet(self.tiles[keep], self.labels[keep], self.frame[keep], self.ids)


@dataclass
class Ai4MarsDataset:
    """The ids (clock order), with paths to frames and masks."""

    root: Path
    ids: list[str]
    classes: tuple[str, ...] = tuple(CLASSES)

    def image_path(self, frame_id: str) -> Path:
        """Path of a frame's JPEG."""
        return self.root / "images" / f"{frame_id}.jpg"

    def mask_path(self, frame_id: str) -> Path:
        """Path of a frame's label mask."""
        return self.root / "masks" / f"{frame_id}.png"

    def splits(self, val_fraction: float = 0.2) -> dict[str, list[str]]:
        """Clock-ordered train/val split of the ids."""
        return split_by_clock(self.ids, val_fraction)

    def read_mask(self, frame_id: str) -> np.ndarray:
        """Mask uint8 (H, W); raises DatasetError when unreadable."""
        mask = cv2.imread(str(self.mask_path(frame_id)), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise DatasetError(f"{self.mask_path(frame_id)}: unreadable or not a 1-channel mask")
        return mask

    def load_tiles(self, ids: list[str], spec: InputSpec, tiling: TilingSpec,
                   with_labels: bool = True) -> TileSet:
        """Tiles of ``ids`` through edge's preprocessing, with reference labels from the masks.

        Frames that cannot be read are skipped with a warning naming them.
        """
        tiles, labels, frames = [], [], []
        for k, frame_id in enumerate(ids):
            try:
                image = read_image(self.image_path(frame_id))
            except FrameError as exc:
                print(f"warning: skipping frame: {exc}")
                continue
            tiled = frame_to_tiles(image, spec, tiling)
            if with_labels:
                lab = tile_reference_labels(self.read_mask(frame_id), tiling)
            else:
                lab = np.full(len(tiled.tiles), UNSCORED, dtype=np.int64)
            tiles.append(tiled.tiles)
            labels.append(lab)
            frames.append(np.full(len(lab), k, dtype=np.int64))
        if not tiles:
            raise DatasetError(f"{self.root}: none of the {len(ids)} requested frames is readable")
        return TileSet(np.concatenate(tiles), np.concatenate(labels), np.concatenate(frames),
                       list(ids))


def load_ai4mars(root: str | Path) -> Ai4MarsDataset:
    """Read an AI4Mars Navcam folder; raises DatasetError naming what is missing or malformed."""
    root = Path(root)
    require(root, "the AI4Mars Navcam folder")
    require(root / "images", "the folder of Navcam frames (<id>.jpg)")
    require(root / "masks", "the folder of label masks (<id>.png)")
    lines = require(root / "train.txt", "the list of labelled ids").read_text().split()
    if not lines:
        raise DatasetError(f"{root / 'train.txt'}: lists no ids")
    for frame_id in lines:
        clock_of(frame_id)
    ids = sorted(lines, key=lambda i: (clock_of(i), i))
    return Ai4MarsDataset(root=root, ids=ids)
