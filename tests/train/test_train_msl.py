"""train.datasets.msl on a synthetic MSL v2.1 folder."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from train_fixtures import MSL_CLASSES, make_msl, msl_file

from train.datasets.errors import DatasetError
from train.datasets.msl import load_msl, original_of


@pytest.mark.parametrize(("name", "original"), [
    ("0003ML0000000370100057E01_DRCL-fh.jpg", "0003ML0000000370100057E01_DRCL.jpg"),
    ("0003ML0000000370100057E01_DRCL-fv.jpg", "0003ML0000000370100057E01_DRCL.jpg"),
    ("0003ML0000000370100057E01_DRCL-r90.jpg", "0003ML0000000370100057E01_DRCL.jpg"),
    ("0003ML0000000370100057E01_DRCL-r180.JPG", "0003ML0000000370100057E01_DRCL.JPG"),
    ("0003ML0000000370100057E01_DRCL-r270.png", "0003ML0000000370100057E01_DRCL.png"),
    ("0003ML0000000370100057E01_DRCL.jpg", "0003ML0000000370100057E01_DRCL.jpg"),
    # Only a suffix right before the extension marks a copy.
    ("0003ML-fh0000000370100057E01_DRCL.jpg", "0003ML-fh0000000370100057E01_DRCL.jpg"),
    ("0003ML0000000370100057E01_DRCL-r45.jpg", "0003ML0000000370100057E01_DRCL-r45.jpg"),
])
def test_original_of(name, original):
    assert original_of(name) == original


def test_loads_splits_classes_and_groups_copies_with_their_original(msl_root):
    rows = make_msl(msl_root)  # same content again: the fixture's folder
    ds = load_msl(msl_root)
    assert ds.classes == MSL_CLASSES
    assert set(ds.splits) == {"train", "val"}  # test withheld
    assert len(ds.splits["train"]) == len(rows["train"]) == 3 * (4 + 8 + 12)
    assert len(ds.splits["val"]) == 6
    by_original: dict[str, list] = {}
    for it in ds.splits["train"]:
        by_original.setdefault(it.original, []).append(it)
        assert it.sol == int(it.file[:4])
        assert ds.image_path(it) == msl_root / "images" / it.file
    assert len(by_original) == 24
    for original, items in by_original.items():
        assert sorted(it.file for it in items) == sorted(
            [original, original.replace(".jpg", "-fh.jpg"), original.replace(".jpg", "-r90.jpg")])
        assert len({it.label for it in items}) == 1


def test_test_split_loaded_when_present(tmp_path):
    make_msl(tmp_path / "msl", with_test=True)
    ds = load_msl(tmp_path / "msl")
    assert set(ds.splits) == {"train", "val", "test"}
    assert len(ds.splits["test"]) == 3


def test_label_fraction_draws_over_originals_and_copies_follow(msl_root):
    ds = load_msl(msl_root)
    picked = ds.label_fraction(0.25, seed=0)
    originals = {it.original for it in picked}
    # Stratified over originals: classes have 4, 8 and 12 originals -> 1, 2 and 3 drawn.
    labels = {it.original: it.label for it in picked}
    assert Counter(labels.values()) == {0: 1, 1: 2, 2: 3}
    # Every copy of a chosen original comes along, and nothing else.
    expected = [it for it in ds.splits["train"] if it.original in originals]
    assert picked == expected
    assert len(picked) == 3 * len(originals)
    assert picked == ds.label_fraction(0.25, seed=0)
    assert {it.original for it in ds.label_fraction(0.25, seed=1)} != originals
    assert ds.label_fraction(1.0) == ds.splits["train"]
    assert len(ds.label_fraction(0.5, split="val")) == 3


@pytest.mark.parametrize("missing", ["", "images", "class_map.csv", "train-set-v2.1.txt",
                                     "val-set-v2.1.txt"])
def test_missing_parts_raise_naming_the_path(msl_root, missing):
    target = msl_root / missing if missing else msl_root
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DatasetError, match="missing") as err:
        load_msl(msl_root)
    assert str(target) in str(err.value)


def _append_line(path: Path, line: str) -> int:
    """Append ``line`` to a list file; returns its line number."""
    lines = path.read_text().splitlines()
    lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.mark.parametrize(("line", "message"), [
    ("0003ML0000000370100057E01_DRCL.jpg", "expected '<file> <class id>'"),
    ("0003ML0000000370100057E01_DRCL.jpg 1 extra", "expected '<file> <class id>'"),
    ("0003ML0000000370100057E01_DRCL.jpg one", "expected '<file> <class id>'"),
    ("0003ML0000000370100057E01_DRCL.jpg 3", "class id 3 outside 0..2"),
    ("0003ML0000000370100057E01_DRCL.jpg -1", "class id -1 outside 0..2"),
    ("ML0000000370100057E01_DRCL.jpg 1", "4-digit sol"),
])
def test_malformed_list_lines_raise_naming_path_and_line(msl_root, line, message):
    path = msl_root / "train-set-v2.1.txt"
    lineno = _append_line(path, line)
    with pytest.raises(DatasetError, match=message) as err:
        load_msl(msl_root)
    assert f"{path}:{lineno}:" in str(err.value)


@pytest.mark.parametrize(("content", "message"), [
    ("0,a\nx,b\n", "class_map.csv:2: expected '<id>,<name>'"),
    ("0,a\n2,b\n", "class ids must run 0..1"),
])
def test_malformed_class_map(msl_root, content, message):
    (msl_root / "class_map.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_msl(msl_root)


def test_val_file_names_need_a_sol_too(msl_root):
    path = msl_root / "val-set-v2.1.txt"
    lineno = _append_line(path, f"{msl_file(5, 1)[4:]} 0")
    with pytest.raises(DatasetError, match="4-digit sol") as err:
        load_msl(msl_root)
    assert f"{path}:{lineno}:" in str(err.value)
