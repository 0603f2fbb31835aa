"""MSL Curiosity surface images v2.1 (19 classes), in the published layout.

Folder: ``class_map.csv``, ``train-set-v2.1.txt``, ``val-set-v2.1.txt`` (and
``test-set-v2.1.txt`` where not withheld), ``images/``. The train split holds
flipped/rotated copies of each original (suffixes ``-fh -fv -r90 -r180 -r270``);
label fractions are drawn over originals, copies following their original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from train.datasets.label_fraction import sample_fraction
from train.datasets.listfile import read_class_map, read_label_list, require

SPLIT_FILES = {"train": "train-set-v2.1.txt", "val": "val-set-v2.1.txt",
               "test": "test-set-v2.1.txt"}
_COPY_SUFFIX = re.compile(r"-(fh|fv|r90|r180|r270)(?=\.[A-Za-z]+$)")


def original_of(file: str) -> str:
    """The original image a (possibly augmented) file name derives from."""
    return _COPY_SUFFIX.sub("", file)


def _sol_problem(file: str) -> str | None:
    """What is wrong with a file name that does not start with its 4-digit sol, else None."""
    return None if file[:4].isdigit() else f"file name {file!r} does not start with a 4-digit sol"


@dataclass(frozen=True)
class MslItem:
    """One labelled image: file name, class id, its original's name and mission day."""

    file: str
    label: int
    original: str
    sol: int


@dataclass
class MslDataset:
    """The loaded lists; ``splits`` maps split name to items (test only if present)."""

    root: Path
    classes: list[str]
    splits: dict[str, list[MslItem]]

    def image_path(self, item: MslItem) -> Path:
        """Path of an item's JPEG."""
        return self.root / "images" / item.file

    def label_fraction(self, fraction: float, seed: int = 0, split: str = "train") -> list[MslItem]:
        """Items of ``split`` whose original is among a stratified ``fraction`` of originals."""
        items = self.splits[split]
        originals = {it.original: it.label for it in items}
        chosen = sample_fraction(originals, fraction, seed)
        return [it for it in items if it.original in chosen]


def load_msl(root: str | Path) -> MslDataset:
    """Read an MSL v2.1 folder; raises DatasetError naming what is missing or malformed."""
    root = Path(root)
    require(root, "the MSL v2.1 folder")
    require(root / "images", "the folder of MSL JPEG images")
    classes = read_class_map(root / "class_map.csv")
    splits: dict[str, list[MslItem]] = {}
    for split, name in SPLIT_FILES.items():
        path = root / name
        if split == "test" and not path.exists():
            continue  # withheld for independent evaluation
        splits[split] = [MslItem(file, label, original_of(file), int(file[:4]))
                         for file, label in read_label_list(path, len(classes), _sol_problem)]
    return MslDataset(root=root, classes=classes, splits=splits)
