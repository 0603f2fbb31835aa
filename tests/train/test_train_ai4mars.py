"""train.datasets.ai4mars: clock ids, the clock-ordered split, DESIGN.md's tile label rule,
and tiles cut through edge's own preprocessing."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
from train_fixtures import AI4MARS_CLOCKS, navcam_id, synthetic_mask, write_image

from edge.decode import read_image
from edge.preprocess import InputSpec, frame_to_tiles
from edge.tiling import TilingSpec
from train.datasets.ai4mars import (
    CLASSES,
    UNLABELLED,
    UNSCORED,
    TileSet,
    clock_of,
    load_ai4mars,
    split_by_clock,
    tile_reference_labels,
)
from train.datasets.errors import DatasetError

TILING = TilingSpec(reference_width=256, tile=32, stride=32)
SPEC = InputSpec(tile_pixels=32, channels=1, mean=(0.5,), std=(0.25,))


# --- clock ids ----------------------------------------------------------------------------

@pytest.mark.parametrize(("frame_id", "clock"), [
    ("NLA_397681586EDR_F0020000AUT_04096M1", 397681586),
    ("NRB_412345678EDR_F0000000NCAM00001M1", 412345678),
])
def test_clock_of(frame_id, clock):
    assert clock_of(frame_id) == clock


@pytest.mark.parametrize("frame_id", ["", "NLA_39768158EDR_x", "XLA_397681586EDR",
                                      "nla_397681586EDR", "0003ML0000000370100057E01_DRCL"])
def test_clock_of_rejects_other_ids(frame_id):
    with pytest.raises(DatasetError, match="not a Navcam product id"):
        clock_of(frame_id)


# --- clock-ordered split ------------------------------------------------------------------

def _ids(clocks: list[int]) -> list[str]:
    ids = [navcam_id(c, k) for k, c in enumerate(clocks)]
    random.Random(0).shuffle(ids)
    return ids


def _check_partition(split: dict[str, list[str]], ids: list[str]) -> None:
    ordered = sorted(ids, key=lambda i: (clock_of(i), i))
    assert split["train"] + split["val"] == ordered
    assert not set(split["train"]) & set(split["val"])
    if split["train"] and split["val"]:
        assert clock_of(split["train"][-1]) <= clock_of(split["val"][0])


def test_split_even_clocks_cuts_at_target():
    ids = _ids([1000 * k for k in range(100)])
    split = split_by_clock(ids, 0.2)
    _check_partition(split, ids)
    assert len(split["val"]) == 20


def test_split_cuts_at_largest_gap_within_window():
    clocks = [1000 * k for k in range(100)]
    for k in range(78, 100):  # a gap of 5000 before frame 78 (in the window 75..85)
        clocks[k] += 5000
    for k in range(50, 100):  # a larger gap before frame 50, outside the window
        clocks[k] += 90000
    ids = _ids(clocks)
    split = split_by_clock(ids, 0.2)
    _check_partition(split, ids)
    assert len(split["train"]) == 78
    assert len(split["val"]) == 22


def test_split_ties_break_towards_target():
    clocks = [1000 * k for k in range(100)]
    for start in (77, 82):  # equal gaps at 77 (3 from target 80) and 82 (2 from it)
        for k in range(start, 100):
            clocks[k] += 4000
    split = split_by_clock(_ids(clocks), 0.2)
    assert len(split["train"]) == 82


@pytest.mark.parametrize(("n", "fraction", "seed"), [(37, 0.2, 0), (200, 0.2, 1), (500, 0.1, 2),
                                                     (64, 0.3, 3)])
def test_split_fraction_about_right_on_random_clocks(n, fraction, seed):
    rng = random.Random(seed)
    clocks = sorted(rng.sample(range(10**8, 10**8 + 10**6), n))
    ids = _ids(clocks)
    split = split_by_clock(ids, fraction)
    _check_partition(split, ids)
    assert abs(len(split["val"]) / n - fraction) <= 0.05 + 1 / n
    assert split == split_by_clock(list(reversed(ids)), fraction)


def test_split_degenerate_sizes():
    assert split_by_clock([], 0.2) == {"train": [], "val": []}
    one = [navcam_id(5)]
    assert split_by_clock(one, 0.2) == {"train": one, "val": []}
    ids = _ids([10, 20, 30])
    assert split_by_clock(ids, 0.0)["val"] == []


def test_split_orders_equal_clocks_by_id():
    a, b = "NLA_397681586EDR_A", "NRA_397681586EDR_A"
    assert split_by_clock([b, a, navcam_id(1)], 0.0)["train"] == [navcam_id(1), a, b]


# --- reference labels per tile ------------------------------------------------------------

def _tile(mask: np.ndarray, index: int, tile: int = 32) -> np.ndarray:
    """Pixels of tile ``index`` (row-major on a 256-wide grid) of a 256-wide mask, flattened."""
    y, x = divmod(index, 256 // tile)
    return mask[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile].reshape(-1)


def _set_tile(mask: np.ndarray, index: int, pixels: np.ndarray) -> None:
    """Write 1024 pixels (flattened, row-major) into tile ``index`` of a 256x256 mask."""
    y, x = divmod(index, 8)
    mask[y * 32:(y + 1) * 32, x * 32:(x + 1) * 32] = pixels.reshape(32, 32)


def _pixels(*runs: tuple[int, int]) -> np.ndarray:
    """A tile's 1024 pixels from (value, count) runs; the rest unlabelled."""
    px = np.concatenate([np.full(n, v, dtype=np.uint8) for v, n in runs] + [np.zeros(0, np.uint8)])
    return np.concatenate([px, np.full(1024 - len(px), UNLABELLED, dtype=np.uint8)])


