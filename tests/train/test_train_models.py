"""train.models: encoder presets, projection head and the exported classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from train.models import (
    ENCODER_PRESETS,
    Encoder,
    EncoderConfig,
    ProjectionHead,
    TileClassifier,
)


@pytest.mark.parametrize("preset", sorted(ENCODER_PRESETS))
def test_encoder_presets_give_feature_dim(preset):
    cfg = ENCODER_PRESETS[preset]
    enc = Encoder(cfg).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, cfg.in_channels, 32, 32))
    assert out.shape == (2, cfg.feature_dim)
    assert torch.isfinite(out).all()


def test_feature_dims_and_config_dict():
    assert ENCODER_PRESETS["tiny"].feature_dim == 64
    assert ENCODER_PRESETS["small"].feature_dim == 128
    assert ENCODER_PRESETS["resnet18"].feature_dim == 512
    cfg = EncoderConfig(in_channels=3, width=8, blocks=(2, 1))
    assert cfg.feature_dim == 16
    assert cfg.to_dict() == {"in_channels": 3, "width": 8, "blocks": (2, 1)}


@pytest.mark.parametrize(("size", "channels"), [(16, 3), (32, 1), (40, 1)])
def test_encoder_pools_any_tile_size(size, channels):
    enc = Encoder(EncoderConfig(in_channels=channels, width=4, blocks=(1, 2, 1))).eval()
    with torch.no_grad():
        assert enc(torch.randn(3, channels, size, size)).shape == (3, 16)


def test_encoder_stages_downsample_from_the_second_on():
    enc = Encoder(EncoderConfig(width=4, blocks=(1, 1, 1)))
    strides = [blk.conv1.stride[0] for blk in enc.stages]
    assert strides == [1, 2, 2]


def test_projection_head_and_classifier_shapes():
    enc = Encoder(EncoderConfig(width=4, blocks=(1, 1)))
    head = ProjectionHead(enc.config.feature_dim, hidden=16, out_dim=7)
    assert head(enc(torch.randn(4, 1, 16, 16))).shape == (4, 7)
    clf = TileClassifier(enc, nn.Linear(enc.config.feature_dim, 4)).eval()
    with torch.no_grad():
        x = torch.randn(5, 1, 16, 16)
        logits = clf(x)
        assert logits.shape == (5, 4)
        assert torch.allclose(logits, clf.head(clf.encoder(x)))


def test_encoder_trains_end_to_end():
    enc = Encoder(EncoderConfig(width=4, blocks=(1,)))
    x = torch.randn(4, 1, 8, 8)
    enc(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
