"""Parameters and FLOPs of a model before and after a plan, per layer and in total.

FLOPs count the multiply-adds of layers with a kernel (Conv, DepthwiseConv,
Dense) as 2 per multiply-accumulate; biases, BatchNorm and activations are
left out, as is common. After a plan, removed kernel entries (output filters
and the input channels they fed) no longer count.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.pruning.masks import variable_masks
from tfprune.pruning.plan import PruningPlan

KERNEL_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                 keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _kernel_masks(model, plan):
    if plan is None:
        return {}
    return {id(variable): mask for variable, mask in variable_masks(model, plan)}


def flops(model: keras.Model, plan: PruningPlan | None = None) -> int:
    """FLOPs of one example's forward pass, with the plan's removed entries left out."""
    masks = _kernel_masks(model, plan)
    total = 0
    for layer in model.layers:
        if not isinstance(layer, KERNEL_LAYERS):
            continue
        positions = int(np.prod(layer.output.shape[1:-1]))
        mask = masks.get(id(layer.kernel))
        entries = int(np.prod(layer.kernel.shape)) if mask is None else int(np.count_nonzero(mask))
        total += 2 * positions * entries
    return total


def param_count(model: keras.Model, plan: PruningPlan | None = None) -> int:
    """All weights (as ``model.count_params()``) minus those the plan removes.

    Removing a channel also removes the moving mean and variance of the
    BatchNormalization that follows it.
    """
    total = int(model.count_params())
    if plan is None:
        return total
    for _, mask in variable_masks(model, plan):
        total -= int(mask.size - np.count_nonzero(mask))
    if plan.granularity == "filter":
        for group in plan.groups:
            removed = int((~plan.keep[str(group["index"])]).sum())
            batch_norms = [name for name in group["followers"]
                           if isinstance(model.get_layer(name), keras.layers.BatchNormalization)]
            total -= 2 * removed * len(batch_norms)
    return total


def pruning_summary(model: keras.Model, plan: PruningPlan | None) -> dict:
    """Params and FLOPs before/after and ``filters_kept`` (layer -> [kept, original])."""
    return {
        "params_before": param_count(model), "params_after": param_count(model, plan),
        "flops_before": flops(model), "flops_after": flops(model, plan),
        "filters_kept": plan.kept_per_layer() if plan is not None else {},
        "fraction_removed": plan.fraction_removed if plan is not None else 0.0,
    }
