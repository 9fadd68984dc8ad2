"""Channel rounding: multiples of round_to (or whole groups), best-scored, target met closely."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.pruning.rounding import round_keep


def test_hand_example():
    # Two groups of 10 and 6; remove 7 of 16 in blocks of 4.
    units = [np.arange(10, dtype=float), np.array([0.5, 20, 21, 22, 23, 0.1])]
    unrounded = [np.arange(10) >= 5, np.array([False, True, True, True, True, False])]
    keep = round_keep(units, unrounded, floors=[1, 1], count=7, round_to=4)
    # Group 0 kept 5 -> nearest allowed 4 (its 4 best); group 1 kept 4 -> 4. Removed 8: 1 off.
    assert np.flatnonzero(keep[0]).tolist() == [6, 7, 8, 9]
    assert np.flatnonzero(keep[1]).tolist() == [1, 2, 3, 4]


def test_properties_on_random_scores():
    rng = np.random.default_rng(0)
    for trial in range(50):
        sizes = rng.integers(3, 40, size=5)
        units = [rng.normal(size=n) for n in sizes]
        count = int(rng.integers(0, sizes.sum() - 10))
        floors = [1] * len(sizes)
        order = np.argsort(np.concatenate(units))[:count]
        owners = np.repeat(np.arange(len(sizes)), sizes)
        removed = np.bincount(owners[order], minlength=len(sizes))
        unrounded = []
        for g, n in enumerate(sizes):
            mask = np.ones(n, bool)
            mask[np.argsort(units[g])[:removed[g]]] = False
            unrounded.append(mask)
        keep = round_keep(units, unrounded, floors, count, round_to=8)
        for g, (mask, scores) in enumerate(zip(keep, units, strict=True)):
            kept = int(mask.sum())
            assert kept == sizes[g] or (kept % 8 == 0 and kept > 0), (trial, g, kept)
            if 0 < kept < sizes[g]:  # the kept ones are the best-scored
                assert scores[mask].min() >= scores[~mask].max()


def test_make_plan_rounds_and_keeps_removed_channels_removed():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, name="a")(inputs)
    x = keras.layers.Conv2D(24, 3, name="b")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    scores = tfprune.score(model, "magnitude")
    first = tfprune.make_plan(model, scores, 0.25, round_to=8)
    assert all(k.sum() % 8 == 0 for k in first.keep.values())
    assert abs(first.removed - 0.25 * 56) <= 4 and first.settings["round_to"] == 8
    second = tfprune.make_plan(model, scores, 0.5, round_to=8, previous=first)
    for key in first.keep:
        assert not (second.keep[key] & ~first.keep[key]).any()  # nothing regrows
        assert second.keep[key].sum() % 8 == 0
    assert abs(second.removed - 28) <= 4
    with pytest.raises(tfprune.pruning.PlanError, match="round_to must be an integer >= 1"):
        tfprune.make_plan(model, scores, 0.5, round_to=0)
