"""Resolution invariance on a real frame: a 256x256 Navcam frame and the same frame upscaled to
1024x1024 give the same tile grid (boxes scaled by 4), nearly the same network input, and the
same labels on at least 90% of the tiles."""

from __future__ import annotations

import pytest
from integration_support import check_resolution_invariance

from train.datasets.ai4mars import load_ai4mars


@pytest.mark.integration
@pytest.mark.slow
def test_upscaled_frame_gets_the_same_grid_and_labels(pipeline, ai4mars_root, tmp_path):
    frame_id = load_ai4mars(ai4mars_root).splits()["val"][0]
    src = ai4mars_root / "images" / f"{frame_id}.jpg"
    agreement = check_resolution_invariance(str(pipeline.bundle), src, tmp_path)
    # Note: the probe of the pipeline saw only the first 24 train frames, which hold soil tiles
    # only, so this bundle labels nearly every tile soil and the label agreement is weak
    # evidence; the network-input check above is the strict one. The same check runs on the
    # shipped default bundle in test_integration_default_bundle.py.
    assert agreement >= 0.9
