"""ResNet-style encoders for tiles, the SimCLR projection head and the exported classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """A ResNet of ``len(blocks)`` stages; stage i has ``width * 2**i`` channels and
    ``blocks[i]`` basic blocks, stride 2 from the second stage on."""

    in_channels: int = 1
    width: int = 16
    blocks: tuple[int, ...] = (1, 1, 1)

    @property
    def feature_dim(self) -> int:
        """Dimension of the pooled feature vector."""
        return self.width * 2 ** (len(self.blocks) - 1)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


ENCODER_PRESETS = {
    "tiny": EncoderConfig(width=16, blocks=(1, 1, 1)),
    "small": EncoderConfig(width=32, blocks=(1, 1, 1)),
    "resnet18": EncoderConfig(width=64, blocks=(2, 2, 2, 2)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H/stride, W/stride)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.skip(x))


class Encoder(nn.Module):
    """Tiles (B, C, S, S) -> features (B, feature_dim)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, w, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = w
        for i, n in enumerate(config.blocks):
            cout = w * 2**i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, feature_dim)."""
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


class ProjectionHead(nn.Module):
    """SimCLR MLP: features (B, D) -> embeddings (B, out_dim)."""

    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, out_dim)."""
        return self.net(h)


class TileClassifier(nn.Module):
    """Encoder + linear head: tiles (B, C, S, S) -> logits (B, K). What gets exported."""

    def __init__(self, encoder: Encoder, head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, K)."""
        return self.head(self.encoder(tiles))
