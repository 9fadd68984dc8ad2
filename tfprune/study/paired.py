"""Paired differences between two cells of a study, with a confidence interval.

Runs of a study share their seed across measures: the same seed gives the
same initialization and the same data order, so the two cells' values for one
seed form a pair. The mean of the per-seed differences and a Student-t
interval over them tell whether a gap is larger than what a change of seed
alone moves.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """The paired difference ``a - b`` over the seeds both cells have.

    Attributes:
        mean: Mean of the per-seed differences (nan without a common seed).
        low: Lower end of the confidence interval (nan with fewer than 2 pairs).
        high: Upper end of the confidence interval (nan with fewer than 2 pairs).
        seeds: How many seeds were paired.
        confidence: The interval's confidence level, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    seeds: int
    confidence: float = 0.95

    @property
    def has_interval(self) -> bool:
        """Whether an interval exists (two or more pairs)."""
        return self.seeds >= 2 and math.isfinite(self.low)

    def direction(self, tolerance: float | None = None) -> str:
        """Where the interval lies: ``"above"``, ``"below"``, ``"within"`` or ``"unresolved"``.

        Without ``tolerance``: above / below zero when the interval excludes it.
        With one: ``"within"`` when the interval lies inside [-tolerance, tolerance],
        ``"above"`` / ``"below"`` when it lies wholly outside that band.
        """
        if not self.has_interval:
            return "unresolved"
        bound = 0.0 if tolerance is None else float(tolerance)
        if self.low > bound:
            return "above"
        if self.high < -bound:
            return "below"
        if tolerance is not None and -bound <= self.low and self.high <= bound:
            return "within"
        return "unresolved"

    def format(self, digits: int = 1) -> str:
        """E.g. ``+2.1 [+0.4, +3.8], n=3`` (no interval with one seed)."""
        if self.seeds == 0:
            return "no common seed"
        text = f"{self.mean:+.{digits}f}"
        if self.has_interval:
            text += f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return f"{text}, n={self.seeds}"


def paired_difference(a: dict, b: dict, confidence: float = 0.95) -> PairedDifference:
    """The mean of ``a[seed] - b[seed]`` over common seeds, with a paired-t interval.

    Args:
        a: ``{seed: value}`` of the first cell.
        b: ``{seed: value}`` of the second cell.
        confidence: Two-sided confidence level of the interval.

    Returns:
        A ``PairedDifference``; with fewer than two common seeds its interval is nan.

    Example:
        >>> paired_difference({0: 50.0, 1: 52.0, 2: 51.0}, {0: 48.0, 1: 51.0, 2: 48.0}).mean
        2.0
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    seeds = sorted(set(a) & set(b))
    differences = np.array([a[s] - b[s] for s in seeds], np.float64)
    if differences.size == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(differences.mean())
    if differences.size < 2:
        return PairedDifference(mean, math.nan, math.nan, 1, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, differences.size - 1)
                 * differences.std(ddof=1) / math.sqrt(differences.size))
    return PairedDifference(mean, mean - half, mean + half, int(differences.size), confidence)
