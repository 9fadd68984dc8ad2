"""Parameters and FLOPs of a model before and after a plan, per layer and in total.

Counted by the one cost model (``tfprune.pruning.cost``): FLOPs of the
layers with a kernel (each type's ``LayerHandler.flops``: Conv, DepthwiseConv,
SeparableConv's depthwise and pointwise kernels, transposed convs, Dense) as 2
per multiply-accumulate; biases, BatchNorm and activations are left out, as is
common. After a plan, removed kernel entries (output filters and the input
channels they fed) no longer count. Nested models' layers count as part of the
model.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.graph.model_graph import Call, operation_order
from tfprune.plans.pruning_plan import PruningPlan
from tfprune.pruning.cost import CostModel, kept_entries


def kernel_calls(model: keras.Model) -> list[Call]:
    """The calls of layers with a kernel (those FLOPs are counted for), in graph order."""
    return [call for call, _ in CostModel(model).kernel_calls]


def layer_flops(model: keras.Model, plan: PruningPlan | None = None) -> dict[str, int]:
    """FLOPs of one example per kernel layer, with the plan's removed entries left out."""
    cost = CostModel(model)
    return cost.layer_flops(cost.plan_masks(plan))


def flops(model: keras.Model, plan: PruningPlan | None = None) -> int:
    """FLOPs of one example's forward pass, with the plan's removed entries left out."""
    cost = CostModel(model)
    return cost.flops(cost.plan_masks(plan))


def _layer_table(cost: CostModel, masks: dict) -> dict[str, dict]:
    before, after = cost.layer_flops(), cost.layer_flops(masks)
    table = {}
    for call, handler in cost.kernel_calls:
        layer = call.operation
        filters = int(call.outputs[0].shape[-1])
        kernel_mask = masks.get(id(handler.kernels(layer)[-1]))
        kept_filters = (filters if kernel_mask is None
                        else _kept_filters(call, handler, kernel_mask))
        params = [sum(kept_entries(w, masks) for w in layer.weights),
                  sum(int(np.prod(w.shape)) for w in layer.weights)]
        table[call.name] = {"filters": [kept_filters, filters], "params": params,
                            "flops": [after[call.name], before[call.name]]}
    return table


def _kept_filters(call: Call, handler, kernel_mask: np.ndarray) -> int:
    """Output channels with any kernel entry left (the handler's filter axis)."""
    filters = int(call.outputs[0].shape[-1])
    axis = handler.filter_axis
    if axis not in (-1, kernel_mask.ndim - 1):
        kernel_mask = np.moveaxis(kernel_mask, axis, -1)
    return int(np.any(kernel_mask.reshape(-1, filters) != 0, axis=0).sum())


def layer_table(model: keras.Model, plan: PruningPlan | None) -> dict[str, dict]:
    """Per kernel layer: ``filters``, ``params`` and ``flops``, each ``[after, before]``."""
    cost = CostModel(model)
    return _layer_table(cost, cost.plan_masks(plan))


def param_count(model: keras.Model, plan: PruningPlan | None = None) -> int:
    """All weights (as ``model.count_params()``) minus those the plan removes.

    Removing a channel also removes every weight that follows it (a
    BatchNormalization's gamma, beta and moving statistics: its handler's
    ``variable_masks``).
    """
    cost = CostModel(model)
    return cost.params(cost.plan_masks(plan))


def _in_model_order(model: keras.Model, per_layer: dict) -> dict:
    """``per_layer`` reordered as the model's graph; names it does not list go last."""
    order = {name: index for index, name in enumerate(operation_order(model))}
    return dict(sorted(per_layer.items(), key=lambda item: order.get(item[0], len(order))))


def pruning_summary(model: keras.Model, plan: PruningPlan | None) -> dict:
    """Params and FLOPs before/after and ``filters_kept`` (layer -> [kept, original]).

    ``filters_kept`` lists the layers in the model's graph order (input to
    output), not in channel-group order, so "the first half of the
    layers" means the early layers (the report's Section G.2 check). The
    plan's masks are derived once and shared by every statistic.
    """
    cost = CostModel(model)
    masks = cost.plan_masks(plan)
    table = _layer_table(cost, masks)
    return {
        "params_before": cost.total_params,
        "params_after": cost.params(masks),
        "flops_before": sum(row["flops"][1] for row in table.values()),
        "flops_after": sum(row["flops"][0] for row in table.values()),
        "filters_kept": {} if plan is None else _in_model_order(model, plan.kept_per_layer()),
        "layers": table,
        "fraction_removed": plan.fraction_removed if plan is not None else 0.0,
    }
