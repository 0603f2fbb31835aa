import numpy as np
import pytest

from edge.tiling import TilingError, TilingSpec, crop_box, reference_size, tile_boxes

SPECS = [
    TilingSpec(256, 32, 32),
    TilingSpec(256, 48, 40),  # stride does not divide the width
    TilingSpec(256, 32, 16),  # overlapping tiles
    TilingSpec(100, 30, 7),
    TilingSpec(64, 64, 64),  # one tile across
]
SIZES = [(256, 256), (1024, 1024), (640, 480), (480, 640), (257, 333), (97, 301), (1000, 400),
         (255, 254), (3000, 2000)]


def _covered(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for x, y, w, h in boxes:
        mask[y : y + h, x : x + w] = True
    return mask


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_boxes_inside_and_cover_frame(spec, width, height):
    ref_w, ref_h = reference_size(width, height, spec)
    if ref_h < spec.tile:
        with pytest.raises(TilingError):
            tile_boxes(width, height, spec)
        return
    ref_boxes, boxes = tile_boxes(width, height, spec)
    assert ref_boxes.dtype == np.int64 and boxes.dtype == np.int64
    assert ref_boxes.shape == boxes.shape and boxes.shape[1] == 4 and len(boxes) > 0
    # Reference boxes: full tiles inside the reference frame, covering it.
    assert (ref_boxes[:, 2:] == spec.tile).all()
    assert (ref_boxes[:, :2] >= 0).all()
    assert (ref_boxes[:, 0] + spec.tile <= ref_w).all()
    assert (ref_boxes[:, 1] + spec.tile <= ref_h).all()
    assert _covered(ref_boxes, ref_w, ref_h).all()
    # Original-pixel boxes: inside the frame, non-empty, covering every pixel.
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] > 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= width).all()
    assert (boxes[:, 1] + boxes[:, 3] <= height).all()
    assert _covered(boxes, width, height).all()
    # Row-major order, no duplicate tiles.
    order = np.lexsort((ref_boxes[:, 0], ref_boxes[:, 1]))
    assert (order == np.arange(len(order))).all()
    assert len({tuple(b) for b in ref_boxes}) == len(ref_boxes)


def test_stride_steps_and_far_edge_alignment():
    spec = TilingSpec(256, 48, 40)
    ref_boxes, _ = tile_boxes(256, 256, spec)
    xs = sorted(set(ref_boxes[:, 0].tolist()))
    # 0, 40, ..., 200, then one tile aligned to the far edge at 256 - 48.
    assert xs == [0, 40, 80, 120, 160, 200, 208]
    assert sorted(set(ref_boxes[:, 1].tolist())) == xs


def test_exact_multiple_has_no_extra_tile():
    ref_boxes, boxes = tile_boxes(256, 256, TilingSpec(256, 32, 32))
    assert len(ref_boxes) == 64
    assert (boxes == ref_boxes).all()  # reference scale is the frame's own


def test_overlapping_stride_counts():
    ref_boxes, _ = tile_boxes(256, 256, TilingSpec(256, 32, 16))
    assert len(ref_boxes) == 15 * 15


def test_1024_is_256_grid_scaled_by_4():
    spec = TilingSpec(256, 32, 32)
    ref_small, small = tile_boxes(256, 256, spec)
    ref_big, big = tile_boxes(1024, 1024, spec)
    assert (ref_small == ref_big).all()
    assert (big == small * 4).all()


def test_non_square_scales_per_axis():
    spec = TilingSpec(256, 32, 32)
    ref_boxes, boxes = tile_boxes(512, 384, spec)  # reference 256 x 192
    assert reference_size(512, 384, spec) == (256, 192)
    assert len(boxes) == 8 * 6
    assert (boxes == ref_boxes * 2).all()


def test_portrait_and_landscape():
    spec = TilingSpec(256, 32, 32)
    _, portrait = tile_boxes(256, 512, spec)
    _, landscape = tile_boxes(512, 256, spec)
    assert len(portrait) == 8 * 16  # reference 256 x 512
    assert len(landscape) == 8 * 4  # reference 256 x 128
    assert set(portrait[:, 2].tolist()) == {32} and set(landscape[:, 2].tolist()) == {64}


@pytest.mark.parametrize(("width", "height"), [(1000, 100), (256, 31), (512, 60), (10, 1)])
def test_frame_smaller_than_a_tile_at_reference_scale(width, height):
    with pytest.raises(TilingError, match="smaller than one tile"):
        tile_boxes(width, height, TilingSpec(256, 32, 32))


def test_small_frame_upscaled_is_fine():
    # 64x64 is upscaled to the 256 reference: 64 tiles of 8x8 original pixels.
    _, boxes = tile_boxes(64, 64, TilingSpec(256, 32, 32))
    assert len(boxes) == 64 and set(boxes[:, 2].tolist()) == {8}


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-5, 5)])
def test_empty_frame(width, height):
    with pytest.raises(TilingError):
        tile_boxes(width, height, TilingSpec())


@pytest.mark.parametrize("args", [(0, 32, 32), (256, 0, 32), (256, 32, 0), (16, 32, 32)])
def test_bad_spec(args):
    with pytest.raises(TilingError):
        TilingSpec(*args)


@pytest.mark.parametrize(("width", "height", "box"), [
    (300, 200, (50, 0, 200, 200)), (200, 301, (0, 50, 200, 200)), (64, 64, (0, 0, 64, 64)),
])
def test_centre_square_crop_box(width, height, box):
    assert crop_box(width, height, TilingSpec(32, 32, 32, crop="centre-square")) == box
    assert crop_box(width, height, TilingSpec(32, 32, 32)) == (0, 0, width, height)


def test_unknown_crop_refused():
    with pytest.raises(TilingError, match="crop"):
        TilingSpec(crop="middle")
