"""train.datasets.label_fraction.sample_fraction: deterministic, stratified, no class lost."""

from __future__ import annotations

from collections import Counter

import pytest

from train.datasets.label_fraction import sample_fraction

# Class c has SIZES[c] keys; sizes chosen so that round(f * n) is never a .5 tie below.
SIZES = {0: 1, 1: 7, 2: 40, 3: 333}


def make_labels() -> dict[str, int]:
    return {f"img{c}_{i:03d}": c for c, n in SIZES.items() for i in range(n)}


def test_same_seed_same_draw_and_independent_of_insertion_order():
    labels = make_labels()
    shuffled = dict(reversed(list(labels.items())))
    a = sample_fraction(labels, 0.1, seed=3)
    assert a == sample_fraction(labels, 0.1, seed=3)
    assert a == sample_fraction(shuffled, 0.1, seed=3)


def test_different_seeds_draw_differently():
    labels = make_labels()
    draws = {frozenset(sample_fraction(labels, 0.1, seed=s)) for s in range(5)}
    assert len(draws) == 5


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.6])
def test_stratified_counts(fraction):
    labels = make_labels()
    chosen = sample_fraction(labels, fraction, seed=0)
    assert chosen <= set(labels)
    counts = Counter(labels[k] for k in chosen)
    for c, n in SIZES.items():
        assert counts[c] == max(1, round(fraction * n)), c


def test_every_class_kept_at_one_percent():
    labels = make_labels()
    chosen = sample_fraction(labels, 0.01, seed=1)
    assert {labels[k] for k in chosen} == set(SIZES)
    assert len(chosen) == 1 + 1 + 1 + 3


def test_fraction_one_keeps_everything():
    labels = make_labels()
    assert sample_fraction(labels, 1.0, seed=9) == set(labels)


def test_integer_keys_and_empty_input():
    labels = {i: i % 2 for i in range(20)}
    chosen = sample_fraction(labels, 0.5, seed=0)
    assert len(chosen) == 10
    assert Counter(labels[k] for k in chosen) == {0: 5, 1: 5}
    assert sample_fraction({}, 0.5) == set()


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, 2.0, float("nan")])
def test_bad_fractions_raise(fraction):
    with pytest.raises(ValueError, match="fraction"):
        sample_fraction(make_labels(), fraction)
