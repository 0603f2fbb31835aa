"""train.knn_monitor.weighted_knn_predict, train.supervised.train_supervised and
LabelledSet.fraction (groups) on hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train.knn_monitor import weighted_knn_predict
from train.labelled_sets import LabelledSet
from train.supervised import SupervisedConfig, train_supervised

# --- weighted kNN ---------------------------------------------------------------------------

BANK = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.1, 0.9, 0.0],
                     [0.0, 0.0, 1.0], [0.0, 0.1, 0.9]])
BANK_LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
QUERY = torch.tensor([[2.0, 0.1, 0.0], [0.0, 3.0, 0.2], [0.1, 0.0, 0.5], [0.95, 0.05, 0.0]])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_knn_predicts_separable_clusters_exactly(k):
    pred = weighted_knn_predict(BANK, BANK_LABELS, QUERY, num_classes=3, k=k)
    assert pred.dtype == torch.int64 and pred.shape == (4,)
    assert pred.tolist() == [0, 1, 2, 0]


def test_knn_with_k_larger_than_the_bank_uses_the_whole_bank():
    # The default temperature: the near cluster's votes dominate the far ones.
    pred = weighted_knn_predict(BANK, BANK_LABELS, QUERY, num_classes=5, k=50)
    assert pred.tolist() == [0, 1, 2, 0]
    # A tiny bank and a k far past it.
    pred = weighted_knn_predict(BANK[:2], BANK_LABELS[:2], QUERY, num_classes=3, k=1000)
    assert pred.tolist() == [0, 0, 0, 0]


def test_knn_votes_are_weighted_by_similarity():
    # The nearest neighbour is class 1, the next two (slightly farther) are class 0.
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.3], [0.9, -0.3]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    assert weighted_knn_predict(bank, labels, query, 2, k=1).tolist() == [1]
    # Nearly uniform weights (high temperature): two votes beat one.
    assert weighted_knn_predict(bank, labels, query, 2, k=3, temperature=10.0).tolist() == [0]
    # Sharp weights (low temperature: exp(sim / T) alone would overflow float32 to inf and
    # tie the classes): the nearest one wins.
    assert weighted_knn_predict(bank, labels, query, 2, k=3, temperature=0.01).tolist() == [1]


def test_knn_ignores_feature_scale():
    pred = weighted_knn_predict(BANK * 100, BANK_LABELS, QUERY * 0.01, num_classes=3, k=2)
    assert pred.tolist() == [0, 1, 2, 0]


# --- supervised baseline --------------------------------------------------------------------

def bright_dark(n_per_class: int, seed: int, size: int = 16) -> LabelledSet:
    """Class 0: dark 16 px tiles, class 1: bright ones (normalised units, a little noise)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(2), n_per_class)
    level = np.where(labels == 0, -2.0, 2.0).astype(np.float32)
    inputs = (level[:, None, None, None]
              + rng.normal(0, 0.1, (len(labels), 1, size, size))).astype(np.float32)
    return LabelledSet(inputs, labels.astype(np.int64), np.arange(len(labels)), ["dark", "bright"])


def test_supervised_learns_a_separable_case():
    train, val = bright_dark(24, seed=0), bright_dark(10, seed=1)
    m = train_supervised(train, val, SupervisedConfig(steps=30, batch_size=16, seed=0),
                         min_support=1)
    for key in ("accuracy", "mean_recall", "per_class_recall", "confusion", "train_items",
                "seconds"):
        assert key in m, key
    assert m["train_items"] == 48
    assert m["accuracy"] > 0.9
    assert math.isfinite(m["mean_recall"]) and m["mean_recall"] > 0.9
    assert sum(map(sum, m["confusion"])) == 20


def test_supervised_learns_under_bf16_autocast_on_the_cpu():
    train, val = bright_dark(24, seed=0), bright_dark(10, seed=1)
    cfg = SupervisedConfig(steps=30, batch_size=16, seed=0, precision="bf16")
    assert train_supervised(train, val, cfg, min_support=1)["accuracy"] > 0.9
    with pytest.raises(ValueError, match="precision 'fp16'"):
        train_supervised(train, val, SupervisedConfig(steps=1, precision="fp16"), min_support=1)


def test_supervised_evaluates_the_same_model_on_extra_sets():
    train, val = bright_dark(24, seed=0), bright_dark(10, seed=1)
    swapped = LabelledSet(val.inputs, 1 - val.labels, val.groups, val.classes)
    m = train_supervised(train, val, SupervisedConfig(steps=30, batch_size=16, seed=0),
                         min_support=1, also_evaluate={"same": val, "swapped": swapped})
    assert m["same"]["confusion"] == m["confusion"]
    assert m["swapped"]["accuracy"] == pytest.approx(1 - m["accuracy"])


def test_supervised_is_deterministic_for_a_seed():
    train, val = bright_dark(8, seed=0), bright_dark(4, seed=1)
    cfg = SupervisedConfig(steps=3, batch_size=8, seed=3)
    a = train_supervised(train, val, cfg, min_support=1)
    b = train_supervised(train, val, cfg, min_support=1)
    assert a["confusion"] == b["confusion"] and a["accuracy"] == b["accuracy"]


# --- label fractions over groups ------------------------------------------------------------

def grouped_set() -> LabelledSet:
    """MSL-like: originals with copies (3 items per group); class 0 has 10 groups, class 1
    has 2, class 2 has 1."""
    groups, labels = [], []
    for cls, n_groups in enumerate((10, 2, 1)):
        for g in range(n_groups):
            groups += [f"c{cls}g{g}"] * 3
            labels += [cls] * 3
    n = len(labels)
    return LabelledSet(np.zeros((n, 1, 4, 4), np.float32), np.array(labels, np.int64),
                       np.array(groups), ["a", "b", "c"])


@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_fraction_takes_whole_groups_and_keeps_every_class(fraction, seed):
    ls = grouped_set()
    idx = ls.fraction(fraction, seed)
    assert idx.dtype == np.int64 and len(np.unique(idx)) == len(idx)
    chosen = set(ls.groups[idx].tolist())
    # Every item of a chosen group is in, none of the others.
    expected = np.flatnonzero([g in chosen for g in ls.groups.tolist()])
    np.testing.assert_array_equal(np.sort(idx), expected)
    # Every class keeps at least one group.
    assert set(ls.labels[idx].tolist()) == {0, 1, 2}
    if fraction == 1.0:
        assert len(idx) == len(ls.labels)
    if fraction == 0.01:
        assert len(chosen) == 3  # one group per class
    np.testing.assert_array_equal(idx, ls.fraction(fraction, seed))  # deterministic


def test_fraction_of_a_subset_follows_its_groups():
    ls = grouped_set()
    sub = ls.subset(ls.fraction(0.5, seed=0))
    assert len(sub.inputs) == len(sub.labels) == len(sub.groups)
    assert len(sub.labels) % 3 == 0  # whole groups of 3
    assert sub.classes == ls.classes
