"""The logits of a model that ends in a softmax or sigmoid, for gradient-based scoring.

keras.applications models end in ``Dense(classes, activation="softmax")``;
others in an ``Activation("softmax")`` or ``Softmax`` layer or a
``keras.ops.softmax`` node. Gradient measures take a cross-entropy of
``logits / temperature``: fed probabilities instead, they rank filters
almost unrelatedly to the same weights' logits. ``logits_function`` finds the
final activation and returns a forward function that stops before it, so the
scores equal those of the same weights without the activation.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from tfprune.graph.model_graph import pack_like, producers
from tfprune.handlers import LayerHandler, handler_for
from tfprune.handlers.base import PROBABILITY_ACTIVATIONS


def _activation_name(operation) -> str | None:
    """The name of a layer's ``activation`` attribute (Dense, Activation), if it has one."""
    activation = getattr(operation, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def _probability_activation(model: keras.Model, output) -> tuple[str, str] | None:
    call = producers(model).get(id(output))
    if call is None:
        return None
    handler = handler_for(call.operation) or LayerHandler()
    name = handler.probability_activation(call.operation)
    return (name, call.name) if name else None


def output_activations(model: keras.Model) -> list[tuple[str, str] | None]:
    """Per entry of ``model.outputs``: its final softmax / sigmoid, if any.

    Returns:
        ``(activation, layer or op name)`` for an output that is probabilities, else None.
    """
    return [_probability_activation(model, output) for output in model.outputs]


def final_activation(model: keras.Model) -> tuple[str, str] | None:
    """``(activation, layer or op name)`` if the model's one output is probabilities, else None."""
    if len(model.outputs) != 1:
        return None
    return output_activations(model)[0]


def logits_function(model: keras.Model, look_through=None) -> Callable:
    """``forward(inputs, training) -> outputs``: the model with final softmax / sigmoid removed.

    A layer with an ``activation`` (Dense, Conv, Activation) runs with a linear
    activation while the forward pass is built (the same variables, so the
    gradients are the model's own); a ``Softmax`` layer or a keras.ops softmax
    / sigmoid node is cut off by a sub-model ending at its input. Outputs that
    are not probabilities are returned as they are.

    Args:
        model: A built Keras model.
        look_through: One bool per entry of ``model.outputs``: which outputs to
            return as logits (default: every output that is probabilities).

    Returns:
        A function returning what the model returns (one tensor, a list or a
        dict), with the chosen outputs replaced by their logits.
    """
    activations = output_activations(model)
    if look_through is None:
        look_through = [found is not None for found in activations]
    calls = producers(model)
    swapped, outputs, cut = [], list(model.outputs), False
    for index, (found, wanted) in enumerate(zip(activations, look_through, strict=True)):
        if found is None or not wanted:
            continue
        call = calls[id(model.outputs[index])]
        if _activation_name(call.operation) in PROBABILITY_ACTIVATIONS:
            swapped.append(call.operation)
        else:
            outputs[index], cut = call.inputs[0], True
    if cut:
        forward_model = keras.Model(pack_like(model, "inputs", model.inputs),
                                    pack_like(model, "outputs", outputs),
                                    name=f"{model.name}_logits")
    else:
        forward_model = model
    if not swapped:
        return lambda inputs, training: forward_model(inputs, training=training)

    def forward(inputs, training):
        saved = [operation.activation for operation in swapped]
        for operation in swapped:
            operation.activation = keras.activations.linear
        try:
            return forward_model(inputs, training=training)
        finally:
            for operation, activation in zip(swapped, saved, strict=True):
                operation.activation = activation
    return forward
