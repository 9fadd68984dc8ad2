"""Paired differences against an independent hand computation and scipy's paired t-test."""

import math

import numpy as np
import pytest
from scipy import stats

from tfprune.study.paired import paired_difference


def test_mean_and_interval_match_a_hand_computation():
    a, b = {0: 50.0, 1: 52.0, 2: 51.0}, {0: 48.0, 1: 51.0, 2: 48.0}
    d = paired_difference(a, b)
    # differences 2, 1, 3: mean 2, sample std 1, t(0.975, 2) = 4.302652729911275
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert (d.mean, d.seeds) == (2.0, 3)
    assert d.low == pytest.approx(2 - half) and d.high == pytest.approx(2 + half)
    assert d.direction() == "unresolved"  # 2 - 2.48 < 0
    assert d.format() == "+2.0 [-0.5, +4.5], n=3"


def test_interval_agrees_with_scipys_paired_t_test():
    rng = np.random.default_rng(0)
    x = rng.normal(size=6)
    y = x - 0.8 + rng.normal(scale=0.3, size=6)
    d = paired_difference(dict(enumerate(x)), dict(enumerate(y)))
    # The interval excludes zero exactly when the two-sided paired t-test rejects at 5%.
    p_value = stats.ttest_rel(x, y).pvalue
    assert (d.direction() == "above") == (p_value < 0.05)
    assert d.direction() == "above"
    interval = stats.ttest_rel(x, y).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((interval.low, interval.high))


def test_only_common_seeds_are_paired_and_one_seed_resolves_nothing():
    d = paired_difference({0: 1.0, 1: 5.0, 7: 9.0}, {1: 2.0, 2: 0.0})
    assert (d.mean, d.seeds, d.has_interval) == (3.0, 1, False)
    assert d.direction() == "unresolved" and d.format() == "+3.0, n=1"
    assert paired_difference({0: 1.0}, {1: 1.0}).format() == "no common seed"


def test_tolerance_band():
    inside = paired_difference({0: 0.2, 1: 0.3, 2: 0.25}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert inside.direction(1.0) == "within"
    far = paired_difference({0: 5.0, 1: 5.2, 2: 5.1}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert far.direction(1.0) == "above"
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({}, {}, confidence=1.5)
