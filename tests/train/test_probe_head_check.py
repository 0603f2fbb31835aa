"""scripts/probe_head_check.py: the heads it compares, on synthetic features."""

from __future__ import annotations

import numpy as np
import torch
from script_loader import load_script

from train.labelled_sets import LabelledSet

CLASSES = ["a", "b", "c"]


def _features(counts: list[int], spread: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Gaussian clusters around three orthogonal centres: features (N, 8), labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), counts)
    centres = np.eye(3, 8) * 3.0
    feats = centres[labels] + spread * rng.standard_normal((len(labels), 8))
    return torch.from_numpy(feats.astype(np.float32)), labels


def _set(labels: np.ndarray) -> LabelledSet:
    n = len(labels)
    return LabelledSet(np.zeros((n, 1, 2, 2), np.float32), labels, np.arange(n), CLASSES)


def test_every_head_separates_separable_classes():
    f_train, y_train = _features([60, 60, 60], 0.3, 0)
    f_val, y_val = _features([40, 40, 40], 0.3, 1)
    scores = load_script("probe_head_check").head_scores(
        f_train, f_val, _set(y_train), _set(y_val), np.arange(len(y_train)), 0, 200)
    assert set(scores) == {"linear-balanced", "linear-p0.75", "linear-p0.5", "linear-p0.25",
                           "linear-plain", "knn20", "knn200"}
    for name, s in scores.items():
        assert s["accuracy"] > 0.95 and s["mean_recall"] > 0.95, name


def test_the_balanced_head_favours_the_rare_class_and_the_plain_head_the_common_ones():
    # Overlapping classes, one rare in training: the class weights move the boundary towards
    # the common classes, so the rare class gains recall and the common ones lose it.
    f_train, y_train = _features([400, 400, 20], 2.0, 2)
    f_val, y_val = _features([400, 400, 400], 2.0, 3)
    scores = load_script("probe_head_check").head_scores(
        f_train, f_val, _set(y_train), _set(y_val), np.arange(len(y_train)), 0, 300)
    balanced, plain = scores["linear-balanced"]["recall"], scores["linear-plain"]["recall"]
    assert balanced["c"] > plain["c"] + 0.1
    assert balanced["a"] + balanced["b"] < plain["a"] + plain["b"]
    # Half-way weights land between the two.
    half = scores["linear-p0.5"]["recall"]
    assert plain["c"] < half["c"] < balanced["c"]
