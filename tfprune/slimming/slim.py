"""``slim``: rebuild a functional model with only the channels a plan keeps.

Each layer is rebuilt from its ``get_config`` (with fewer filters or units
where its output group lost channels) and called on the rebuilt inputs in
graph order; its weights are copied with the removed channels sliced out.
How a layer type changes lives in ``SLIM_HANDLERS``, a registry users extend
with ``register_slim_handler``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from tfprune.layer_types import lookup
from tfprune.pruning.groups import ChannelGraph, GraphError, nodes_in_order, rule_for
from tfprune.pruning.masks import check_plan_fits
from tfprune.pruning.plan import PlanError, PruningPlan


class SlimContext:
    """What a handler needs: which input and output channels of a layer survive.

    Args:
        graph: The model's ``ChannelGraph``.
        keep: ``{group index: boolean keep-mask}``.
    """

    def __init__(self, graph: ChannelGraph, keep: dict[int, np.ndarray]):
        self.graph = graph
        self.keep = keep

    def input_index(self, layer) -> np.ndarray | None:
        """Indices of the kept input channels of ``layer`` (None: all kept)."""
        mask = self.graph.channel_mask(self.graph.layer_inputs[layer.name], self.keep)
        return None if mask is None else np.flatnonzero(mask)

    def output_index(self, layer) -> np.ndarray | None:
        """Indices of the kept output channels of ``layer`` (None: all kept)."""
        mask = self.graph.channel_mask(self.graph.layer_outputs[layer.name], self.keep)
        return None if mask is None else np.flatnonzero(mask)


def _take(array: np.ndarray, index, axis: int) -> np.ndarray:
    return array if index is None else np.take(array, index, axis=axis)


def _source(layer, context: SlimContext):
    """Conv / Dense: fewer filters (units), kernel sliced on both channel axes."""
    config = layer.get_config()
    out_index, in_index = context.output_index(layer), context.input_index(layer)
    if out_index is not None:
        config["units" if "units" in config else "filters"] = int(out_index.size)
    weights = layer.get_weights()
    weights[0] = _take(_take(weights[0], out_index, -1), in_index, -2)
    if len(weights) > 1:
        weights[1] = _take(weights[1], out_index, 0)
    return config, weights


def _separable(layer, context: SlimContext):
    """SeparableConv: depthwise kernel sliced on its input channels, pointwise on both axes.

    Input channel ``c`` feeds the pointwise rows ``c * depth_multiplier + m``.
    """
    config = layer.get_config()
    out_index, in_index = context.output_index(layer), context.input_index(layer)
    if out_index is not None:
        config["filters"] = int(out_index.size)
    depthwise, pointwise, *bias = layer.get_weights()
    rows = None
    if in_index is not None:
        multiplier = layer.depth_multiplier
        rows = (in_index[:, None] * multiplier + np.arange(multiplier)).reshape(-1)
    weights = [_take(depthwise, in_index, -2), _take(_take(pointwise, out_index, -1), rows, -2)]
    return config, weights + [_take(b, out_index, 0) for b in bias]


def _batch_norm(layer, context: SlimContext):
    """BatchNorm: every weight (gamma, beta, moving mean and variance) per channel."""
    index = context.input_index(layer)
    return layer.get_config(), [_take(w, index, -1) for w in layer.get_weights()]


def _depthwise(layer, context: SlimContext):
    """DepthwiseConv2D: the kernel sliced on its input channels, the bias per channel."""
    index = context.input_index(layer)
    kernel, *bias = layer.get_weights()
    return layer.get_config(), [_take(kernel, index, -2), *(_take(b, index, 0) for b in bias)]


def _unchanged(layer, context: SlimContext):
    """Pass-through and merge layers: same config; weights copied if no input channel goes."""
    if layer.weights and layer.name in context.graph.layer_inputs and context.input_index(
            layer) is not None:
        raise GraphError(f"layer {layer.name!r} ({type(layer).__name__}) has weights tied to "
                         "channels that slim cannot slice; register a slim handler for it.")
    return layer.get_config(), layer.get_weights()


def _reshape(layer, context: SlimContext):
    """Reshape: the target's last axis shrinks to the kept channels."""
    config = layer.get_config()
    index = context.output_index(layer)
    if index is not None:
        config["target_shape"] = (*tuple(config["target_shape"])[:-1], int(index.size))
    return config, []


#: Layer type -> handler ``(layer, SlimContext) -> (config, weights)``; MRO lookup.
SLIM_HANDLERS: dict[type, Callable] = {
    keras.layers.Conv1D: _source, keras.layers.Conv2D: _source, keras.layers.Conv3D: _source,
    keras.layers.Dense: _source,
    keras.layers.SeparableConv1D: _separable, keras.layers.SeparableConv2D: _separable,
    keras.layers.BatchNormalization: _batch_norm, keras.layers.DepthwiseConv2D: _depthwise,
    keras.layers.Reshape: _reshape,
}


def register_slim_handler(layer_type: type, handler: Callable) -> None:
    """Tells ``slim`` how to rebuild a layer type: ``handler(layer, context) -> (config, w)``."""
    SLIM_HANDLERS[layer_type] = handler


def _handler_for(layer) -> Callable:
    handler = lookup(SLIM_HANDLERS, layer)
    if handler is not None:
        return handler
    if rule_for(layer) is not None:
        return _unchanged
    raise GraphError(f"layer {layer.name!r} of type {type(layer).__name__}: slim has no handler "
                     "for it; register one with register_slim_handler.")


def slim(model: keras.Model, plan: PruningPlan) -> keras.Model:
    """Returns a new, smaller model with only the channels ``plan`` keeps.

    Its outputs equal those of ``model`` after ``apply_plan(model, plan)``
    (inference mode).

    Args:
        model: The functional model the plan was made for (its weights are copied).
        plan: A structured ``PruningPlan`` (``tfprune.make_plan``, ``PruningPlan.load``).

    Raises:
        PlanError: For an unstructured plan or one made for another architecture.
        GraphError: For a layer slim cannot rebuild (naming it and its type).
    """
    if plan.granularity != "filter":
        raise PlanError("slim needs a structured (filter) plan; unstructured masks keep shapes.")
    graph = ChannelGraph(model, plan.settings.get("ignored_layers", ()))
    check_plan_fits(graph, plan)
    context = SlimContext(graph, {g.index: plan.keep[str(g.index)] for g in graph.groups})
    tensors = {}
    for tensor in model.inputs:
        tensors[id(tensor)] = keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype,
                                          name=tensor._keras_history.operation.name)
    pending = []
    for node in nodes_in_order(model):
        layer = node.operation
        if node.is_input or isinstance(layer, keras.layers.InputLayer):
            continue
        config, weights = _handler_for(layer)(layer, context)
        rebuilt = type(layer).from_config(config)
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = rebuilt(*args, **kwargs)
        for old, new in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
            tensors[id(old)] = new
        pending.append((rebuilt, weights))
    inputs = [tensors[id(t)] for t in model.inputs]
    outputs = [tensors[id(t)] for t in model.outputs]
    slimmed = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                          outputs[0] if len(outputs) == 1 else outputs, name=f"{model.name}_slim")
    for rebuilt, weights in pending:
        if weights:
            rebuilt.set_weights(weights)
    return slimmed
