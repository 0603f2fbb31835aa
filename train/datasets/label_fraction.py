"""Deterministic, class-stratified label-fraction sampling over groups (originals)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping

import numpy as np


def sample_fraction(labels: Mapping[Hashable, int], fraction: float, seed: int = 0) -> set:
    """Choose ``fraction`` of the keys of ``labels`` (key -> class id), per class.

    Each class with any key keeps ``max(1, round(fraction * n_class))`` keys, so no class
    disappears at small fractions. The draw depends only on (keys, labels, fraction, seed).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    by_class: dict[int, list] = defaultdict(list)
    for key in sorted(labels, key=str):
        by_class[labels[key]].append(key)
    rng = np.random.default_rng(seed)
    chosen: set = set()
    for cls in sorted(by_class):
        keys = by_class[cls]
        n = min(len(keys), max(1, round(fraction * len(keys))))
        picks = rng.permutation(len(keys))[:n]
        chosen.update(keys[i] for i in picks)
    return chosen
