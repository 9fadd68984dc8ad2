"""Which layers of a model are scored, and how their kernels split into filters.

A prunable layer has a kernel whose output channels ("filters") can be
removed: Conv1D/2D/3D and Dense (one filter per output unit),
DepthwiseConv2D (one per output channel) and SeparableConv1D/2D, whose
filters are the columns of the pointwise kernel (the depthwise kernel before
it has no output filters of its own, so it is not scored). Every one of these
kernels, reshaped to ``(-1, output_channels)``, has one column per filter.
Users register more layer types with ``register_prunable_layer``.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.importance.scores import ScoringError
from tfprune.layer_types import lookup

#: Layer type -> name of the attribute holding its kernel variable.
PRUNABLE_LAYER_TYPES: dict[type, str] = {
    keras.layers.Conv1D: "kernel",
    keras.layers.Conv2D: "kernel",
    keras.layers.Conv3D: "kernel",
    keras.layers.DepthwiseConv2D: "kernel",
    keras.layers.Dense: "kernel",
    keras.layers.SeparableConv1D: "pointwise_kernel",
    keras.layers.SeparableConv2D: "pointwise_kernel",
}


def register_prunable_layer(layer_type: type, kernel_attribute: str = "kernel") -> None:
    """Makes a layer type prunable.

    Its kernel's last axis after flattening, ``kernel.reshape(-1, channels)``,
    must index the layer's output channels.

    Args:
        layer_type: A ``keras.layers.Layer`` subclass.
        kernel_attribute: The attribute holding the kernel variable.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, keras.layers.Layer)):
        raise TypeError(f"layer_type must be a keras.layers.Layer subclass, got {layer_type!r}.")
    PRUNABLE_LAYER_TYPES[layer_type] = kernel_attribute


def _kernel_attribute(layer) -> str | None:
    return lookup(PRUNABLE_LAYER_TYPES, layer)


@dataclasses.dataclass(frozen=True)
class PrunableLayer:
    """A scored layer: its kernel and how the kernel splits into filters.

    Attributes:
        layer: The Keras layer.
        kernel_attribute: The attribute holding its kernel variable.
        filters: The number of output channels (filters) of the layer.
        batch_norm: The BatchNormalization layer fed directly by this layer, or None.
    """

    layer: keras.layers.Layer
    kernel_attribute: str
    filters: int
    batch_norm: keras.layers.BatchNormalization | None

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
        return np.reshape(array, (-1, self.filters))


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def _output_layers(model: keras.Model) -> set[int]:
    """Ids of the weighted layers that produce a model output.

    Looks through weightless single-input layers such as a final Softmax.
    """
    found = set()
    for tensor in model.outputs:
        layer = _producer(tensor)
        while layer is not None and not layer.weights and len(layer._inbound_nodes) == 1:
            inputs = layer._inbound_nodes[0].input_tensors
            if len(inputs) != 1:
                break
            layer = _producer(inputs[0])
        if layer is not None:
            found.add(id(layer))
    return found


def _batch_norms_by_input(model: keras.Model) -> dict[int, keras.layers.BatchNormalization]:
    """Maps id(layer) -> the BatchNormalization that directly follows it."""
    follows = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and len(layer._inbound_nodes) == 1:
            producer = _producer(layer._inbound_nodes[0].input_tensors[0])
            if producer is not None:
                follows[id(producer)] = layer
    return follows


def prunable_layers(model: keras.Model, include_output_layers: bool = False) -> list[PrunableLayer]:
    """Lists the layers of a model that get importance scores, in graph order.

    Args:
        model: A built functional or sequential Keras model.
        include_output_layers: Also score layers producing a model output (the
            classifier). Structured pruning never removes classifier outputs,
            so they are left out by default.

    Returns:
        One ``PrunableLayer`` per prunable layer with a kernel.

    Raises:
        ScoringError: If the model is not built or has no prunable layer.
    """
    if not model.built or not getattr(model, "outputs", None):
        raise ScoringError(
            f"model {model.name!r} is not a built functional model; build it (call it on "
            "an input or construct it with keras.Input) before scoring."
        )
    outputs = set() if include_output_layers else _output_layers(model)
    batch_norms = _batch_norms_by_input(model)
    found = []
    for layer in model.layers:
        attribute = _kernel_attribute(layer)
        if attribute is None or id(layer) in outputs:
            continue
        filters = int(layer._inbound_nodes[0].output_tensors[0].shape[-1])
        found.append(PrunableLayer(layer, attribute, filters, batch_norms.get(id(layer))))
    if not found:
        raise ScoringError(
            f"model {model.name!r} has no prunable layer besides its outputs; prunable types: "
            f"{sorted(t.__name__ for t in PRUNABLE_LAYER_TYPES)}."
        )
    return found
