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
        sd: Sample standard deviation of the per-seed differences (nan with fewer
            than 2 pairs).
    """

    mean: float
    low: float
    high: float
    seeds: int
    confidence: float = 0.95
    sd: float = math.nan

    def detectable_gap(self, power: float = 0.8) -> float:
        """The smallest true gap this test finds with ``power`` at the measured spread.

        ``detectable_gap(self.seeds, self.sd)``; nan with fewer than 2 pairs.
        """
        if not self.has_interval:
            return math.nan
        return detectable_gap(self.seeds, self.sd, power, 1 - self.confidence)

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
    sd = float(differences.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, differences.size - 1)
                 * sd / math.sqrt(differences.size))
    return PairedDifference(mean, mean - half, mean + half, int(differences.size), confidence,
                            sd)


def power_of(n: int, gap: float, sd: float, alpha: float = 0.05) -> float:
    """The power of the two-sided paired t-test with ``n`` pairs to find a true ``gap``.

    The probability that the interval excludes zero when the per-seed
    differences are normal with mean ``gap`` and standard deviation ``sd``:
    the noncentral t integrated over the chi-square of the sample variance
    (numerically stable where SciPy's ``nct`` is not, at two or three pairs).
    """
    from scipy import integrate

    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = gap * math.sqrt(n) / sd

    def density(v):
        scale = critical * math.sqrt(v / df)
        return (stats.norm.sf(scale - shift) + stats.norm.cdf(-scale - shift)) * \
            stats.chi2.pdf(v, df)

    return float(integrate.quad(density, 0, np.inf)[0])


def detectable_gap(n: int, sd: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true gap the paired t-test with ``n`` pairs finds with ``power``.

    Example:
        >>> round(detectable_gap(10, 0.65), 2)   # the study's Table 1 at ten seeds
        0.65
    """
    from scipy import optimize

    if n < 2 or not sd > 0:
        return math.nan
    return float(optimize.brentq(lambda gap: power_of(n, gap, sd, alpha) - power,
                                 1e-9 * sd, 100 * sd))
