"""Dataset loaders on the real data: counts, splits without leakage, label fractions, and
DESIGN.md's tile-label rule checked against an independent statement of it."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from integration_support import AI4MARS_CLASSES, rule_labels

from edge.tiling import TilingSpec
from toolkit_cli.main import main
from train.datasets.ai4mars import clock_of, load_ai4mars, tile_reference_labels
from train.datasets.hirise import load_hirise
from train.datasets.msl import load_msl


@pytest.fixture(scope="module")
def msl(mars_data):
    return load_msl(mars_data / "msl-v2.1")


@pytest.fixture(scope="module")
def ai4mars(mars_data):
    return load_ai4mars(mars_data / "ai4mars-msl-ncam-256")


# --------------------------------------------------------------------------- MSL v2.1


@pytest.mark.integration
def test_msl_counts_and_copies(msl):
    train, val = msl.splits["train"], msl.splits["val"]
    assert len(msl.classes) == 19
    assert len(train) == 5920
    assert len(val) == 300
    assert "test" not in msl.splits  # withheld
    train_files = {it.file for it in train}
    originals = {it.original for it in train}
    assert len(originals) == 2000
    # every copy's original is itself a row of the split, with the same label
    label_of = {it.file: it.label for it in train}
    for it in train:
        assert it.original in train_files, f"{it.file}: original {it.original} not in train"
        assert label_of[it.original] == it.label, it.file
    copies = [it for it in train if it.file != it.original]
    assert len(copies) == 5920 - 2000
    assert {re.search(r"-(fh|fv|r90|r180|r270)\.jpg$", it.file).group(1) for it in copies} \
        == {"fh", "fv", "r90", "r180", "r270"}
    # the val split holds no copies
    assert all(it.file == it.original for it in val)
    for it in train[:: len(train) // 20] + val[:: len(val) // 10]:
        assert msl.image_path(it).is_file(), msl.image_path(it)


@pytest.mark.integration
def test_msl_split_by_sol(msl):
    train_sols = [it.sol for it in msl.splits["train"]]
    val_sols = [it.sol for it in msl.splits["val"]]
    assert max(train_sols) < min(val_sols)
    assert 3 <= min(train_sols) and max(train_sols) <= 948
    assert 952 <= min(val_sols) and max(val_sols) <= 1918


@pytest.mark.integration
def test_msl_label_fraction_over_originals(msl):
    chosen = msl.label_fraction(0.1, seed=0)
    originals = {it.original for it in chosen}
    assert 180 <= len(originals) <= 220, len(originals)
    assert {it.label for it in chosen} == set(range(19))
    # copies follow their original: every train row of a chosen original is chosen
    by_original = defaultdict(set)
    for it in msl.splits["train"]:
        by_original[it.original].add(it.file)
    assert {it.file for it in chosen} == set().union(*(by_original[o] for o in originals))
    # deterministic for a seed, different for another
    again = msl.label_fraction(0.1, seed=0)
    assert [it.file for it in again] == [it.file for it in chosen]
    other = {it.original for it in msl.label_fraction(0.1, seed=1)}
    assert other != originals
    # stratified: each class keeps about 10% of its originals (at least one)
    per_class = Counter(label for label in {it.original: it.label
                                            for it in msl.splits["train"]}.values())
    got = Counter({it.original: it.label for it in chosen}.values())
    for cls, n in per_class.items():
        assert got[cls] == max(1, round(0.1 * n)), (msl.classes[cls], n, got[cls])


# --------------------------------------------------------------------------- AI4Mars


@pytest.mark.integration
def test_ai4mars_clock_ordered_split(ai4mars):
    assert len(ai4mars.ids) == 6000
    assert len(set(ai4mars.ids)) == 6000
    splits = ai4mars.splits()
    train, val = splits["train"], splits["val"]
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(ai4mars.ids)
    assert max(clock_of(i) for i in train) < min(clock_of(i) for i in val)
    assert 0.15 <= len(val) / 6000 <= 0.25, len(val)
    for frame_id in train[::1000] + val[::300]:
        assert ai4mars.image_path(frame_id).is_file()
        assert ai4mars.mask_path(frame_id).is_file()


@pytest.mark.integration
def test_ai4mars_tile_labels_follow_the_design_rule(ai4mars):
    tiling = TilingSpec(256, 32, 32)
    seen = Counter()
    for frame_id in ai4mars.ids[::750]:  # 8 masks spread over the clock range
        mask = ai4mars.read_mask(frame_id)
        assert mask.shape == (256, 256) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 255}
        got = tile_reference_labels(mask, tiling)
        expected = rule_labels(mask)
        assert got.tolist() == expected.tolist(), frame_id
        seen.update(AI4MARS_CLASSES[v] if v >= 0 else "unscored" for v in got.tolist())
        # the rule is resolution invariant: the same mask at 1024 px gives the same labels
        big = cv2.resize(mask, (1024, 1024), interpolation=cv2.INTER_NEAREST)
        assert tile_reference_labels(big, tiling).tolist() == got.tolist(), frame_id
    # the sample exercises scored and unscored tiles and more than one class
    assert seen["unscored"] > 0, seen
    assert sum(v for k, v in seen.items() if k != "unscored") > 0, seen
    assert len([k for k in seen if k != "unscored"]) >= 2, seen


@pytest.mark.integration
def test_ai4mars_rule_edge_cases_on_a_real_tile(ai4mars):
    """Exactly half labelled is scored; just under half is not; 3/4 majority is the cut."""
    mask = ai4mars.read_mask(ai4mars.ids[0]).copy()
    tiling = TilingSpec(256, 32, 32)
    tile = np.full((32, 32), 255, dtype=np.uint8)
    tile.flat[:512] = 2  # half labelled, all sand
    mask[:32, :32] = tile
    assert tile_reference_labels(mask, tiling)[0] == 2
    tile.flat[511] = 255  # one pixel under half
    mask[:32, :32] = tile
    assert tile_reference_labels(mask, tiling)[0] == -1
    tile = np.zeros((32, 32), dtype=np.uint8)
    tile.flat[:256] = 1  # 768 soil of 1024 labelled: exactly 3/4
    mask[:32, :32] = tile
    assert tile_reference_labels(mask, tiling)[0] == 0
    tile.flat[256] = 1  # 767 soil: under 3/4
    mask[:32, :32] = tile
    assert tile_reference_labels(mask, tiling)[0] == -1


# --------------------------------------------------------------------------- HiRISE


@pytest.mark.integration
def test_hirise_split_by_observation(mars_data):
    hi = load_hirise(mars_data / "hirise-v1")
    train, val = hi.splits["train"], hi.splits["val"]
    assert len(train) + len(val) == 3820
    assert len(hi.classes) == 7
    obs_train = {it.observation for it in train}
    obs_val = {it.observation for it in val}
    assert not obs_train & obs_val
    for it in train + val:
        assert re.fullmatch(r"(ESP|PSP|TRA)_\d{6}_\d{4}", it.observation), it.file
        assert it.file.startswith(it.observation + "_")
    assert 0.1 <= len(val) / 3820 <= 0.35, len(val)
    assert load_hirise(mars_data / "hirise-v1").splits == hi.splits  # deterministic
    for it in (train + val)[::400]:
        assert hi.image_path(it).is_file(), hi.image_path(it)


# --------------------------------------------------------------------------- edge data info


@pytest.mark.integration
@pytest.mark.slow
def test_data_info_cli(mars_data, ai4mars, capsys):
    assert main(["data", "info", str(mars_data)]) == 0
    out = capsys.readouterr().out
    for title in ("MSL v2.1 at", "AI4Mars Navcam at", "HiRISE v1 at"):
        assert title in out, out[:2000]
    assert "'train': 2000, 'val': 300" in out  # MSL originals per split
    totals = [line.split()[1:] for line in out.splitlines() if line.strip().startswith("total")]
    assert ["5920", "300"] in totals, totals
    hi = load_hirise(mars_data / "hirise-v1")
    assert [str(len(hi.splits["train"])), str(len(hi.splits["val"]))] in totals, totals
    # the AI4Mars val column equals the independent rule over every val mask
    val = ai4mars.splits()["val"]
    counts = Counter()
    for frame_id in val:
        labels = rule_labels(ai4mars.read_mask(frame_id))
        counts.update(labels[labels >= 0].tolist())
    section = out[out.index("AI4Mars Navcam at"):]
    section = section[: section.index("\n\n")] if "\n\n" in section else section
    rows = {line[:24].strip(): line[24:].split() for line in section.splitlines()[2:]}
    for c, name in enumerate(AI4MARS_CLASSES):
        assert int(rows[name][1]) == counts[c], (name, rows[name], counts)
    assert int(rows["total"][1]) == sum(counts.values())
