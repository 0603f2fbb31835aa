"""train.datasets.info.dataset_info on synthetic dataset folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from train_fixtures import HIRISE_CLASSES, MSL_CLASSES, make_hirise, make_msl

from train.datasets.ai4mars import CLASSES, UNLABELLED, load_ai4mars
from train.datasets.errors import DatasetError
from train.datasets.info import dataset_info, detect


def _row(lines: list[str], name: str, columns: int = 2) -> list[int]:
    """The numbers of a table row by its first column's name."""
    for line in lines:
        parts = line.split()
        if " ".join(parts[:-columns]) == name:
            return [int(v) for v in parts[-columns:]]
    raise AssertionError(f"no row {name!r} in {lines}")


def test_msl_counts_per_split_and_class(msl_root):
    lines = dataset_info(msl_root)
    assert "MSL v2.1" in lines[0] and str(msl_root) in lines[0]
    assert "'train': 24" in lines[0] and "'val': 6" in lines[0]  # originals
    for c, name in enumerate(MSL_CLASSES):
        assert _row(lines, name) == [3 * 4 * (c + 1), 2]
    assert _row(lines, "total") == [72, 6]


def test_hirise_counts_split_by_observation(hirise_root):
    rows = make_hirise(hirise_root)
    lines = dataset_info(hirise_root)
    assert "HiRISE v1" in lines[0]
    totals = _row(lines, "total")
    assert sum(totals) == len(rows)
    for c, name in enumerate(HIRISE_CLASSES):
        assert sum(_row(lines, name)) == sum(1 for _, label in rows if label == c)


def test_ai4mars_counts_scored_tiles(ai4mars_root):
    lines = dataset_info(ai4mars_root)
    assert "AI4Mars Navcam" in lines[0] and "'train': 10" in lines[0] and "'val': 2" in lines[0]
    ds = load_ai4mars(ai4mars_root)
    split = ds.splits()
    for c, name in enumerate(CLASSES):
        expected = []
        for s in ("train", "val"):
            # Synthetic masks: one 8-px block per 32-px reference tile.
            blocks = [ds.read_mask(i)[::8, ::8] for i in split[s]]
            expected.append(int(sum((b == c).sum() for b in blocks)))
        assert _row(lines, name) == expected
    unlabelled = sum(int((ds.read_mask(i) == UNLABELLED).sum()) // 64 for i in ds.ids)
    assert sum(_row(lines, "total")) == 12 * 64 - unlabelled


def test_folder_of_datasets_reports_each(tmp_path, ai4mars_root):
    make_msl(tmp_path / "msl-v2.1")
    make_hirise(tmp_path / "hirise-v1")
    shutil.copytree(ai4mars_root, tmp_path / "ai4mars-msl-ncam-256")
    (tmp_path / "notes").mkdir()
    (tmp_path / "README.md").write_text("not a dataset\n")
    assert detect(tmp_path) is None
    assert detect(tmp_path / "msl-v2.1") == "msl"
    assert detect(tmp_path / "hirise-v1") == "hirise"
    assert detect(tmp_path / "ai4mars-msl-ncam-256") == "ai4mars"
    lines = dataset_info(tmp_path)
    titles = [line for line in lines if line and not line.startswith(" ")]
    assert [t.split(" at ")[0] for t in titles] == ["AI4Mars Navcam", "HiRISE v1", "MSL v2.1"]
    assert lines[-1] == ""


def test_empty_folder_raises(tmp_path):
    with pytest.raises(DatasetError, match="holds no MSL v2.1, AI4Mars or HiRISE v1") as err:
        dataset_info(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_not_a_folder_raises(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        dataset_info(tmp_path / "nothing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        dataset_info(tmp_path / "file.txt")


def test_broken_dataset_in_a_folder_raises(tmp_path: Path):
    make_msl(tmp_path / "msl-v2.1")
    (tmp_path / "msl-v2.1" / "class_map.csv").unlink()
    with pytest.raises(DatasetError, match="class_map.csv"):
        dataset_info(tmp_path)

