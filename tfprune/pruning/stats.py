"""Parameters and FLOPs of a model before and after a plan, per layer and in total.

FLOPs count the multiply-adds of layers with a kernel (each type's
``LayerHandler.flops``: Conv, DepthwiseConv, SeparableConv's depthwise and
pointwise kernels, transposed convs, Dense) as 2 per multiply-accumulate;
biases, BatchNorm and activations are left out, as is common. After a plan,
removed kernel entries (output filters and the input channels they fed) no
longer count. Nested models' layers count as part of the model.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.handlers import handler_for
from tfprune.model_graph import Call, calls, operation_order
from tfprune.pruning.masks import variable_masks
from tfprune.pruning.plan import PruningPlan


def _handler(call: Call):
    return handler_for(call.operation)


def kernel_calls(model: keras.Model) -> list[Call]:
    """The calls of layers with a kernel (those FLOPs are counted for), in graph order."""
    return [call for call in calls(model)
            if _handler(call) is not None and _handler(call).kernels(call.operation)]


def _kernel_masks(model, plan):
    if plan is None:
        return {}
    return {id(variable): mask for variable, mask in variable_masks(model, plan)}


def _kept(variable, masks) -> int:
    mask = masks.get(id(variable))
    return int(np.prod(variable.shape)) if mask is None else int(np.count_nonzero(mask))


def _layer_flops(model: keras.Model, masks: dict) -> dict[str, int]:
    """Per layer, summed over its calls (a shared layer computes once per call)."""
    total: dict[str, int] = {}

    def kept(variable) -> int:
        return _kept(variable, masks)

    for call in kernel_calls(model):
        total[call.name] = total.get(call.name, 0) + _handler(call).flops(call, kept)
    return total


def layer_flops(model: keras.Model, plan: PruningPlan | None = None) -> dict[str, int]:
    """FLOPs of one example per kernel layer, with the plan's removed entries left out."""
    return _layer_flops(model, _kernel_masks(model, plan))


def flops(model: keras.Model, plan: PruningPlan | None = None) -> int:
    """FLOPs of one example's forward pass, with the plan's removed entries left out."""
    return sum(layer_flops(model, plan).values())


def _layer_table(model: keras.Model, masks: dict) -> dict[str, dict]:
    before, after = _layer_flops(model, {}), _layer_flops(model, masks)
    table = {}
    for call in kernel_calls(model):
        layer = call.operation
        filters = int(call.outputs[0].shape[-1])
        kernel_mask = masks.get(id(_handler(call).kernels(layer)[-1]))
        kept_filters = filters if kernel_mask is None else _kept_filters(call, kernel_mask)
        params = [sum(_kept(w, masks) for w in layer.weights),
                  sum(int(np.prod(w.shape)) for w in layer.weights)]
        table[call.name] = {"filters": [kept_filters, filters], "params": params,
                            "flops": [after[call.name], before[call.name]]}
    return table


def _kept_filters(call: Call, kernel_mask: np.ndarray) -> int:
    """Output channels with any kernel entry left (the handler's filter axis)."""
    filters = int(call.outputs[0].shape[-1])
    axis = _handler(call).filter_axis
    if axis not in (-1, kernel_mask.ndim - 1):
        kernel_mask = np.moveaxis(kernel_mask, axis, -1)
    return int(np.any(kernel_mask.reshape(-1, filters) != 0, axis=0).sum())


def layer_table(model: keras.Model, plan: PruningPlan | None) -> dict[str, dict]:
    """Per kernel layer: ``filters``, ``params`` and ``flops``, each ``[after, before]``."""
    return _layer_table(model, _kernel_masks(model, plan))


def _param_count(model: keras.Model, plan: PruningPlan | None, masks: dict) -> int:
    total = int(model.count_params())
    if plan is None:
        return total
    operations = {call.name: call.operation for call in calls(model)}
    for mask in masks.values():
        total -= int(mask.size - np.count_nonzero(mask))
    if plan.granularity == "filter":
        for group in plan.groups:
            removed = int((~plan.keep[str(group["index"])]).sum())
            batch_norms = [name for name in group["followers"]
                           if isinstance(operations[name], keras.layers.BatchNormalization)]
            total -= 2 * removed * len(batch_norms)
    return total


def param_count(model: keras.Model, plan: PruningPlan | None = None) -> int:
    """All weights (as ``model.count_params()``) minus those the plan removes.

    Removing a channel also removes the moving mean and variance of the
    BatchNormalization that follows it.
    """
    return _param_count(model, plan, _kernel_masks(model, plan))


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
    masks = _kernel_masks(model, plan)
    table = _layer_table(model, masks)
    return {
        "params_before": int(model.count_params()),
        "params_after": _param_count(model, plan, masks),
        "flops_before": sum(row["flops"][1] for row in table.values()),
        "flops_after": sum(row["flops"][0] for row in table.values()),
        "filters_kept": {} if plan is None else _in_model_order(model, plan.kept_per_layer()),
        "layers": table,
        "fraction_removed": plan.fraction_removed if plan is not None else 0.0,
    }
