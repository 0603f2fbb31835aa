"""Fixtures for the reliability tests: one tiny bundle per session."""

from __future__ import annotations

import pytest
from reliability_data import make_bundle

from edge.bundle import Bundle


@pytest.fixture(scope="session")
def rel_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A verified tiny bundle: grey 16-px network tiles, 4 classes, 32-px tiles at width 256."""
    return make_bundle(tmp_path_factory.mktemp("rel_bundles") / "tiny")
