"""The one cost model: FLOPs and parameters of a model.

Dense, under a plan, under per-group keep-masks, or slimmed: all counted here.

Every count is read from the layer handlers:

- FLOPs: each kernel layer's ``LayerHandler.flops`` (2 per multiply-accumulate
  of its kernels, counting only the kernel entries left), summed over its calls
  (a shared layer computes once per call); biases, normalization and
  activations are left out, as is common;
- parameters: ``model.count_params()`` minus every entry a plan removes. The
  handlers' ``variable_masks`` name every weight that follows a channel
  (a BatchNormalization's moving statistics too), so nothing is special-cased
  here.

A plan's count on the dense model equals the slimmed model's dense count
(``tests/pruning/test_cost.py``).
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.budget_targets import CountedBudget, budget_class
from tfprune.graph.channels import ChannelGraph, graph_for
from tfprune.graph.model_graph import Call, calls
from tfprune.handlers import handler_for
from tfprune.plans.pruning_plan import PruningPlan
from tfprune.pruning.masks import graph_variable_masks, variable_masks


def kept_entries(variable, masks: dict) -> int:
    """The variable's entries a mask leaves (all when ``masks`` has none for it)."""
    mask = masks.get(id(variable))
    return int(np.prod(variable.shape)) if mask is None else int(np.count_nonzero(mask))


class CostModel:
    """FLOPs and parameters of one model, under masks of removed entries.

    Args:
        model: A built Keras model.
        graph: Its ``ChannelGraph``, when keep-masks are counted (default: the
            shared one, ``graph_for``); dense and plan counts need none.

    Example:
        >>> cost = CostModel(model)
        >>> cost.flops(), cost.flops(cost.plan_masks(plan)), CostModel(slimmed).flops()
    """

    def __init__(self, model: keras.Model, graph: ChannelGraph | None = None):
        self.model = model
        self._graph = graph
        # Each call's handler, looked up once: a budget search counts at every step.
        handlers = [(call, handler_for(call.operation))
                    for call in (graph.calls if graph is not None else calls(model))]
        self.kernel_calls: list[tuple[Call, object]] = [
            (call, handler) for call, handler in handlers
            if handler and handler.kernels(call.operation)]
        self.total_params = int(model.count_params())

    @property
    def graph(self) -> ChannelGraph:
        """The model's ``ChannelGraph`` (analysed on first use)."""
        if self._graph is None:
            self._graph = graph_for(self.model)
        return self._graph

    def plan_masks(self, plan: PruningPlan | None) -> dict:
        """``{id(variable): mask}`` of a plan (structured or weight); ``{}`` for None."""
        if plan is None:
            return {}
        return {id(variable): mask for variable, mask in variable_masks(self.model, plan)}

    def keep_masks(self, keep: dict) -> dict:
        """``{id(variable): mask}`` of ``{group index: keep-mask}`` over ``graph``'s groups."""
        return {id(v): m for v, m in graph_variable_masks(self.graph, keep)}

    def layer_flops(self, masks: dict | None = None) -> dict[str, int]:
        """FLOPs of one example per kernel layer, with the masked entries left out."""
        masks = masks or {}
        total: dict[str, int] = {}
        for call, handler in self.kernel_calls:
            total[call.name] = total.get(call.name, 0) + handler.flops(
                call, lambda variable: kept_entries(variable, masks))
        return total

    def flops(self, masks: dict | None = None) -> int:
        """FLOPs of one example's forward pass, with the masked entries left out."""
        return sum(self.layer_flops(masks).values())

    def params(self, masks: dict | None = None) -> int:
        """All weights (``model.count_params()``) minus the masked entries."""
        removed = sum(int(m.size - np.count_nonzero(m)) for m in (masks or {}).values())
        return self.total_params - removed

    def count(self, kind: str, masks: dict | None = None) -> int:
        """The counted cost of a budget kind (``"flops"``, ``"params"``) under masks."""
        return budget_class(kind).count(self, masks)


class KeepCost:
    """A counted budget's cost as a function of per-group keep-masks (the budget search's).

    Args:
        model: The model.
        graph: Its ``ChannelGraph``.
        kind: A counted budget kind (``"flops"``, ``"params"``).
    """

    def __init__(self, model: keras.Model, graph: ChannelGraph, kind: str):
        if not issubclass(budget_class(kind), CountedBudget):
            raise ValueError(f"a budget search counts a counted budget (flops, params), "
                             f"got {kind!r}.")
        self.model, self.graph, self.kind = model, graph, kind
        self.cost = CostModel(model, graph)

    def __call__(self, keep: dict) -> int:
        """The cost with ``{group index: keep-mask}`` applied."""
        return self.cost.count(self.kind, self.cost.keep_masks(keep))
