"""train.augment: shapes, determinism, and the eight flips/rotations."""

from __future__ import annotations

import pytest
import torch

from train.augment import AugmentConfig, _blur_some, _gaussian_blur, augment

GEOMETRY_ONLY = AugmentConfig(min_scale=1.0, brightness=0.0, contrast=0.0, blur_prob=0.0,
                              noise_std=0.0)


def tiles(b: int = 6, c: int = 1, s: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed))


def dihedral(t: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/flips of (..., S, S)."""
    rots = [torch.rot90(t, k, dims=(-2, -1)) for k in range(4)]
    return rots + [torch.flip(r, dims=(-1,)) for r in rots]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("shape", "dtype"), [((6, 1, 16, 16), torch.float32),
                                              ((3, 3, 32, 32), torch.float32),
                                              ((2, 1, 8, 8), torch.float64)])
def test_shape_dtype_and_finite(shape, dtype):
    x = torch.randn(*shape, generator=gen(0)).to(dtype)
    before = x.clone()
    out = augment(x, AugmentConfig(blur_prob=1.0), gen(1))
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert torch.equal(x, before)  # the input is not changed in place


def test_deterministic_with_a_seeded_generator():
    x = tiles()
    assert torch.equal(augment(x, AugmentConfig(), gen(3)), augment(x, AugmentConfig(), gen(3)))


def test_successive_calls_and_seeds_differ():
    x = tiles()
    g = gen(3)
    a, b = augment(x, AugmentConfig(), g), augment(x, AugmentConfig(), g)
    assert not torch.allclose(a, b)
    assert not torch.allclose(augment(x, AugmentConfig(), gen(4)), a)


def test_each_tile_gets_its_own_view():
    x = tiles(b=1).repeat(8, 1, 1, 1)
    out = augment(x, AugmentConfig(), gen(0))
    assert len({tuple(o.flatten()[:5].tolist()) for o in out}) == 8


def test_geometry_only_views_are_the_eight_dihedral_transforms():
    tile = tiles(b=1, s=12, seed=5)
    x = tile.repeat(64, 1, 1, 1)
    out = augment(x, GEOMETRY_ONLY, gen(0))
    candidates = dihedral(tile[0])
    seen = set()
    for view in out:
        matches = [k for k, c in enumerate(candidates) if torch.allclose(view, c, atol=1e-4)]
        assert len(matches) == 1, "a view is not exactly one rotation/flip of the tile"
        seen.add(matches[0])
    assert seen == set(range(8))


def test_crops_interpolate_within_the_input_range():
    x = tiles(b=16, s=16, seed=2)
    cfg = AugmentConfig(min_scale=0.35, brightness=0.0, contrast=0.0, blur_prob=0.0,
                        noise_std=0.0)
    out = augment(x, cfg, gen(0))
    for o, t in zip(out, x, strict=True):
        assert o.min() >= t.min() - 1e-5
        assert o.max() <= t.max() + 1e-5
        assert not any(torch.allclose(o, c, atol=1e-4) for c in dihedral(t))


def test_brightness_is_a_bounded_shift_per_tile():
    x = tiles(b=32)
    cfg = AugmentConfig(min_scale=1.0, brightness=0.4, contrast=0.0, blur_prob=0.0,
                        noise_std=0.0)
    ref = augment(x, GEOMETRY_ONLY, gen(7))
    out = augment(x, cfg, gen(7))  # same draws for the geometry
    shift = (out - ref).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)
    assert shift.abs().max() <= 0.4 + 1e-6
    assert shift[:, 0].std() > 0.05


def test_contrast_scales_around_the_tile_mean():
    x = tiles(b=32)
    cfg = AugmentConfig(min_scale=1.0, brightness=0.0, contrast=0.4, blur_prob=0.0,
                        noise_std=0.0)
    ref = augment(x, GEOMETRY_ONLY, gen(7))
    out = augment(x, cfg, gen(7))
    mean = ref.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean(dim=(1, 2, 3), keepdim=True), mean, atol=1e-5)
    factor = ((out - mean).flatten(1) / (ref - mean).flatten(1)).median(1).values
    assert ((factor >= 0.6 - 1e-4) & (factor <= 1.4 + 1e-4)).all()


def test_noise_is_bounded_by_noise_std():
    x = tiles(b=32, s=32)
    cfg = AugmentConfig(min_scale=1.0, brightness=0.0, contrast=0.0, blur_prob=0.0,
                        noise_std=0.05)
    ref = augment(x, GEOMETRY_ONLY, gen(7))
    noise = augment(x, cfg, gen(7)) - ref
    std = noise.flatten(1).std(1)
    assert (std <= 0.05 * 1.2).all()
    assert std.max() > 0.01


def test_blur_smooths():
    x = tiles(b=8, s=32)
    sharp = augment(x, GEOMETRY_ONLY, gen(1))
    blurred = augment(x, AugmentConfig(min_scale=1.0, brightness=0.0, contrast=0.0,
                                       blur_prob=1.0, noise_std=0.0), gen(1))

    def roughness(t: torch.Tensor) -> torch.Tensor:
        return (t[..., 1:, :] - t[..., :-1, :]).abs().mean((1, 2, 3))

    assert (roughness(blurred) < 0.8 * roughness(sharp)).all()


def test_gaussian_blur_keeps_constants_and_mean():
    x = torch.full((2, 3, 8, 8), 0.7)
    assert torch.allclose(_gaussian_blur(x, torch.tensor([0.5, 1.5])), x, atol=1e-6)
    noise = tiles(b=2, c=3, s=16)
    out = _gaussian_blur(noise, torch.tensor([1.0, 1.0]))
    assert out.shape == noise.shape
    assert out.std() < noise.std()


@pytest.mark.parametrize("chosen", [[True, False, True, False, False, True], [False] * 6])
def test_blur_on_device_and_on_host_agree_and_leave_unchosen_tiles_alone(chosen):
    x = torch.randn(6, 1, 12, 12, generator=gen(3))
    blur = torch.tensor(chosen)
    sigma = 0.5 + torch.rand(6, generator=gen(4))
    on_device = _blur_some(x, blur, sigma, select_on_device=True)
    on_host = _blur_some(x, blur, sigma, select_on_device=False)
    torch.testing.assert_close(on_device, on_host, rtol=0, atol=1e-6)
    assert torch.equal(on_host[~blur], x[~blur])
    assert all(not torch.allclose(on_host[i], x[i]) for i in range(6) if chosen[i])
