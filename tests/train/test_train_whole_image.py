"""train.datasets.whole_image: an image's centred square through edge's preprocessing, and
loading a list of images with unreadable ones skipped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.preprocess import InputSpec, frame_to_tiles
from edge.tiling import TilingSpec
from train.datasets.errors import DatasetError
from train.datasets.whole_image import load_whole_images, whole_image_input

S = 16
SPEC = InputSpec(tile_pixels=S, channels=1, mean=(0.5,), std=(0.25,))


def norm(v: float) -> float:
    """A uint8 grey value as the network sees it under SPEC."""
    return (v / 255 - 0.5) / 0.25


def striped(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8, BGR channels equal: value 200 on the centred square of side
    min(h, w), 0 before it and 50 after it along the long side."""
    side = min(h, w)
    img = np.zeros((h, w, 3), dtype=np.uint8)
    if w >= h:
        left = (w - side) // 2
        img[:, left:left + side] = 200
        img[:, left + side:] = 50
    else:
        top = (h - side) // 2
        img[top:top + side] = 200
        img[top + side:] = 50
    return img


def centre_reference(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """frame_to_tiles on the centre square cut out by hand: one tile."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side]
    tiled = frame_to_tiles(square, spec, TilingSpec(reference_width=side, tile=side, stride=side))
    assert len(tiled.tiles) == 1
    return tiled.tiles[0]


@pytest.mark.parametrize("value", [0, 37, 128, 255])
@pytest.mark.parametrize(("h", "w"), [(60, 90), (90, 60), (40, 40), (8, 13), (100, 4), (1, 1)])
def test_constant_image_maps_to_normalised_value(value, h, w):
    out = whole_image_input(np.full((h, w, 3), value, dtype=np.uint8), SPEC)
    assert out.shape == (1, S, S) and out.dtype == np.float32
    assert np.allclose(out, norm(value), atol=1e-5)


@pytest.mark.parametrize(("h", "w"), [
    (60, 90),   # 1.5 x 1: a grid over the whole image would end with a far-edge tile
    (60, 150),  # 2.5 x 1
    (61, 100),  # odd margin
    (90, 60),   # portrait
    (200, 48),
    (12, 20),   # smaller than S: scaled up
])
def test_takes_the_centred_square(h, w):
    out = whole_image_input(striped(h, w), SPEC)
    assert out.shape == (1, S, S) and out.dtype == np.float32
    assert np.allclose(out, norm(200), atol=1e-5), "pixels from outside the centred square"


@pytest.mark.parametrize(("h", "w"), [(60, 90), (90, 61), (33, 33), (10, 25)])
def test_equals_frame_to_tiles_on_the_centre_square(h, w):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    out = whole_image_input(img, SPEC)
    assert out.shape == (1, S, S) and out.dtype == np.float32
    np.testing.assert_allclose(out, centre_reference(img, SPEC), atol=1e-6)


def test_grey_and_colour_specs():
    img = np.zeros((30, 45, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 100, 250  # B, G, R
    grey = whole_image_input(img[..., 1], SPEC)  # a 2-D grey image
    assert grey.shape == (1, S, S) and np.allclose(grey, norm(100), atol=1e-5)
    colour = InputSpec(tile_pixels=8, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    out = whole_image_input(img, colour)
    assert out.shape == (3, 8, 8)
    for c, v in enumerate((10, 100, 250)):
        assert np.allclose(out[c], norm(v), atol=1e-5)


def write_png(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_load_whole_images_skips_unreadable(tmp_path, capsys):
    a = write_png(tmp_path / "a.png", striped(40, 70))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 this is not a jpeg at all \x00\x01\x02" * 20 + b"\xff\xd9")
    b = write_png(tmp_path / "b.png", np.full((50, 30), 37, dtype=np.uint8))
    missing = tmp_path / "missing.png"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    x, ok = load_whole_images([a, junk, b, missing, empty], SPEC)
    assert ok.dtype == bool and ok.tolist() == [True, False, True, False, False]
    assert x.shape == (2, 1, S, S) and x.dtype == np.float32
    assert np.allclose(x[0], norm(200), atol=1e-5)
    assert np.allclose(x[1], norm(37), atol=1e-5)
    err = capsys.readouterr().out
    assert "junk.jpg" in err and "missing.png" in err and "empty.jpg" in err


def test_load_whole_images_matches_whole_image_input(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in ((30, 50, 3), (45, 20, 3))]
    paths = [write_png(tmp_path / f"{i}.png", im) for i, im in enumerate(imgs)]
    x, ok = load_whole_images(paths, SPEC)
    assert ok.all()
    for got, im in zip(x, imgs, strict=True):
        np.testing.assert_allclose(got, whole_image_input(im, SPEC), atol=1e-6)


def test_load_whole_images_none_readable_raises(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="none of the 2"):
        load_whole_images([junk, tmp_path / "missing.jpg"], SPEC)
    with pytest.raises(DatasetError, match="none of the 0"):
        load_whole_images([], SPEC)
