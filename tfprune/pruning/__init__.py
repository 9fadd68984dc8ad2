"""Prune-and-train: channel groups, plans, masks, schedules and the pruning callback.

Example:
    >>> import tfprune
    >>> scores = tfprune.score(model, "magnitude")
    >>> plan = tfprune.make_plan(model, scores, target=0.5)
    >>> tfprune.apply_plan(model, plan)       # zeroes the removed channels in place
"""

from tfprune.graph.channels import ChannelGraph, ChannelGroup, GraphError, channel_groups
from tfprune.pruning.callback import PruningCallback, latest_plan, plan_files, prunable_units
from tfprune.pruning.cost import CostModel
from tfprune.pruning.masks import MaskConstraint, MaskEnforcer, apply_plan, variable_masks
from tfprune.pruning.plan import PlanError, PruningPlan, make_plan
from tfprune.pruning.pruner import Pruner
from tfprune.pruning.ranking import RankingOptions
from tfprune.pruning.schedule_interface import PruningSchedule
from tfprune.pruning.targets import Fraction, LayerRatios

__all__ = [
    "ChannelGraph", "ChannelGroup", "CostModel", "Fraction", "GraphError", "LayerRatios",
    "MaskConstraint", "MaskEnforcer", "PlanError", "Pruner", "PruningCallback", "PruningPlan",
    "PruningSchedule", "RankingOptions",
    "apply_plan", "channel_groups", "latest_plan",
    "make_plan", "plan_files", "prunable_units", "variable_masks",
]

#: Schedules subclass tfmot's PruningSchedule: importing them imports tfmot, so they load on
#: first use (``tfprune.pruning.RoundsSchedule``), not with this package.
_SCHEDULES = ("RoundsSchedule", "EarlyBirdSchedule")


def __getattr__(name):
    if name in _SCHEDULES:
        from tfprune.pruning import tfmot_schedules as schedule

        return getattr(schedule, name)
    raise AttributeError(f"module 'tfprune.pruning' has no attribute {name!r}")
