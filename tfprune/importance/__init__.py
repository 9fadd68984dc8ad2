"""Importance measures: one score per filter or weight from theta, g and Hg.

Example:
    >>> from tfprune import importance
    >>> scores = importance.score(model, "proposed", (x_train, y_train), temperature=5)
    >>> importance.available_measures()
"""

from tfprune.importance import builtin_measures as _builtin_measures  # noqa: F401 - registers them
from tfprune.importance.api import score
from tfprune.importance.blocks import block_importance
from tfprune.importance.context import LayerView, ScoringContext
from tfprune.importance.gradients import GradientEstimator
from tfprune.importance.measure_registry import (
    MEASURES,
    FunctionMeasure,
    ImportanceMeasure,
    available_measures,
    get_measure,
    register_measure,
    serialize_measure,
)
from tfprune.importance.prunable import PrunableLayer, prunable_layers
from tfprune.importance.samples import SampleError
from tfprune.importance.scores import (
    ImportanceScores,
    NonFiniteScoreError,
    ScoringError,
    UninformativeScoreError,
)

__all__ = [
    "MEASURES", "FunctionMeasure", "GradientEstimator",
    "ImportanceMeasure", "ImportanceScores", "LayerView", "NonFiniteScoreError", "PrunableLayer",
    "UninformativeScoreError",
    "SampleError", "ScoringContext", "ScoringError", "available_measures", "block_importance",
    "get_measure",
    "prunable_layers", "register_measure", "score",
    "serialize_measure",
]
