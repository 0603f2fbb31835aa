"""Property-based tests (hypothesis) of the pure parts: tiling, preprocessing, label-fraction
sampling, report percentiles."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.latency import PERCENTILES, StreamingStats, summarize_ms
from edge.preprocess import InputSpec, frame_to_tiles
from edge.tiling import MAX_ASPECT, TilingError, TilingSpec, reference_size, tile_boxes
from firmware_sim.stats import PERCENTILES as SIM_PERCENTILES
from firmware_sim.stats import percentile_key, summarize
from train.datasets.label_fraction import sample_fraction

# derandomize: the same examples in every run (reproducible CI); no example database on disk
FAST = settings(max_examples=80, deadline=None, derandomize=True, database=None)


@st.composite
def tilings(draw: st.DrawFn) -> TilingSpec:
    ref = draw(st.integers(16, 512))
    tile = draw(st.integers(1, ref))
    stride = draw(st.integers(max(1, tile // 8), tile))  # the CLI refuses stride > tile
    return TilingSpec(reference_width=ref, tile=tile, stride=stride)


def _covers(intervals: set[tuple[int, int]], length: int) -> bool:
    """Do half-open intervals [a, a + n) cover [0, length)?"""
    reach = 0
    for start, size in sorted(intervals):
        if start > reach:
            return False
        reach = max(reach, start + size)
    return reach >= length


@FAST
@given(width=st.integers(1, 5000), height=st.integers(1, 5000), spec=tilings())
def test_tiling_covers_the_frame_with_boxes_inside_it(width, height, spec):
    ref_w, ref_h = reference_size(width, height, spec)
    try:
        ref_boxes, boxes = tile_boxes(width, height, spec)
    except TilingError as exc:  # refused only when less than a tile high, or far too tall
        assert ref_h < spec.tile or ref_h > MAX_ASPECT * ref_w, exc
        return
    assert ref_boxes.shape == boxes.shape and len(boxes) > 0
    x, y, w, h = boxes.T
    assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
    assert (x + w <= width).all() and (y + h <= height).all()
    rx, ry, rw, rh = ref_boxes.T
    assert (rw == spec.tile).all() and (rh == spec.tile).all()
    assert (rx >= 0).all() and (ry >= 0).all()
    assert (rx + rw <= ref_w).all() and (ry + rh <= ref_h).all()
    # the grid is a product of columns and rows: covering each axis covers the frame
    assert _covers(set(zip(x.tolist(), w.tolist(), strict=True)), width)
    assert _covers(set(zip(y.tolist(), h.tolist(), strict=True)), height)
    assert _covers(set(zip(rx.tolist(), rw.tolist(), strict=True)), ref_w)
    assert _covers(set(zip(ry.tolist(), rh.tolist(), strict=True)), ref_h)
    assert len({(a, b) for a, b in zip(rx.tolist(), ry.tolist(), strict=True)}) == len(ref_boxes)


@st.composite
def frames(draw: st.DrawFn) -> np.ndarray:
    height, width = draw(st.integers(2, 160)), draw(st.integers(2, 160))
    channels = draw(st.sampled_from([0, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    if dtype == np.float32:
        return rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@FAST
@given(image=frames(), channels=st.sampled_from([1, 3]), tile_pixels=st.sampled_from([8, 16]),
       spec=st.sampled_from([TilingSpec(64, 16, 16), TilingSpec(64, 16, 8),
                             TilingSpec(96, 32, 24)]))
def test_preprocessing_is_deterministic_and_shape_correct(image, channels, tile_pixels, spec):
    inp = InputSpec(tile_pixels=tile_pixels, channels=channels, mean=(0.5,) * channels,
                    std=(0.25,) * channels)
    height, width = image.shape[:2]
    try:
        first = frame_to_tiles(image, inp, spec)
    except TilingError:
        ref_h = reference_size(width, height, spec)[1]
        assert ref_h < spec.tile or ref_h > MAX_ASPECT * spec.reference_width
        return
    second = frame_to_tiles(image.copy(), inp, spec)
    n = len(first.boxes)
    assert first.tiles.shape == (n, channels, tile_pixels, tile_pixels)
    assert first.tiles.dtype == np.float32 and first.tiles.flags["C_CONTIGUOUS"]
    assert np.isfinite(first.tiles).all()
    # values in [0, 1] before normalisation: within [-mean/std, (1-mean)/std] (+ rounding)
    assert first.tiles.min() >= -2.0 - 1e-4 and first.tiles.max() <= 2.0 + 1e-4
    assert (first.width, first.height) == (width, height)
    np.testing.assert_array_equal(first.tiles, second.tiles)
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.boxes, tile_boxes(width, height, spec)[1])


label_maps = st.dictionaries(st.integers(0, 10_000), st.integers(0, 5), min_size=1, max_size=300)


@FAST
@given(labels=label_maps, fraction=st.floats(0.001, 1.0), seed=st.integers(0, 2**32 - 1))
def test_label_fraction_sampling_is_stratified_and_reproducible(labels, fraction, seed):
    chosen = sample_fraction(labels, fraction, seed)
    assert chosen <= set(labels)
    per_class = Counter(labels.values())
    got = Counter(labels[k] for k in chosen)
    for cls, n in per_class.items():  # every class kept, in proportion
        assert got[cls] == min(n, max(1, round(fraction * n)))
    assert sample_fraction(labels, fraction, seed) == chosen  # same inputs, same draw
    shuffled = dict(reversed(list(labels.items())))  # insertion order does not matter
    assert sample_fraction(shuffled, fraction, seed) == chosen


def test_label_fraction_depends_on_the_seed():
    labels = {i: i % 4 for i in range(400)}
    assert sample_fraction(labels, 0.1, 0) != sample_fraction(labels, 0.1, 1)


timings = st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=1, max_size=400)


def _monotone(summary: dict, keys: list[str]) -> None:
    values = [summary["min"], *(summary[k] for k in keys), summary["max"]]
    assert values == sorted(values), summary


@FAST
@given(values=timings)
def test_report_percentiles_are_monotone(values):
    keys = [f"p{p}" for p in PERCENTILES]
    exact = summarize_ms(values)
    _monotone(exact, keys)
    rounded = {round(v, 3) for v in values}
    assert all(exact[k] in rounded for k in keys)  # nearest rank: a value some frame had
    stream = StreamingStats()
    for v in values:
        stream.add(v)
    approx = stream.summary()
    _monotone(approx, keys)
    for k in keys:  # never optimistic, within the histogram's 0.5 %
        assert approx[k] >= exact[k] - 1e-3
        assert approx[k] <= exact[k] * 1.005 + 2e-3
    sim = summarize(values)
    _monotone(sim, [percentile_key(p) for p in SIM_PERCENTILES])
    assert sim["count"] == len(values)


@pytest.mark.parametrize("values", [[5.0], [0.0, 0.0], [1.0, 1e5]])
def test_report_percentiles_edge_cases(values):
    _monotone(summarize_ms(values), [f"p{p}" for p in PERCENTILES])
