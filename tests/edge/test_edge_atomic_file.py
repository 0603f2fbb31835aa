"""edge.atomic_file: a file appears whole under its name, or the old one stays."""

from __future__ import annotations

import os
import stat

import pytest

from edge.atomic_file import atomic_open, write_bytes_atomic


def test_write_bytes_atomic_creates_folder_and_content(tmp_path):
    path = write_bytes_atomic(tmp_path / "a" / "b.bin", b"payload")
    assert path.read_bytes() == b"payload"
    assert os.listdir(tmp_path / "a") == ["b.bin"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as fh:
        fh.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_permissions_follow_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_bytes_atomic(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError), atomic_open(tmp_path / "x", "a"):
        pass
