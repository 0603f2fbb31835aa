import cv2
import numpy as np
import pytest
from edge_images import synthetic_frame

from edge.preprocess import InputSpec, frame_to_tiles, to_unit_float
from edge.tiling import TilingError, TilingSpec, tile_boxes

GREY = InputSpec(tile_pixels=32, channels=1, mean=(0.5,), std=(0.25,))
BGR = InputSpec(tile_pixels=32, channels=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
TILING = TilingSpec(256, 32, 32)


@pytest.mark.parametrize("spec", [GREY, BGR], ids=["grey", "bgr"])
@pytest.mark.parametrize(("height", "width", "channels"),
                         [(256, 256, 0), (512, 512, 3), (300, 400, 4), (480, 640, 0), (97, 301, 3)])
def test_shapes_and_dtype(spec, height, width, channels):
    image = synthetic_frame(height, width, channels)
    tiled = frame_to_tiles(image, spec, TILING)
    _, boxes = tile_boxes(width, height, TILING)
    assert tiled.tiles.shape == (len(boxes), spec.channels, 32, 32)
    assert tiled.tiles.dtype == np.float32
    assert tiled.tiles.flags.c_contiguous
    assert np.isfinite(tiled.tiles).all()
    assert (tiled.boxes == boxes).all()
    assert (tiled.width, tiled.height) == (width, height)


def test_tile_is_normalised_crop_at_reference_size():
    image = synthetic_frame(256, 256)
    tiled = frame_to_tiles(image, GREY, TILING)
    for i in (0, 9, 63):
        x, y, w, h = tiled.boxes[i]
        crop = image[y : y + h, x : x + w].astype(np.float32) / 255.0
        np.testing.assert_allclose(tiled.tiles[i, 0], (crop - 0.5) / 0.25, rtol=0, atol=1e-5)


def test_bgr_tile_is_normalised_crop_per_channel():
    image = synthetic_frame(256, 256, 3)
    tiled = frame_to_tiles(image, BGR, TILING)
    x, y, w, h = tiled.boxes[10]
    crop = image[y : y + h, x : x + w].astype(np.float32) / 255.0
    for c in range(3):
        expected = (crop[:, :, c] - BGR.mean[c]) / BGR.std[c]
        np.testing.assert_allclose(tiled.tiles[10, c], expected, atol=1e-5)


def test_tile_pixels_differ_from_reference_tile():
    # 32-px reference tiles fed as 16-px network tiles: the frame is halved once.
    image = synthetic_frame(256, 256)
    spec = InputSpec(tile_pixels=16)
    tiled = frame_to_tiles(image, spec, TILING)
    small = cv2.resize(image.astype(np.float32) / 255.0, (128, 128), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(tiled.tiles[0, 0], (small[:16, :16] - 0.5) / 0.25, atol=1e-5)
    assert tiled.tiles.shape == (64, 1, 16, 16)


def test_uint16_and_uint8_of_same_picture():
    image8 = synthetic_frame(300, 400, 3)
    image16 = image8.astype(np.uint16) * 257  # 255 -> 65535
    a = frame_to_tiles(image8, GREY, TILING).tiles
    b = frame_to_tiles(image16, GREY, TILING).tiles
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_float_input_in_unit_range():
    image8 = synthetic_frame(256, 256)
    a = frame_to_tiles(image8, GREY, TILING).tiles
    b = frame_to_tiles(image8.astype(np.float32) / 255.0, GREY, TILING).tiles
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_1024_frame_matches_256_frame_of_same_scene():
    small = synthetic_frame(256, 256)
    big = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_NEAREST)
    a = frame_to_tiles(small, GREY, TILING)
    b = frame_to_tiles(big, GREY, TILING)
    assert (b.boxes == a.boxes * 4).all()
    np.testing.assert_allclose(a.tiles, b.tiles, atol=1e-4)


def test_grey_bgr_bgra_inputs_agree():
    bgr = synthetic_frame(256, 320, 3)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)])  # alpha is ignored
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    from_bgr = frame_to_tiles(bgr, GREY, TILING).tiles
    from_bgra = frame_to_tiles(bgra, GREY, TILING).tiles
    from_grey = frame_to_tiles(grey, GREY, TILING).tiles
    np.testing.assert_array_equal(from_bgr, from_bgra)
    np.testing.assert_allclose(from_bgr, from_grey, atol=1.5 / 255 / 0.25)  # grey is rounded
    three_bgr = frame_to_tiles(bgr, BGR, TILING).tiles
    three_bgra = frame_to_tiles(bgra, BGR, TILING).tiles
    np.testing.assert_array_equal(three_bgr, three_bgra)


