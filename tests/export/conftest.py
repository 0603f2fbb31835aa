"""Fixtures for the export/ unit tests (builders live in ``export_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_fixtures import distill_student, make_ai4mars, train_probe


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: the tensors here are tiny, and the CI box may be busy."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ai4mars_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic 64x64 AI4Mars frames with masks (read-only)."""
    root = tmp_path_factory.mktemp("export_data") / "ai4mars-msl-ncam-256"
    make_ai4mars(root)
    return root


@pytest.fixture(scope="session")
def trained(ai4mars_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Encoder and probe checkpoints from a tiny real pretrain + probe run (read-only)."""
    torch.set_num_threads(1)
    encoder, probe = train_probe(ai4mars_dir, tmp_path_factory.mktemp("export_runs"))
    return {"encoder": encoder, "probe": probe}


@pytest.fixture(scope="session")
def student(trained: dict[str, Path], ai4mars_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny distilled student checkpoint and its fp32 bundle (read-only)."""
    ckpt, bundle = distill_student(ai4mars_dir, trained["probe"],
                                   tmp_path_factory.mktemp("student"))
    return {"checkpoint": ckpt, "bundle": bundle}
