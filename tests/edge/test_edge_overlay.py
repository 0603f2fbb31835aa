"""``--overlay``: per-frame PNGs tinted by class, and the HTML contact sheet."""

import re
from html.parser import HTMLParser
from urllib.parse import unquote

import cv2
import numpy as np
import pytest
from edge_images import synthetic_frame, write_frame
from tiny_model import CLASSES

from edge.overlay import (
    MAX_NAME,
    class_colours,
    grid_axes,
    overlay_file_name,
    render_overlay,
    to_display,
)
from edge.tiling import TilingSpec, crop_box, tile_boxes
from toolkit_cli.main import main


def test_overlay_file_names_are_safe_and_distinct():
    names = ["a.png", "sub/a.png", "sub_a.png", "clip.avi#000001", "x y,z.png", "../up.png",
             "k" * 400 + ".png", "k" * 400 + "!.png"]
    files = [overlay_file_name(n) for n in names]
    assert files[0] == "a.png.png" and files[1] == "sub%2Fa.png.png"
    assert len(set(files)) == len(files)
    for f in files:
        assert len(f.encode()) <= MAX_NAME + 20
        assert re.fullmatch(r"[A-Za-z0-9._~%-]+", f), f
    assert unquote(files[3][:-4]) == "clip.avi#000001"


@pytest.mark.parametrize("image", [
    np.full((8, 8), 200, np.uint8),
    np.full((8, 8), 200 * 257, np.uint16),
    np.full((8, 8, 3), 200, np.uint8),
    np.full((8, 8, 4), 200, np.uint8),
    np.full((8, 8, 3), 200 / 255, np.float32),
], ids=["grey8", "grey16", "bgr", "bgra", "float"])
def test_to_display_is_bgr_uint8(image):
    shown = to_display(image)
    assert shown.shape == (8, 8, 3) and shown.dtype == np.uint8
    assert np.abs(shown.astype(int) - 200).max() <= 1


@pytest.mark.parametrize("stride", [32, 16, 12])
def test_each_pixel_takes_the_nearest_tile_centre(stride):
    ref_boxes, _ = tile_boxes(256, 192, TilingSpec(256, 32, stride))
    iy, ix = grid_axes(ref_boxes, 512, 384)
    centres = ref_boxes[:, :2] + 16
    n_x = len(np.unique(ref_boxes[:, 0]))
    rng = np.random.default_rng(0)
    for y, x in zip(rng.integers(0, 384, 200), rng.integers(0, 512, 200), strict=True):
        p = np.array([(x + 0.5) / 2, (y + 0.5) / 2])  # display -> reference pixels
        dist = np.abs(centres - p).max(axis=1)
        assert dist[iy[y] * n_x + ix[x]] == pytest.approx(dist.min()), (y, x)


def test_render_tints_tiles_hatches_uncertain_and_adds_legend():
    image = np.full((256, 256), 128, np.uint8)
    ref_boxes, _ = tile_boxes(256, 256, TilingSpec(256, 32, 32))
    class_ids = np.arange(64) % 4
    uncertain = np.zeros(64, bool)
    uncertain[5] = True
    picture = render_overlay(image, ref_boxes, class_ids, uncertain, CLASSES, "f.png (64 tiles)",
                             show_uncertain=True)
    assert picture.dtype == np.uint8 and picture.shape[1] == 512  # small frames shown larger
    assert picture.shape[0] > 512  # legend strip under the frame
    colours = np.asarray(class_colours(CLASSES), float)
    for tile in (0, 1, 2, 3, 9):
        x, y = ref_boxes[tile, :2] * 2
        cell = picture[y + 8 : y + 56, x + 8 : x + 56].reshape(-1, 3).astype(float).mean(axis=0)
        nearest = np.argmin(np.abs(colours * 0.42 + 128 * 0.58 - cell).sum(axis=1))
        assert nearest == class_ids[tile], tile
    x, y = ref_boxes[5, :2] * 2
    hatched = picture[y + 4 : y + 60, x + 4 : x + 60]
    assert (hatched.min(axis=2) > 190).mean() > 0.2  # white stripes
    legend = picture[512:]
    assert np.median(legend) < 60 and legend.max() > 200  # dark strip with light text


def test_render_with_a_centre_square_crop_tints_only_the_crop():
    """A 512x256 frame with a centre-square bundle: the grid covers x 128-384 only, so
    tiles are drawn there and the unclassified sides are darkened, not tinted."""
    image = np.full((256, 512), 150, np.uint8)
    tiling = TilingSpec(256, 128, 128, "centre-square")
    crop = crop_box(512, 256, tiling)
    assert crop == (128, 0, 256, 256)
    ref_boxes, _ = tile_boxes(256, 256, tiling)
    class_ids = np.array([0, 1, 2, 3])
    picture = render_overlay(image, ref_boxes, class_ids, np.zeros(4, bool), CLASSES, "f",
                             crop=crop)
    assert picture.shape[1] == 512
    colours = np.asarray(class_colours(CLASSES), float)
    for tile, (x, y) in enumerate([(128, 0), (256, 0), (128, 128), (256, 128)]):
        cell = picture[y + 8 : y + 120, x + 8 : x + 120].reshape(-1, 3).astype(float).mean(0)
        np.testing.assert_allclose(cell, colours[class_ids[tile]] * 0.42 + 150 * 0.58, atol=1.5)
    for side in (picture[:256, :128], picture[:256, 384:]):
        assert (side == 50).all()  # darkened grey, no class colour


def test_cli_overlay_and_contact_sheet(tmp_path, tiny_bundle):
    src = tmp_path / "frames"
    write_frame(src / "a.png", synthetic_frame(256, 256))
    write_frame(src / "sub dir" / "b#1.tif", synthetic_frame(300, 400, 4, np.uint16))
    (src / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out"
    assert main(["classify", str(src), "--recursive", "--out", str(out), "--model",
                 str(tiny_bundle.path), "--overlay", "--min-confidence", "0.9", "-q"]) == 2
    pngs = sorted(p.name for p in (out / "overlays").iterdir())
    assert pngs == ["a.png.png", "sub%20dir%2Fb%231.tif.png"]
    picture = cv2.imread(str(out / "overlays" / pngs[1]))
    assert picture.shape[1] == 512 and picture.shape[0] > 384

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.hrefs, self.imgs = [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "a":
                self.hrefs.append(attrs["href"])
            if tag == "img":
                self.imgs.append(attrs["src"])

    html = (out / "contact_sheet.html").read_text()
    links = Links()
    links.feed(html)
    assert links.hrefs == links.imgs and len(links.hrefs) == 2
    for href in links.hrefs:
        assert (out / unquote(href)).is_file(), href
    assert "c.jpg: " in html and "3 frames" in html
    assert "uncertain" in html


def test_no_overlay_by_default(frames_dir, tmp_path, tiny_bundle):
    out = tmp_path / "out"
    assert main(["classify", str(frames_dir), "--out", str(out), "--model",
                 str(tiny_bundle.path), "-q"]) == 0
    assert not (out / "overlays").exists() and not (out / "contact_sheet.html").exists()