def test_grey_frame_into_three_channel_network_repeats_channel():
    grey = synthetic_frame(256, 256)
    spec = InputSpec(channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    tiles = frame_to_tiles(grey, spec, TILING).tiles
    assert tiles.shape[1] == 3
    np.testing.assert_array_equal(tiles[:, 0], tiles[:, 1])
    np.testing.assert_array_equal(tiles[:, 0], tiles[:, 2])
    single = frame_to_tiles(grey[:, :, None], GREY, TILING).tiles  # (H, W, 1) also accepted
    np.testing.assert_allclose(tiles[:, :1], single, atol=1e-6)


def test_channel_order_is_bgr():
    image = np.zeros((256, 256, 3), np.uint8)
    image[:, :, 0] = 255  # pure blue in BGR
    tiles = frame_to_tiles(image, BGR, TILING).tiles
    np.testing.assert_allclose(tiles[:, 0], (1.0 - 0.4) / 0.2, atol=1e-5)
    np.testing.assert_allclose(tiles[:, 2], (0.0 - 0.6) / 0.3, atol=1e-5)


def test_deterministic():
    image = synthetic_frame(480, 640, 3)
    a = frame_to_tiles(image, BGR, TILING)
    b = frame_to_tiles(image.copy(), BGR, TILING)
    np.testing.assert_array_equal(a.tiles, b.tiles)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_input_not_modified():
    image = synthetic_frame(512, 512, 3)
    before = image.copy()
    frame_to_tiles(image, GREY, TILING)
    np.testing.assert_array_equal(image, before)


def test_too_small_frame_raises_tiling_error():
    with pytest.raises(TilingError):
        frame_to_tiles(synthetic_frame(20, 256), GREY, TILING)


@pytest.mark.parametrize("image", [np.zeros((64, 64), np.int32), np.zeros((64, 64, 2), np.uint8),
                                   np.zeros((64, 64, 5), np.uint8)], ids=["int32", "2ch", "5ch"])
def test_unsupported_pixels(image):
    with pytest.raises(ValueError):
        to_unit_float(image, 1)


@pytest.mark.parametrize("kwargs", [{"channels": 2, "mean": (0.5,) * 2, "std": (0.2,) * 2},
                                    {"channels": 3, "mean": (0.5,), "std": (0.2,)},
                                    {"channels": 1, "mean": (0.5,), "std": (0.0,)}])
def test_bad_input_spec(kwargs):
    with pytest.raises(ValueError):
        InputSpec(**kwargs)


def test_downscaling_averages_pixel_blocks():
    # A 1024-px frame is shrunk 4x to the 256-px reference: each network pixel is the mean of
    # a 4x4 block (area averaging, no aliasing of fine texture).
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1024, 1024), dtype=np.uint8)
    tiles = frame_to_tiles(image, GREY, TILING).tiles
    block = image[:128, :128].astype(np.float64).reshape(32, 4, 32, 4).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(tiles[0, 0], (block - 0.5) / 0.25, atol=1e-4)


@pytest.mark.parametrize(("height", "width"), [(90, 160), (160, 90), (100, 100)])
def test_centre_square_crop_is_one_tile_of_the_centred_square(height, width):
    frame = synthetic_frame(height, width, 1)
    spec = InputSpec(tile_pixels=16)
    whole = TilingSpec(227, 227, 227, crop="centre-square")
    tiled = frame_to_tiles(frame, spec, whole)
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frame[top:top + side, left:left + side]
    alone = frame_to_tiles(square, spec, TilingSpec(side, side, side))
    assert tiled.tiles.shape == (1, 1, 16, 16)
    np.testing.assert_array_equal(tiled.tiles, alone.tiles)
    assert tiled.boxes.tolist() == [[left, top, side, side]]
    assert (tiled.width, tiled.height) == (width, height)


def test_centre_square_grid_boxes_are_in_whole_frame_pixels():
    frame = synthetic_frame(64, 128, 1)
    tiled = frame_to_tiles(frame, InputSpec(tile_pixels=8), TilingSpec(64, 32, 32,
                                                                       crop="centre-square"))
    assert tiled.boxes.tolist() == [[32, 0, 32, 32], [64, 0, 32, 32],
                                    [32, 32, 32, 32], [64, 32, 32, 32]]
