"""Student architecture and the parameter / MAC counter over ONNX graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from export.onnx_export import to_onnx_bytes
from export.student import Student, StudentConfig, count_onnx_graph


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, 2, 1)  # 32x32 -> 16x16
        self.b = nn.Conv2d(8, 16, 3, 1, 1, groups=2)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc(x.mean((2, 3)))


def test_counter_matches_closed_form():
    size = count_onnx_graph(to_onnx_bytes(TwoConvs().eval(), torch.zeros(1, 1, 32, 32), 17))
    conv_a = 16 * 16 * 8 * 1 * 9
    conv_b = 16 * 16 * 16 * (8 // 2) * 9
    fc = 16 * 4
    assert size["macs"] == conv_a + conv_b + fc
    assert size["flops"] == 2 * size["macs"]
    assert size["per_op"]["Conv"] == conv_a + conv_b
    params = (8 * 9 + 8) + (16 * 4 * 9 + 16) + (16 * 4 + 4)
    assert size["parameters"] == params


def test_default_student_is_within_the_limits():
    model = Student(StudentConfig(), 4).eval()
    size = count_onnx_graph(to_onnx_bytes(model, torch.zeros(1, 1, 32, 32), 17))
    # stem 16x16x16x9, stage 1 2x(16x16x16x16x9), stage 2 (8x8x32x(16+32)x9 + 8x8x32x16),
    # stage 3 (4x4x64x(32+64)x9 + 4x4x64x32), head 64x4
    macs = (256 * 16 * 9 + 2 * 256 * 16 * 16 * 9 + 64 * 32 * 48 * 9 + 64 * 32 * 16
            + 16 * 64 * 96 * 9 + 16 * 64 * 32 + 64 * 4)
    assert size["macs"] == macs
    assert size["parameters"] <= 1_000_000 and size["mflops"] <= 20
    assert model(torch.zeros(3, 1, 32, 32)).shape == (3, 4)
    assert model.features(torch.zeros(3, 1, 32, 32)).shape == (3, 64)


def test_config_round_trip_and_validation():
    cfg = StudentConfig(widths=(8, 16), blocks=(1, 2))
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        StudentConfig(widths=(8, 16), blocks=(1,))
