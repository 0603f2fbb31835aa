"""Batch augmentations as tensor operations (they run wherever the batch is).

Defaults suit grey Mars terrain tiles: random resized crops, any of the eight
flips/90-degree rotations (terrain seen from a mast or orbit has no canonical up),
brightness/contrast jitter, occasional blur, and sensor-like noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation (in units of the normalised input)."""

    min_scale: float = 0.35
    brightness: float = 0.4
    contrast: float = 0.4
    blur_prob: float = 0.3
    noise_std: float = 0.05


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur, x (B, C, H, W), sigma (B,)."""
    radius = 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, K)
    b, c, h, w = x.shape
    flat = x.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, 0)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"),
                    k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"),
                    k[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def _blur_some(x: torch.Tensor, blur: torch.Tensor, sigma: torch.Tensor,
               select_on_device: bool) -> torch.Tensor:
    """x (B, C, H, W) with the tiles where ``blur`` (B,) bool holds blurred by their ``sigma``
    (B,). ``select_on_device``: blur every tile and keep the chosen ones with ``torch.where``
    (no host sync, for GPUs); otherwise blur only the chosen tiles (less work, for CPUs). Both
    give the same result: each tile's blur depends on that tile alone."""
    if select_on_device:
        return torch.where(blur[:, None, None, None], _gaussian_blur(x, sigma), x)
    if not blur.any():
        return x
    out = x.clone()
    out[blur] = _gaussian_blur(x[blur], sigma[blur])
    return out


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """One random view of each tile: x (B, C, S, S) normalised -> (B, C, S, S)."""
    b = x.shape[0]
    dev, dt = x.device, x.dtype

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev, dtype=dt)

    # Random resized crop + dihedral group, as one affine sampling grid.
    scale = torch.sqrt(cfg.min_scale + (1 - cfg.min_scale) * rand(b))
    k = torch.floor(rand(b) * 4)
    cos, sin = torch.cos(k * torch.pi / 2), torch.sin(k * torch.pi / 2)
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0).to(dt)
    tx, ty = (1 - scale) * (2 * rand(b) - 1), (1 - scale) * (2 * rand(b) - 1)
    theta = torch.stack([
        torch.stack([scale * cos * flip, -scale * sin, tx], 1),
        torch.stack([scale * sin * flip, scale * cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # Brightness and contrast around each tile's mean.
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + cfg.contrast * (2 * rand(b, 1, 1, 1) - 1)
    bright = cfg.brightness * (2 * rand(b, 1, 1, 1) - 1)
    out = (out - mean) * contrast + mean + bright
    # Occasional blur, then noise.
    if cfg.blur_prob > 0:
        blur = rand(b) < cfg.blur_prob
        sigma = 0.5 + rand(b)
        out = _blur_some(out, blur, sigma, select_on_device=dev.type == "cuda")
    if cfg.noise_std > 0:
        out = out + cfg.noise_std * rand(b, 1, 1, 1) * torch.randn(
            out.shape, generator=generator, device=dev, dtype=dt)
    return out
