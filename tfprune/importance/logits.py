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
from keras.src.ops import nn as nn_ops

from tfprune.model_graph import producers

#: Final activations whose input is the logits.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
_PROBABILITY_OPS = tuple(getattr(nn_ops, name) for name in ("Softmax", "Sigmoid")
                         if hasattr(nn_ops, name))


def _activation_name(operation) -> str | None:
    activation = getattr(operation, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def final_activation(model: keras.Model) -> tuple[str, str] | None:
    """``(activation, layer or op name)`` when the model's output is probabilities, else None."""
    if len(model.outputs) != 1:
        return None
    call = producers(model).get(id(model.outputs[0]))
    if call is None:
        return None
    operation = call.operation
    if isinstance(operation, keras.layers.Softmax):
        return "softmax", call.name
    if isinstance(operation, _PROBABILITY_OPS):
        return type(operation).__name__.lower(), call.name
    name = _activation_name(operation)
    return (name, call.name) if name in PROBABILITY_ACTIVATIONS else None


def logits_function(model: keras.Model) -> Callable:
    """``forward(inputs, training) -> logits``: the model without its final softmax / sigmoid.

    A layer with an ``activation`` (Dense, Conv, Activation) runs with a linear
    activation while the forward pass is built (the same variables, so the
    gradients are the model's own); a ``Softmax`` layer or a keras.ops softmax
    / sigmoid node is cut off by a sub-model ending at its input. A model whose
    output is not probabilities runs as it is.
    """
    found = final_activation(model)
    if found is None:
        return lambda inputs, training: model(inputs, training=training)
    call = producers(model)[id(model.outputs[0])]
    operation = call.operation
    if _activation_name(operation) in PROBABILITY_ACTIVATIONS:
        def forward(inputs, training):
            saved = operation.activation
            operation.activation = keras.activations.linear
            try:
                return model(inputs, training=training)
            finally:
                operation.activation = saved
        return forward
    before = keras.Model(model.inputs, call.inputs[0], name=f"{model.name}_logits")
    return lambda inputs, training: before(inputs, training=training)
