"""Fixtures for the train/ unit tests: tiny synthetic dataset folders (builders live in
``train_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_fixtures import AI4MARS_CLOCKS, make_ai4mars, make_hirise, make_msl


@pytest.fixture(scope="session")
def ai4mars_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames of 64x64 with masks (read-only: copy before changing it)."""
    root = tmp_path_factory.mktemp("ai4mars") / "ai4mars-msl-ncam-256"
    make_ai4mars(root, AI4MARS_CLOCKS)
    return root


@pytest.fixture()
def msl_root(tmp_path: Path) -> Path:
    """An MSL v2.1 folder without a test split."""
    root = tmp_path / "msl-v2.1"
    make_msl(root)
    return root


@pytest.fixture()
def hirise_root(tmp_path: Path) -> Path:
    """A HiRISE v1 folder of 40 observations."""
    root = tmp_path / "hirise-v1"
    make_hirise(root)
    return root


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: the tensors here are tiny, and the CI box may be busy."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _one_faiss_thread() -> None:
    """faiss k-means on one OpenMP thread (tiny data; the CI box may be busy)."""
    try:
        import faiss
    except ImportError:  # the tests that cluster then fail with the install hint
        return
    faiss.omp_set_num_threads(1)