def _boundary_mask() -> tuple[np.ndarray, np.ndarray]:
    """256x256 mask with tiles at and just beyond the rule's boundaries; expected labels."""
    mask = np.full((256, 256), UNLABELLED, dtype=np.uint8)
    expected = np.full(64, UNSCORED, dtype=np.int64)
    cases = [
        (0, _pixels((1, 1024)), 1),                          # all labelled, one class
        (1, _pixels((2, 512)), 2),                           # exactly half labelled
        (2, _pixels((2, 511)), UNSCORED),                    # one pixel short of half
        (3, _pixels((0, 768), (3, 256)), 0),                 # majority exactly 3/4
        (4, _pixels((0, 767), (3, 257)), UNSCORED),          # one pixel short of 3/4
        (5, _pixels(), UNSCORED),                            # all unlabelled
        (6, _pixels((3, 384), (1, 128)), 3),                 # half labelled, 3/4 of those
        (7, _pixels((7, 100), (2, 924)), UNSCORED),          # a value that is no class
        (8, _pixels((0, 600), (1, 50), (2, 50)), 0),         # 600 of 700 labelled
        (9, _pixels((0, 256), (1, 256), (2, 256), (3, 256)), UNSCORED),  # no majority
        (10, _pixels((UNLABELLED, 300), (2, 724)), 2),       # unlabelled first, then labelled
    ]
    for index, pixels, label in cases:
        _set_tile(mask, index, pixels)
        expected[index] = label
    return mask, expected


def _rule_per_tile(mask: np.ndarray) -> np.ndarray:
    """The rule written out per tile, for a 256x256 mask."""
    out = []
    for i in range(64):
        px = _tile(mask, i)
        if np.isin(px, [0, 1, 2, 3, UNLABELLED], invert=True).any():
            out.append(UNSCORED)
            continue
        lab = px[px != UNLABELLED]
        if len(lab) < 512:
            out.append(UNSCORED)
            continue
        counts = np.bincount(lab, minlength=4)
        out.append(int(counts.argmax()) if counts.max() >= 0.75 * len(lab) else UNSCORED)
    return np.array(out)


def test_reference_labels_at_the_boundaries():
    mask, expected = _boundary_mask()
    labels = tile_reference_labels(mask, TILING)
    assert labels.dtype == np.int64
    assert labels.shape == (64,)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(labels, _rule_per_tile(mask))


def test_reference_labels_all_unlabelled_are_unscored():
    mask = np.full((256, 256), UNLABELLED, dtype=np.uint8)
    assert (tile_reference_labels(mask, TILING) == UNSCORED).all()


def test_reference_labels_of_random_masks_match_the_rule():
    rng = np.random.default_rng(0)
    for _ in range(3):
        blocks = rng.choice([0, 1, 2, 3, UNLABELLED], size=(64, 64),
                            p=[0.4, 0.2, 0.1, 0.1, 0.2]).astype(np.uint8)
        mask = np.kron(blocks, np.ones((4, 4), dtype=np.uint8))
        np.testing.assert_array_equal(tile_reference_labels(mask, TILING),
                                      _rule_per_tile(mask))


def test_mask_at_twice_the_reference_width_is_resized_to_it():
    mask, expected = _boundary_mask()
    big = np.kron(mask, np.ones((2, 2), dtype=np.uint8))
    assert big.shape == (512, 512)
    np.testing.assert_array_equal(tile_reference_labels(big, TILING), expected)


def test_small_mask_is_upscaled_to_the_reference_width():
    mask = synthetic_mask(3, size=64, block=8)
    blocks = mask[::8, ::8].astype(np.int64)
    expected = np.where(blocks == UNLABELLED, UNSCORED, blocks).ravel()
    np.testing.assert_array_equal(tile_reference_labels(mask, TILING), expected)


def test_non_square_mask_and_stride():
    mask = np.zeros((128, 256), dtype=np.uint8)
    mask[:, 128:] = 2
    labels = tile_reference_labels(mask, TILING)
    assert labels.shape == (4 * 8,)
    np.testing.assert_array_equal(labels.reshape(4, 8), [[0] * 4 + [2] * 4] * 4)
    overlapping = tile_reference_labels(mask, TilingSpec(256, 32, 16))
    assert overlapping.shape == (7 * 15,)
    # The tile straddling x = 112..144 is half and half: unscored.
    np.testing.assert_array_equal(overlapping.reshape(7, 15)[:, 7], UNSCORED)


# --- the dataset folder -------------------------------------------------------------------

