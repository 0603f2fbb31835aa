"""Labelled evaluation sets for probes, kNN monitoring and supervised baselines.

``ai4mars``: scored Navcam tiles (4 classes) of the clock-ordered split; label fractions are
drawn over tiles. ``msl-v2.1`` (alias ``msl``): whole MSL images (19 classes) of the published
split; label fractions are drawn over originals, flipped/rotated copies following them.
Every input goes through edge's preprocessing at the AI4Mars config's tile size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from train.datasets.ai4mars import CLASSES as AI4MARS_CLASSES
from train.datasets.errors import DatasetError
from train.datasets.label_fraction import sample_fraction
from train.datasets.msl import load_msl
from train.datasets.whole_image import load_whole_images
from train.tiles import TileDataConfig, load_split_tiles, spread_indices

DATASETS = ("ai4mars", "msl-v2.1")


@dataclass
class LabelledSet:
    """inputs float32 (N, C, S, S), labels int64 (N,), groups (N,) (the unit a label fraction
    is drawn over), class names; ``frames``: how many frames (or whole images) were read."""

    inputs: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    classes: list[str]
    frames: int = 0

    def subset(self, idx: np.ndarray) -> LabelledSet:
        """The items at ``idx``."""
        return LabelledSet(self.inputs[idx], self.labels[idx], self.groups[idx], self.classes,
                           self.frames)

    def fraction(self, fraction: float, seed: int) -> np.ndarray:
        """Indices int64 of a class-stratified ``fraction`` of the groups (all their items)."""
        first = {}
        for g, y in zip(self.groups.tolist(), self.labels.tolist(), strict=True):
            first.setdefault(g, y)
        chosen = sample_fraction(first, fraction, seed)
        return np.flatnonzero([g in chosen for g in self.groups.tolist()])


def canonical(dataset: str) -> str:
    """'msl' -> 'msl-v2.1'; raises DatasetError for unknown names."""
    name = "msl-v2.1" if dataset == "msl" else dataset
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    return name


def load_labelled(dataset: str, split: str, data: TileDataConfig, msl_root: str,
                  max_items: int | None = None) -> LabelledSet:
    """One split ('train' or 'val') of ``dataset`` as a :class:`LabelledSet`."""
    name = canonical(dataset)
    if name == "ai4mars":
        tiles = load_split_tiles(data, split).scored()
        if not len(tiles.labels):
            raise DatasetError(f"{data.root}: no scored {split} tiles (a tile is scored when "
                               "labelled pixels cover half of it with a 3/4 majority); "
                               "use more frames or check the masks")
        keep = spread_indices(len(tiles.labels), max_items)
        return LabelledSet(tiles.tiles[keep], tiles.labels[keep], keep.astype(np.int64),
                           list(AI4MARS_CLASSES), frames=len(tiles.ids))
    msl = load_msl(msl_root)
    items = msl.splits[split]
    items = [items[i] for i in spread_indices(len(items), max_items)]
    x, ok = load_whole_images([msl.image_path(it) for it in items], data.input_spec)
    kept = [it for it, good in zip(items, ok, strict=True) if good]
    return LabelledSet(x, np.array([it.label for it in kept], dtype=np.int64),
                       np.array([it.original for it in kept]), list(msl.classes),
                       frames=len(kept))


def monitor_data(data: TileDataConfig, limit_frames: int = 300) -> TileDataConfig:
    """A lighter AI4Mars config for monitoring (frames spread over each split)."""
    return replace(data, max_train_frames=min(limit_frames, data.max_train_frames or limit_frames),
                   max_val_frames=min(limit_frames, data.max_val_frames or limit_frames))
