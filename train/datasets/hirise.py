"""HiRISE v1 orbital landmark crops, split by source observation (no official split).

Folder: ``class_map.csv``, ``labels-map-proj.txt``, ``map-proj/``. Crops of one
observation (the ``ESP_xxxxxx_xxxx`` prefix) all fall in the same split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from train.datasets.listfile import read_class_map, read_label_list, require


def observation_of(file: str) -> str:
    """``ESP_011283_2265_RED-0032.jpg`` -> ``ESP_011283_2265``."""
    return "_".join(file.split("_")[:3])


def split_of(observation: str, val_fraction: float = 0.2) -> str:
    """Deterministic split of an observation id by its hash: 'val' for about ``val_fraction``."""
    h = int(hashlib.sha256(observation.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


@dataclass(frozen=True)
class HiriseItem:
    """One labelled crop and its source observation."""

    file: str
    label: int
    observation: str


@dataclass
class HiriseDataset:
    """Loaded labels, split by observation."""

    root: Path
    classes: list[str]
    splits: dict[str, list[HiriseItem]]

    def image_path(self, item: HiriseItem) -> Path:
        """Path of a crop's JPEG."""
        return self.root / "map-proj" / item.file


def load_hirise(root: str | Path, val_fraction: float = 0.2) -> HiriseDataset:
    """Read a HiRISE v1 folder; raises DatasetError naming what is missing or malformed."""
    root = Path(root)
    require(root, "the HiRISE v1 folder")
    require(root / "map-proj", "the folder of HiRISE JPEG crops")
    classes = read_class_map(root / "class_map.csv")
    splits: dict[str, list[HiriseItem]] = {"train": [], "val": []}
    for file, label in read_label_list(root / "labels-map-proj.txt", len(classes)):
        obs = observation_of(file)
        splits[split_of(obs, val_fraction)].append(HiriseItem(file, label, obs))
    return HiriseDataset(root=root, classes=classes, splits=splits)
