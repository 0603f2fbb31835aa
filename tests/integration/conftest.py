"""Fixtures for the integration tests on the real data in ``../shared/data``.

The data folder is ``<repo>/../shared/data`` (``MARS_DATA`` overrides it). Every test here
depends on :func:`mars_data`, which skips with the reason when the data is absent. The
session-scoped :func:`pipeline` trains, probes and exports a tiny model once through the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit_cli.main import main

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATASETS = ("msl-v2.1", "ai4mars-msl-ncam-256", "hirise-v1")


@pytest.fixture(scope="session")
def mars_data() -> Path:
    """The real data folder (holding the three datasets); skips when it is absent."""
    env = os.environ.get("MARS_DATA")
    root = Path(env).expanduser().resolve() if env else DEFAULT_DATA
    if not root.is_dir():
        where = "MARS_DATA" if env else "the default location (set MARS_DATA to override)"
        pytest.skip(f"real data not found at {root}: no such folder ({where})")
    missing = [name for name in DATASETS if not (root / name).is_dir()]
    if missing:
        pytest.skip(f"real data not found at {root}: missing {', '.join(missing)}")
    return root


@pytest.fixture(scope="session")
def ai4mars_root(mars_data: Path) -> Path:
    """The AI4Mars Navcam folder."""
    return mars_data / "ai4mars-msl-ncam-256"


@dataclass(frozen=True)
class Pipeline:
    """What the CLI pipeline wrote: run folder, encoder, probe checkpoint and bundle."""

    root: Path
    encoder: Path
    probe: Path
    bundle: Path


@pytest.fixture(scope="session")
def pipeline(ai4mars_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """``edge train pretrain`` -> ``edge train probe`` -> ``edge export onnx`` on the first
    24 train (and val) frames of the real AI4Mars data, each step checked for exit 0."""
    for module in ("torch", "onnx"):
        pytest.importorskip(module, reason="the pipeline needs the [train] extra (torch, onnx)")
    tmp = tmp_path_factory.mktemp("pipeline")
    data = str(ai4mars_root)
    steps = [
        ["train", "pretrain", "--data", data, "--max-frames", "24", "--epochs", "1",
         "--batch-size", "64", "--out", str(tmp / "pt")],
        ["train", "probe", "--encoder", str(tmp / "pt" / "encoder.pt"), "--data", data,
         "--max-frames", "24", "--out", str(tmp / "probe.pt")],
        ["export", "onnx", "--checkpoint", str(tmp / "probe.pt"), "--data", data,
         "--out", str(tmp / "bundle"), "--check-frames", "2"],
    ]
    for argv in steps:
        code = main(argv)
        assert code == 0, f"`edge {' '.join(argv)}` exited {code} (see captured output)"
    return Pipeline(root=tmp, encoder=tmp / "pt" / "encoder.pt", probe=tmp / "probe.pt",
                    bundle=tmp / "bundle")
