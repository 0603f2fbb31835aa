"""Per-split, per-class counts of a dataset folder (or of a folder holding several)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edge.tiling import TilingSpec
from train.datasets.ai4mars import CLASSES as AI4MARS_CLASSES
from train.datasets.ai4mars import UNSCORED, load_ai4mars, tile_reference_labels
from train.datasets.errors import DatasetError
from train.datasets.hirise import load_hirise
from train.datasets.msl import load_msl


def detect(path: Path) -> str | None:
    """'msl', 'ai4mars', 'hirise' or None, from the files a folder holds."""
    if (path / "train-set-v2.1.txt").exists():
        return "msl"
    if (path / "masks").is_dir() and (path / "train.txt").exists():
        return "ai4mars"
    if (path / "labels-map-proj.txt").exists():
        return "hirise"
    return None


def _table(title: str, classes: list[str], counts: dict[str, Counter], unit: str) -> list[str]:
    splits = list(counts)
    lines = [f"{title}", f"  {'class':<22}" + "".join(f"{s + ' ' + unit:>18}" for s in splits)]
    for c, name in enumerate(classes):
        lines.append(f"  {name:<22}" + "".join(f"{counts[s][c]:>18}" for s in splits))
    lines.append(f"  {'total':<22}" + "".join(f"{sum(counts[s].values()):>18}" for s in splits))
    return lines


def dataset_info(path: str | Path, tiling: TilingSpec | None = None) -> list[str]:
    """Report lines for one dataset folder, or for each dataset found directly under ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder")
    kind = detect(path)
    if kind is None:
        subs = [p for p in sorted(path.iterdir()) if p.is_dir() and detect(p)]
        if not subs:
            raise DatasetError(f"{path}: holds no MSL v2.1, AI4Mars or HiRISE v1 dataset "
                               "(expected train-set-v2.1.txt, masks/ + train.txt, or "
                               "labels-map-proj.txt)")
        lines: list[str] = []
        for sub in subs:
            lines += dataset_info(sub, tiling) + [""]
        return lines
    if kind == "msl":
        msl = load_msl(path)
        counts = {s: Counter(it.label for it in items) for s, items in msl.splits.items()}
        originals = {s: len({it.original for it in items}) for s, items in msl.splits.items()}
        return _table(f"MSL v2.1 at {path} (originals: {originals})", msl.classes, counts, "images")
    if kind == "hirise":
        hi = load_hirise(path)
        counts = {s: Counter(it.label for it in items) for s, items in hi.splits.items()}
        obs = {s: len({it.observation for it in items}) for s, items in hi.splits.items()}
        return _table(f"HiRISE v1 at {path} (split by observation: {obs})", hi.classes, counts,
                      "images")
    ai = load_ai4mars(path)
    tiling = tiling or TilingSpec()
    counts = {}
    frames = {}
    for split, ids in ai.splits().items():
        c: Counter = Counter()
        for frame_id in ids:
            labels = tile_reference_labels(ai.read_mask(frame_id), tiling)
            c.update(int(v) for v in labels[labels != UNSCORED])
        counts[split] = c
        frames[split] = len(ids)
    title = (f"AI4Mars Navcam at {path} (frames {frames}, clock-ordered split; scored tiles of "
             f"{tiling.tile} px at reference width {tiling.reference_width})")
    return _table(title, AI4MARS_CLASSES, counts, "tiles")
