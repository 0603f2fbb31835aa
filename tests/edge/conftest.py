"""Fixtures for the edge/ unit tests: tiny synthetic frames and a tiny ONNX bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
from edge_images import synthetic_frame, write_frame
from tiny_model import make_tiny_bundle

from edge.bundle import Bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A verified bundle: grey 32x32 tiles, 4 AI4Mars classes, 256-px reference, 32-px tiles."""
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture()
def frames_dir(tmp_path: Path) -> Path:
    """A folder with two good frames: a.png (256x256 grey) and b.jpg (512x512 BGR)."""
    folder = tmp_path / "frames"
    write_frame(folder / "a.png", synthetic_frame(256, 256))
    write_frame(folder / "b.jpg", synthetic_frame(512, 512, 3, seed=1))
    return folder
