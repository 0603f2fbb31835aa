"""train.augment_preview and ``edge train show-augment``: the grid's layout, its first
column, determinism, and the PNG it writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from toolkit_cli.main import app
from train.augment import AugmentConfig
from train.augment_preview import GAP, augment_grid, pick_textured, write_png_atomic


def normalised_tiles(n: int = 3, c: int = 1, s: int = 8, seed: int = 0) -> torch.Tensor:
    unit = torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))
    return (unit - 0.5) / 0.25


def test_grid_shape_and_dtype():
    grid = augment_grid(normalised_tiles(3, s=8), AugmentConfig(), views=4, seed=0, scale=2)
    assert grid.dtype == np.uint8
    assert grid.shape == (3 * 16 + 2 * GAP, 5 * 16 + 4 * GAP)
    assert GAP == 2


def test_three_channel_grid_is_bgr_image():
    x = normalised_tiles(2, c=3, s=8)
    grid = augment_grid(x, AugmentConfig(), views=1, seed=0, scale=1,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert grid.shape == (2 * 8 + GAP, 2 * 8 + GAP, 3)


def test_first_column_is_the_denormalised_original():
    x = normalised_tiles(3, s=8)
    x[0, 0, 0, 0] = 10.0  # out of range: clipped to 255
    x[1, 0, 0, 0] = -10.0  # clipped to 0
    scale = 3
    grid = augment_grid(x, AugmentConfig(), views=2, seed=0, scale=scale)
    cell = 8 * scale
    expected = np.clip(np.round((x[:, 0].numpy() * 0.25 + 0.5) * 255), 0, 255).astype(np.uint8)
    for i in range(3):
        y0 = i * (cell + GAP)
        block = grid[y0 : y0 + cell, :cell]
        np.testing.assert_array_equal(block, np.kron(expected[i], np.ones((scale, scale),
                                                                           dtype=np.uint8)))
    assert grid[0, 0] == 255 and grid[cell + GAP, 0] == 0
    # Gaps are black, and augmented columns differ from the original.
    assert (grid[cell : cell + GAP] == 0).all()
    assert (grid[:, cell : cell + GAP] == 0).all()
    assert not np.array_equal(grid[:cell, cell + GAP : 2 * cell + GAP], grid[:cell, :cell])


def test_same_seed_same_grid_other_seed_differs():
    x = normalised_tiles(4, s=8)
    a = augment_grid(x, AugmentConfig(), views=3, seed=7, scale=1)
    b = augment_grid(x, AugmentConfig(), views=3, seed=7, scale=1)
    c = augment_grid(x, AugmentConfig(), views=3, seed=8, scale=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        augment_grid(torch.zeros(2, 8, 8), AugmentConfig(), views=1, seed=0, scale=1)
    with pytest.raises(ValueError):
        augment_grid(normalised_tiles(1, c=3), AugmentConfig(), views=1, seed=0, scale=1)


def test_png_decodes_to_the_grid(tmp_path):
    grid = augment_grid(normalised_tiles(2, s=8), AugmentConfig(), views=2, seed=0, scale=2)
    path = write_png_atomic(tmp_path / "sub" / "grid.png", grid)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, grid)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary left


def test_pick_textured_prefers_high_std_spread_tiles():
    tiles = np.zeros((100, 1, 4, 4), dtype=np.float32)
    tiles[::3, 0, 0, 0] = np.arange(34, dtype=np.float32)  # textured tiles, rising std
    picks = pick_textured(tiles, 5)
    assert len(picks) == 5 and list(picks) == sorted(picks)
    assert (tiles[picks].std(axis=(1, 2, 3)) > 0).all()
    assert list(pick_textured(tiles[:3], 5)) == [0, 1, 2]


def test_show_augment_command_writes_png(ai4mars_root, tmp_path):
    out = tmp_path / "aug.png"
    result = CliRunner().invoke(app, ["train", "show-augment", "--data", str(ai4mars_root),
                                      "--out", str(out), "--tiles", "3", "--views", "2",
                                      "--scale", "2", "--max-frames", "2"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    cell = 32 * 2  # default 32-px tiles
    assert image.shape == (3 * cell + 2 * GAP, 3 * cell + 2 * GAP)


def test_show_augment_with_missing_data_exits_1(tmp_path):
    missing = tmp_path / "no-data"
    result = CliRunner().invoke(app, ["train", "show-augment", "--data", str(missing),
                                      "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 1
    assert "error: " in result.output and str(missing) in result.output
    assert not (tmp_path / "a.png").exists()
