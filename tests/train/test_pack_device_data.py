"""scripts/pack_device_data.py: the loaders read from the packed parts exactly what they read
from the full data (synthetic folders)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from script_loader import load_script
from train_fixtures import AI4MARS_CLOCKS, make_ai4mars, make_hirise, make_msl, write_image

from train.labelled_sets import load_labelled, monitor_data
from train.pool import PoolConfig, load_pool
from train.tiles import TileDataConfig


def _full_data(root: Path) -> Path:
    make_ai4mars(root / "ai4mars-msl-ncam-256", AI4MARS_CLOCKS)
    make_msl(root / "msl-v2.1", with_images=True)
    for k, (file, cls) in enumerate(make_hirise(root / "hirise-v1", observations=10)):
        write_image(root / "hirise-v1" / "map-proj" / file,
                    np.full((24, 24), 40 + 60 * cls + k % 7, dtype=np.uint8))
    return root


def _pool(root: Path, frames: int):
    data = TileDataConfig(root=str(root / "ai4mars-msl-ncam-256"), tile_pixels=16,
                          max_train_frames=frames)
    return load_pool(PoolConfig(domains=(("ai4mars", 0.5), ("msl", 0.3), ("hirise", 0.2)),
                                ai4mars=data, msl_root=str(root / "msl-v2.1"),
                                hirise_root=str(root / "hirise-v1")), log=lambda _: None), data


def test_packed_parts_give_the_same_pool_monitor_and_msl_sets(tmp_path: Path) -> None:
    pack = load_script("pack_device_data")
    full = _full_data(tmp_path / "full")
    frames = 4
    assert pack.pack_msl(full, tmp_path / "msl", frames) > 0
    assert pack.pack_mix(full, tmp_path / "mix", frames) > 0
    merged = tmp_path / "merged"
    assert pack.pack_ai4mars_val(full, tmp_path / "ai4mars-val") > 0
    for part in ("msl", "mix", "ai4mars-val"):
        shutil.copytree(tmp_path / part, merged, dirs_exist_ok=True)
    # Only what the runs read was copied: fewer frames than the full folder holds (its train
    # frames beyond the pool's 4 are left behind).
    n_full = len(list((full / "ai4mars-msl-ncam-256" / "images").iterdir()))
    n_packed = len(list((merged / "ai4mars-msl-ncam-256" / "images").iterdir()))
    assert 0 < n_packed < n_full

    want, data = _pool(full, frames)
    got, packed_data = _pool(merged, frames)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_array_equal(got.labels, want.labels)
    # The ai4mars-val part alone holds every validation frame the benchmark evaluates on.
    val_only = replace(data, root=str(tmp_path / "ai4mars-val" / "ai4mars-msl-ncam-256"))
    a, b = load_labelled("ai4mars", "val", data, ""), load_labelled("ai4mars", "val", val_only, "")
    np.testing.assert_array_equal(b.inputs, a.inputs)
    np.testing.assert_array_equal(b.labels, a.labels)
    for split in ("train", "val"):
        # What the benchmark evaluates on AI4Mars (the pool's train frames, every val frame)...
        a = load_labelled("ai4mars", split, data, "")
        b = load_labelled("ai4mars", split, packed_data, "")
        np.testing.assert_array_equal(b.inputs, a.inputs)
        np.testing.assert_array_equal(b.labels, a.labels)
        # ...and what the kNN monitor reads.
        a = load_labelled("ai4mars", split, monitor_data(data), "")
        b = load_labelled("ai4mars", split, monitor_data(packed_data), "")
        np.testing.assert_array_equal(b.inputs, a.inputs)
        np.testing.assert_array_equal(b.labels, a.labels)
        a = load_labelled("msl-v2.1", split, data, str(full / "msl-v2.1"))
        b = load_labelled("msl-v2.1", split, packed_data, str(merged / "msl-v2.1"))
        np.testing.assert_array_equal(b.inputs, a.inputs)
        np.testing.assert_array_equal(b.labels, a.labels)
