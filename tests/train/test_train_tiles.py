"""train.tiles: the tile data config and the frame limits of quick runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge.preprocess import InputSpec
from edge.tiling import TilingSpec
from train.datasets.ai4mars import load_ai4mars
from train.tiles import TileDataConfig, load_split_tiles, spread


def test_config_gives_the_input_and_tiling():
    cfg = TileDataConfig(root="x", tile_pixels=16, reference_width=512, tile=64, stride=32)
    assert cfg.input_spec == InputSpec(tile_pixels=16, channels=1, mean=(0.5,), std=(0.25,))
    assert cfg.tiling == TilingSpec(reference_width=512, tile=64, stride=32)


@pytest.mark.parametrize(("n", "limit"), [(10, 1), (10, 3), (10, 9), (7, 2), (100, 16)])
def test_spread_keeps_order_and_count(n, limit):
    ids = [f"id{i:03d}" for i in range(n)]
    got = spread(ids, limit)
    assert len(got) == limit == len(set(got))
    assert got == sorted(got)
    assert got[0] == ids[0]
    if limit > 1:
        assert got[-1] == ids[-1]


def test_spread_without_limit_keeps_all():
    ids = ["a", "b", "c"]
    assert spread(ids, None) == ids
    assert spread(ids, 5) == ids


def test_load_split_tiles_limits_frames(ai4mars_root):
    cfg = TileDataConfig(root=str(ai4mars_root), max_train_frames=3, max_val_frames=1)
    split = load_ai4mars(ai4mars_root).splits(cfg.val_fraction)
    train = load_split_tiles(cfg, "train")
    assert len(train.ids) == 3 and set(train.ids) <= set(split["train"])
    assert train.tiles.shape == (3 * 64, 1, 32, 32)
    val = load_split_tiles(cfg, "val", with_labels=False)
    assert len(val.ids) == 1 and set(val.ids) <= set(split["val"])
    assert (val.labels == -1).all()
    everything = load_split_tiles(replace(cfg, max_train_frames=None), "train")
    assert everything.ids == split["train"]
    assert np.isin(train.labels, [-1, 0, 1, 2, 3]).all()
