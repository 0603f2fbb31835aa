"""AI4Mars tiles for training and evaluation, through edge's one preprocessing function."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.preprocess import InputSpec
from edge.tiling import TilingSpec
from train.datasets.ai4mars import TileSet, load_ai4mars


def default_data_root() -> Path:
    """``$MARS_DATA``, else the ``shared/data`` folder beside this checkout."""
    env = os.environ.get("MARS_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class TileDataConfig:
    """Where the AI4Mars frames are, how they are tiled, and optional frame limits (for quick
    runs and tests: N frames spread evenly over each split's clock range)."""

    root: str = str(default_data_root() / "ai4mars-msl-ncam-256")
    tile_pixels: int = 32
    reference_width: int = 256
    tile: int = 32
    stride: int = 32
    val_fraction: float = 0.2
    max_train_frames: int | None = None
    max_val_frames: int | None = None

    @property
    def input_spec(self) -> InputSpec:
        """The network input: grey tiles of ``tile_pixels``."""
        return InputSpec(tile_pixels=self.tile_pixels, channels=1, mean=(0.5,), std=(0.25,))

    @property
    def tiling(self) -> TilingSpec:
        """The tile grid at the reference width."""
        return TilingSpec(self.reference_width, self.tile, self.stride)


def spread_indices(n: int, limit: int | None) -> np.ndarray:
    """Indices int64 of at most ``limit`` of n items, spread evenly (all if None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, num=limit).round().astype(np.int64)


def spread(ids: list[str], limit: int | None) -> list[str]:
    """At most ``limit`` ids spread evenly over the clock-ordered list (all if None).

    Quick runs then still see many drives and terrains, not one drive sequence."""
    return [ids[i] for i in spread_indices(len(ids), limit)]


def load_split_tiles(cfg: TileDataConfig, split: str, with_labels: bool = True) -> TileSet:
    """Tiles of one clock-ordered split ('train' or 'val'), subsampled by :func:`spread`."""
    data = load_ai4mars(Path(cfg.root))
    ids = data.splits(cfg.val_fraction)[split]
    limit = cfg.max_train_frames if split == "train" else cfg.max_val_frames
    return data.load_tiles(spread(ids, limit), cfg.input_spec, cfg.tiling,
                           with_labels=with_labels)
