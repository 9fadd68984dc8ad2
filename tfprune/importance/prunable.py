"""Which layers of a model are scored, and how their kernels split into filters.

A layer is scored when its ``LayerHandler`` (``tfprune.handlers``) names a
``scored_kernel`` whose ``filter_axis`` indexes the layer's output channels:
Conv1D/2D/3D and Dense (one filter per output unit), Conv*DTranspose,
DepthwiseConv (one per channel), SeparableConv (the pointwise kernel's
columns) and Embedding (the table's columns). Nested models' layers are
scored too. ``register_layer_handler`` makes more types prunable.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.handlers import GraphError, handler_for
from tfprune.importance.scores import ScoringError
from tfprune.model_graph import Call, operation_order, producers, walk


@dataclasses.dataclass(frozen=True)
class PrunableLayer:
    """A scored layer: its kernel and how the kernel splits into filters.

    Attributes:
        layer: The Keras layer.
        kernel_attribute: The attribute holding its kernel variable.
        filters: The number of output channels (filters) of the layer.
        batch_norm: The BatchNormalization layer fed directly by this layer, or None.
        filter_axis: The kernel axis indexing the filters.
    """

    layer: keras.layers.Layer
    kernel_attribute: str
    filters: int
    batch_norm: keras.layers.BatchNormalization | None
    filter_axis: int = -1

    @property
    def kernel(self) -> keras.Variable:
        """The kernel variable."""
        return getattr(self.layer, self.kernel_attribute)

    @property
    def name(self) -> str:
        """The layer's name: the key of its scores."""
        return self.layer.name

    def by_filter(self, array: np.ndarray) -> np.ndarray:
        """Reshapes a kernel-shaped array to ``(elements_per_filter, filters)``."""
        if self.filter_axis not in (-1, np.ndim(array) - 1):
            array = np.moveaxis(array, self.filter_axis, -1)
        return np.reshape(array, (-1, self.filters))


def _output_layers(model: keras.Model, made_by: dict) -> set[int]:
    """Ids of the weighted layers that produce a model output.

    Looks through weightless single-input layers such as a final Softmax.
    """
    found = set()
    for tensor in model.outputs:
        call = made_by.get(id(tensor))
        while call is not None and not getattr(call.operation, "weights", None) and len(
                call.inputs) == 1:
            call = made_by.get(id(call.inputs[0]))
        if call is not None:
            found.add(id(call.operation))
    return found


def _batch_norms_by_input(calls: list, made_by: dict) -> dict[int, keras.layers.Layer]:
    """Maps id(layer) -> the BatchNormalization that directly follows it."""
    follows = {}
    for call in calls:
        if isinstance(call.operation, keras.layers.BatchNormalization) and call.inputs:
            producer = made_by.get(id(call.inputs[0]))
            if producer is not None:
                follows[id(producer.operation)] = call.operation
    return follows


def prunable_layers(model: keras.Model, include_output_layers: bool = False) -> list[PrunableLayer]:
    """Lists the layers of a model that get importance scores, in graph order.

    Args:
        model: A built functional or Sequential Keras model (nested models included).
        include_output_layers: Also score layers producing a model output (the
            classifier). Structured pruning never removes classifier outputs,
            so they are left out by default.

    Returns:
        One ``PrunableLayer`` per prunable layer with a kernel.

    Raises:
        ScoringError: If the model is not built, has no graph, or has no prunable layer.
    """
    if not model.built or not getattr(model, "outputs", None):
        raise ScoringError(
            f"model {model.name!r} is not a built functional model; build it (call it on "
            "an input or construct it with keras.Input) before scoring."
        )
    try:
        calls = [step for step in walk(model) if isinstance(step, Call)]
    except GraphError as error:
        raise ScoringError(str(error)) from None
    made_by = producers(model)
    outputs = set() if include_output_layers else _output_layers(model, made_by)
    batch_norms = _batch_norms_by_input(calls, made_by)
    found = []
    for call in calls:
        handler = handler_for(call.operation)
        if handler is None or handler.scored_kernel is None or id(call.operation) in outputs:
            continue
        found.append(PrunableLayer(call.operation, handler.scored_kernel,
                                   int(call.outputs[0].shape[-1]),
                                   batch_norms.get(id(call.operation)), handler.filter_axis))
    order = {name: index for index, name in enumerate(operation_order(model))}
    found.sort(key=lambda prunable: order.get(prunable.name, len(order)))
    if not found:
        raise ScoringError(
            f"model {model.name!r} has no prunable layer besides its outputs (no layer whose "
            "handler scores a kernel: Conv, Dense, SeparableConv, DepthwiseConv, "
            "Conv*Transpose, Embedding, or a type given register_layer_handler)."
        )
    return found
