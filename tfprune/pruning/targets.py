"""Pruning targets as typed values: what ``make_plan`` is asked to reach.

- ``Fraction(0.5)``: remove half of the prunable channels (or weights);
- a ``Budget`` (``tfprune.budget_targets``: ``FlopsBudget``, ``ParamsBudget``,
  ``LatencyBudget``, ``TFLiteSizeBudget`` or a registered one): the pruned model
  must fit it;
- ``LayerRatios({"conv1": 0.3})``: each named group loses its own fraction.

``make_plan``, the ``Pruner`` and schedules keep accepting today's plain forms
(a float, ``{"flops": F}``, ``{layer: ratio}``); ``as_target`` converts them at
the boundary, and ``to_json`` gives the plain form back for plan histories.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping

from tfprune.budget_targets import Budget, is_budget, parse_budget
from tfprune.plans.pruning_plan import PlanError


@dataclasses.dataclass(frozen=True)
class Fraction:
    """Remove this fraction of the prunable channels (weights), in [0, 1).

    Attributes:
        value: The fraction removed in all (removed channels stay removed).
    """

    value: float

    def __post_init__(self):
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise PlanError(f"target must be a fraction in [0, 1), a budget or per-layer "
                            f"ratios, got {self.value!r}.")
        if not 0 <= self.value < 1:
            raise PlanError(f"target must be in [0, 1), got {self.value}: it is the fraction "
                            "removed.")
        object.__setattr__(self, "value", float(self.value))  # a NumPy scalar saves as JSON


@dataclasses.dataclass(frozen=True)
class LayerRatios:
    """Per-layer fractions removed: ``{layer name: fraction}``; unnamed groups stay whole.

    A group is named by any of its members (``tfprune.pruning.sensitivity``
    derives such ratios). ``make_plan`` checks the names against the model's
    groups, then the ratios, each in [0, 1) (``tfprune.pruning.layer_ratios``).
    """

    ratios: Mapping[str, float]


Target = Fraction | Budget | LayerRatios


def as_target(target) -> Target:
    """Converts a plain target (float, budget dict, ratio dict) or a typed one.

    Raises:
        PlanError: For anything else, or a malformed budget.
    """
    if isinstance(target, Fraction | Budget | LayerRatios):
        return target
    if is_budget(target):
        try:
            return parse_budget(target)
        except ValueError as error:
            raise PlanError(str(error)) from None
    if isinstance(target, Mapping):
        return LayerRatios(dict(target))
    return Fraction(target)


def to_json(target: Target) -> float | dict:
    """The plain form of a target, as plan histories and configs hold it."""
    if isinstance(target, Fraction):
        return target.value
    if isinstance(target, LayerRatios):
        return dict(target.ratios)
    return target.to_dict()
