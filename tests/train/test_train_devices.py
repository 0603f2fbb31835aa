"""train.device.pick_device: where training runs (CUDA paths checked with torch.cuda patched,
so they run on the CPU-only CI too)."""

from __future__ import annotations

import pytest
import torch

from edge.cpu_info import CpuInfo
from train.device import autocast_context, autocast_dtype, cpu_precision_note, pick_device
from train.pretrain import PretrainConfig, TrainingError, pretrain


def test_cpu_is_taken_as_named() -> None:
    assert pick_device("cpu") == torch.device("cpu")


def test_auto_is_cuda_only_where_there_is_a_gpu() -> None:
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def _one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_each_local_rank_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _one_gpu(monkeypatch)
    assert pick_device("auto", 0) == torch.device("cuda", 0)
    assert pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("cpu", 1) == torch.device("cpu")  # gloo ranks need no GPU


def test_a_rank_without_a_gpu_is_refused_with_a_message(monkeypatch) -> None:
    _one_gpu(monkeypatch)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1 but only 1 GPU\(s\) are visible"):
        pick_device("auto", 1)


def test_unknown_device_is_refused_by_pretraining_before_any_data(tmp_path) -> None:
    with pytest.raises(ValueError, match="choose auto, cpu, cuda"):
        pick_device("tpu")
    with pytest.raises(TrainingError, match="device 'tpu'"):
        pretrain(PretrainConfig(out_dir=str(tmp_path / "run"), device="tpu"))
    assert not (tmp_path / "run").exists()


def test_autocast_dtype_keeps_a_cpu_in_float32_unless_asked() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype(cpu) is None and autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cuda) is torch.bfloat16 and autocast_dtype(cuda, "fp32") is None
    with pytest.raises(ValueError, match="precision 'fp16'"):
        autocast_dtype(cpu, "fp16")


def test_autocast_context_runs_bf16_on_the_cpu() -> None:
    x = torch.ones(2, 3)
    with autocast_context(torch.device("cpu"), torch.bfloat16):
        y = torch.nn.functional.linear(x, torch.ones(4, 3))
    assert y.dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), None):
        assert torch.nn.functional.linear(x, torch.ones(4, 3)).dtype == torch.float32


def test_cpu_precision_note_says_native_or_emulated(monkeypatch) -> None:
    import train.device as device

    def with_features(*features):
        return CpuInfo("test CPU", "x86_64", features, None)

    monkeypatch.setattr(device, "cpu_info", lambda: with_features("avx2", "avx512_bf16"))
    assert cpu_precision_note() == "bfloat16 autocast on the CPU, native (avx512_bf16)"
    monkeypatch.setattr(device, "cpu_info", lambda: with_features("avx2"))
    assert cpu_precision_note().startswith("warning: bfloat16 autocast on a CPU without native")
