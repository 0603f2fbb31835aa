"""Fixtures for the simulator tests (builders live in ``sim_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_fixtures import tiny_manifest, tiny_onnx_bytes, write_frames

from edge.bundle import Bundle, write_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A verified bundle folder holding the tiny model."""
    out = tmp_path_factory.mktemp("sim_bundle") / "tiny"
    return write_bundle(out, tiny_onnx_bytes(), tiny_manifest())


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    """Four good frames."""
    return write_frames(tmp_path / "frames")


@pytest.fixture
def frames_with_corrupt(tmp_path: Path) -> Path:
    """Four good frames and one corrupt file, sorted second."""
    return write_frames(tmp_path / "frames_bad", corrupt=True)
