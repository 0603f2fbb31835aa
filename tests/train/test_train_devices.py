"""Where training runs: train.supervised.resolve_device and train.pretrain.training_device
(CUDA paths checked with torch.cuda patched, so they run on the CPU-only CI too)."""

from __future__ import annotations

import pytest
import torch

from train.pretrain import TrainingError, training_device
from train.supervised import resolve_device


def test_cpu_is_taken_as_named() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert training_device("cpu", 0) == torch.device("cpu")


def test_auto_is_cuda_only_where_there_is_a_gpu() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert training_device("auto", 0).type == want


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(TrainingError, match="CUDA is not available"):
        training_device("cuda", 0)


def _one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_each_local_rank_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _one_gpu(monkeypatch)
    assert training_device("auto", 0) == torch.device("cuda", 0)
    assert training_device("cpu", 1) == torch.device("cpu")  # gloo ranks need no GPU


def test_a_rank_without_a_gpu_is_refused_with_a_message(monkeypatch) -> None:
    _one_gpu(monkeypatch)
    with pytest.raises(TrainingError, match=r"LOCAL_RANK=1 but only 1 GPU\(s\) are visible"):
        training_device("auto", 1)


def test_unknown_device_is_refused() -> None:
    with pytest.raises(TrainingError, match="choose auto, cpu or cuda"):
        training_device("tpu", 0)
