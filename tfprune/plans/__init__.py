"""The pruning plan: keep-masks per channel group or kernel, saved and replayed."""

from tfprune.plans.pruning_plan import PlanError, PruningPlan, check_plan_fits

__all__ = ["PlanError", "PruningPlan", "check_plan_fits"]
