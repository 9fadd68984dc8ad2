"""Importance measures (in progress): the g / Hg estimation engine."""

from tfprune.importance.gradients import GradientEstimator

__all__ = ["GradientEstimator"]