def test_load_ai4mars_orders_ids_by_clock(ai4mars_root):
    ds = load_ai4mars(ai4mars_root)
    assert ds.ids == [navcam_id(c, k) for k, c in enumerate(AI4MARS_CLOCKS)]
    assert ds.classes == tuple(CLASSES)
    split = ds.splits(0.2)
    # The largest clock gap lies before the last two frames, where 20% of 12 cuts too.
    assert split["val"] == ds.ids[10:]
    assert ds.image_path(ds.ids[0]) == ai4mars_root / "images" / f"{ds.ids[0]}.jpg"
    assert ds.read_mask(ds.ids[0]).shape == (64, 64)


def test_load_tiles_match_edge_preprocessing_and_mask_labels(ai4mars_root):
    ds = load_ai4mars(ai4mars_root)
    ids = ds.ids[:3]
    got = ds.load_tiles(ids, SPEC, TILING)
    assert isinstance(got, TileSet)
    assert got.tiles.dtype == np.float32
    assert got.tiles.shape == (3 * 64, 1, 32, 32)
    assert got.ids == ids
    np.testing.assert_array_equal(got.frame, np.repeat(np.arange(3), 64))
    for k, frame_id in enumerate(ids):
        expected = frame_to_tiles(read_image(ds.image_path(frame_id)), SPEC, TILING).tiles
        np.testing.assert_array_equal(got.tiles[got.frame == k], expected)
        mask = ds.read_mask(frame_id)
        np.testing.assert_array_equal(got.labels[got.frame == k],
                                      tile_reference_labels(mask, TILING))
        # The synthetic mask's 8-px blocks become the 32-px reference tiles.
        blocks = mask[::8, ::8].astype(np.int64).ravel()
        np.testing.assert_array_equal(got.labels[got.frame == k],
                                      np.where(blocks == UNLABELLED, UNSCORED, blocks))
    scored = got.scored()
    assert (scored.labels != UNSCORED).all()
    assert len(scored.labels) == int((got.labels != UNSCORED).sum()) > 0
    np.testing.assert_array_equal(scored.tiles, got.tiles[got.labels != UNSCORED])


def test_load_tiles_without_labels_reads_no_masks(ai4mars_root, tmp_path):
    root = tmp_path / "ai4mars"
    shutil.copytree(ai4mars_root, root)
    ds = load_ai4mars(root)
    for p in (root / "masks").iterdir():
        p.unlink()
    got = ds.load_tiles(ds.ids[:2], SPEC, TILING, with_labels=False)
    assert got.tiles.shape == (128, 1, 32, 32)
    assert (got.labels == UNSCORED).all()
    with pytest.raises(DatasetError, match="unreadable or not a 1-channel mask") as err:
        ds.load_tiles(ds.ids[:2], SPEC, TILING)
    assert str(ds.mask_path(ds.ids[0])) in str(err.value)


def test_unreadable_frame_is_skipped_with_a_warning(ai4mars_root, tmp_path, capsys):
    root = tmp_path / "ai4mars"
    shutil.copytree(ai4mars_root, root)
    ds = load_ai4mars(root)
    bad = ds.image_path(ds.ids[1])
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    got = ds.load_tiles(ds.ids[:3], SPEC, TILING)
    out = capsys.readouterr().out
    assert "warning: skipping frame" in out
    assert str(bad) in out
    assert got.tiles.shape[0] == 2 * 64
    assert set(got.frame.tolist()) == {0, 2}
    assert got.ids == ds.ids[:3]


def test_no_readable_frame_raises(ai4mars_root, tmp_path):
    root = tmp_path / "ai4mars"
    shutil.copytree(ai4mars_root, root)
    ds = load_ai4mars(root)
    for frame_id in ds.ids[:2]:
        ds.image_path(frame_id).write_bytes(b"")
    with pytest.raises(DatasetError, match="none of the 2 requested frames is readable"):
        ds.load_tiles(ds.ids[:2], SPEC, TILING)


def test_colour_mask_is_refused(ai4mars_root, tmp_path):
    root = tmp_path / "ai4mars"
    shutil.copytree(ai4mars_root, root)
    ds = load_ai4mars(root)
    write_image(ds.mask_path(ds.ids[0]), np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match="1-channel"):
        ds.read_mask(ds.ids[0])


@pytest.mark.parametrize("missing", ["", "images", "masks", "train.txt"])
def test_load_ai4mars_missing_parts(ai4mars_root, tmp_path, missing):
    root = tmp_path / "ai4mars"
    shutil.copytree(ai4mars_root, root)
    target = root / missing if missing else root
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DatasetError, match="missing") as err:
        load_ai4mars(root)
    assert str(target) in str(err.value)


def test_load_ai4mars_empty_list_and_bad_id(tmp_path):
    root = tmp_path / "ai4mars"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "train.txt").write_text("\n")
    with pytest.raises(DatasetError, match="lists no ids") as err:
        load_ai4mars(root)
    assert str(root / "train.txt") in str(err.value)
    (root / "train.txt").write_text(f"{navcam_id(1)}\nnot_an_id\n")
    with pytest.raises(DatasetError, match="'not_an_id'"):
        load_ai4mars(root)
