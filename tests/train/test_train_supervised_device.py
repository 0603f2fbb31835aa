"""train.supervised.resolve_device: where the supervised baseline runs."""

from __future__ import annotations

import pytest
import torch

from train.supervised import resolve_device


def test_cpu_is_taken_as_named() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_cuda_only_where_there_is_a_gpu() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
