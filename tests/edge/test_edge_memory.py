"""Memory stays flat on a long stream: frames are streamed, never all held."""

import tracemalloc

import pytest
from edge_images import synthetic_frame
from tiny_model import make_tiny_bundle

from edge.classify import FrameClassifier
from edge.options import ClassifyOptions
from edge.run import classify_frames
from edge.runners import make_runner
from edge.sources import FrameRef
from edge.tiling import TilingSpec

N_FRAMES = 2500
# Until about frame 1000 the traced memory still rises by ~100 kB (allocator and library
# caches filling), then it stays flat: the baseline is taken once they are warm.
EARLY = 1000


def _stream(n):
    """A generator source: ``n`` small frames, each decoded (copied) only when loaded."""
    image = synthetic_frame(64, 64)
    for i in range(n):
        yield FrameRef(f"cam/{i:06d}.png", lambda: image.copy())


class PeakProbe:
    """Observer that records the traced peak once EARLY frames are done, and at the end."""

    def __init__(self):
        self.seen = 0
        self.early_peak = None

    def start(self, total):
        pass

    def frame(self, name, error, resumed):
        self.seen += 1
        if self.seen == EARLY:
            self.early_peak = tracemalloc.get_traced_memory()[1]

    def finish(self):
        pass


@pytest.mark.slow
def test_traced_memory_does_not_grow_with_frames(tmp_path):
    # 64-px reference width: 4 tiles per frame keeps the long stream quick
    bundle = make_tiny_bundle(tmp_path / "b", tiling=TilingSpec(64, 32, 32))
    classifier = FrameClassifier(bundle, make_runner(bundle))
    probe = PeakProbe()
    options = ClassifyOptions("generator", out_dir=tmp_path / "out", formats=("jsonl", "csv"))
    tracemalloc.start()
    try:
        summary = classify_frames(_stream(N_FRAMES), classifier, options, observer=probe)
        _, final_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.frames == N_FRAMES and summary.tiles == 4 * N_FRAMES
    growth = final_peak - probe.early_peak
    # 1500 more frames: a per-frame leak of even 25 bytes would show as 37 kB
    assert growth < 32 * 1024, f"traced peak grew by {growth} bytes after frame {EARLY}"
