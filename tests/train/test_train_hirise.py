"""train.datasets.hirise: observation ids and the split by observation."""

from __future__ import annotations

import shutil

import pytest
from train_fixtures import HIRISE_CLASSES, make_hirise

from train.datasets.errors import DatasetError
from train.datasets.hirise import load_hirise, observation_of, split_of


@pytest.mark.parametrize(("file", "obs"), [
    ("ESP_011283_2265_RED-0032.jpg", "ESP_011283_2265"),
    ("ESP_017541_1600_RED-0103-r90.jpg", "ESP_017541_1600"),
    ("PSP_001234_1800_RED-0001.jpg", "PSP_001234_1800"),
])
def test_observation_of(file, obs):
    assert observation_of(file) == obs


def test_split_of_is_deterministic_and_respects_fraction():
    obs = [f"ESP_{i:06d}_{1000 + i % 900:04d}" for i in range(2000)]
    first = [split_of(o) for o in obs]
    assert first == [split_of(o) for o in obs]
    assert set(first) == {"train", "val"}
    assert 0.17 < first.count("val") / len(obs) < 0.23
    assert {split_of(o, 0.0) for o in obs} == {"train"}
    assert {split_of(o, 1.0) for o in obs} == {"val"}


def test_load_splits_by_observation(hirise_root):
    rows = make_hirise(hirise_root)  # same content as the fixture wrote
    ds = load_hirise(hirise_root)
    assert ds.classes == HIRISE_CLASSES
    items = ds.splits["train"] + ds.splits["val"]
    assert sorted((it.file, it.label) for it in items) == sorted(rows)
    train_obs = {it.observation for it in ds.splits["train"]}
    val_obs = {it.observation for it in ds.splits["val"]}
    assert train_obs and val_obs
    assert not train_obs & val_obs
    for split, its in ds.splits.items():
        for it in its:
            assert it.observation == observation_of(it.file)
            assert split_of(it.observation) == split
    assert ds.image_path(items[0]) == hirise_root / "map-proj" / items[0].file


def test_load_is_deterministic(hirise_root):
    assert load_hirise(hirise_root).splits == load_hirise(hirise_root).splits


def test_val_fraction_parameter(hirise_root):
    ds = load_hirise(hirise_root, val_fraction=0.0)
    assert not ds.splits["val"]
    assert len(ds.splits["train"]) == 120


@pytest.mark.parametrize("missing", ["", "map-proj", "class_map.csv", "labels-map-proj.txt"])
def test_missing_parts_raise_naming_the_path(hirise_root, missing):
    target = hirise_root / missing if missing else hirise_root
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DatasetError, match="missing") as err:
        load_hirise(hirise_root)
    assert str(target) in str(err.value)


def test_bad_label_line_names_path_and_line(hirise_root):
    path = hirise_root / "labels-map-proj.txt"
    lines = path.read_text().splitlines()
    lines[4] = "ESP_011283_2265_RED-0032.jpg 9"
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match="class id 9 outside 0..2") as err:
        load_hirise(hirise_root)
    assert f"{path}:5:" in str(err.value)
