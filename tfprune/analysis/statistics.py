"""Correlation coefficients that tolerate degenerate inputs (constant or tiny samples)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def correlation(x, y) -> tuple[float, float]:
    """Pearson and Spearman correlation of two equally long samples.

    Returns ``(nan, nan)`` when fewer than 3 pairs are finite or either side is
    constant, where the coefficients are undefined.
    """
    x, y = np.ravel(np.asarray(x, np.float64)), np.ravel(np.asarray(y, np.float64))
    if x.shape != y.shape:
        raise ValueError(f"correlation needs equally long samples, got {x.size} and {y.size}.")
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0])
