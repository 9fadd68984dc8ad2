"""``TimeDistributed``: handled as the layer it wraps, at every timestep.

``TimeDistributed(Conv2D(...))`` applies one conv to each frame of a
``(batch, time, height, width, channels)`` tensor; its channels are the conv's
filters on the last axis, so every rule of the wrapped layer's handler holds
as it is: its channel rule, its masks (the wrapped layer's variables are the
wrapper's), its slim (the wrapper's config carries the rebuilt layer's) and
its FLOPs (the positions of the output now include the timesteps). The
wrapped layer's handler sees the layer under the wrapper's name, the name the
model's graph knows.
"""

from __future__ import annotations

import keras

from tfprune.handlers.base import LayerHandler, block, handler_for
from tfprune.handlers.channel_analysis import GraphError


class _UnderWrapperName:
    """The wrapped layer, answering to the wrapper's name (every other attribute its own)."""

    def __init__(self, wrapper):
        self.name = wrapper.name
        self._layer = wrapper.layer

    def __getattr__(self, attribute):
        return getattr(self._layer, attribute)


class _CallOfWrapped:
    """A call of the wrapper seen as a call of the layer it wraps (for ``flops``)."""

    def __init__(self, call):
        self.operation = call.operation.layer
        self.inputs, self.outputs = call.inputs, call.outputs
        self.name = call.name


class Distributed(LayerHandler):
    """``TimeDistributed``: the wrapped layer's handler, under the wrapper's name.

    Args:
        inner: The wrapped layer's handler (None until bound to a layer, or
            when the wrapped type has none).
        wrapped: The wrapped layer.
    """

    def __init__(self, inner: LayerHandler | None = None, wrapped=None):
        self.inner = inner
        self.wrapped = wrapped
        scored = inner.scored_kernel if inner is not None else None
        self.scored_kernel = None if scored is None else f"layer.{scored}"
        self.filter_axis = inner.filter_axis if inner is not None else -1

    def bind(self, layer) -> Distributed:
        """This wrapper's handler: that of the layer it wraps."""
        return Distributed(handler_for(layer.layer), layer.layer)

    def analyse(self, analysis, layer, inputs, outputs):
        """The wrapped layer's channel rule.

        Raises:
            GraphError: When tfprune has no handler for the wrapped layer's
                type (a nested model, a custom layer).
        """
        if self.inner is None:
            raise GraphError(
                f"{layer.name!r} (TimeDistributed) wraps {type(layer.layer).__name__} "
                f"{layer.layer.name!r}, which tfprune has no handler for: keep it whole with "
                f"ignored_layers=[{layer.name!r}], or register a handler for "
                f"{type(layer.layer).__name__} (docs/handlers.md).")
        if self.inner.inner_units(self.wrapped):
            block(analysis, layer, inputs, outputs, f"TimeDistributed around a "
                  f"{type(self.wrapped).__name__} (its inner units are kept whole)")
            return
        self.inner.analyse(analysis, _UnderWrapperName(layer), inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask):
        """The wrapped layer's masks (its variables are the wrapper's)."""
        return self.inner.variable_masks(layer.layer, in_mask, out_mask)

    def slim(self, layer, context):
        """The wrapper's config around the wrapped layer's rebuilt config, and its weights."""
        config, weights = self.inner.slim(_UnderWrapperName(layer), context)
        wrapper_config = layer.get_config()
        wrapped = {key: value for key, value in wrapper_config["layer"].items()
                   if key != "build_config"}  # rebuilt for the new channel count
        wrapper_config["layer"] = {**wrapped, "config": config}
        return wrapper_config, weights

    def batch_statistics(self, layer):
        """The wrapped layer's, when it is a BatchNormalization."""
        return None if self.inner is None else self.inner.batch_statistics(layer.layer)

    def kernels(self, layer) -> list:
        """The wrapped layer's kernels."""
        return self.inner.kernels(layer.layer)

    def flops(self, call, kept) -> int:
        """The wrapped layer's FLOPs, over every timestep (the output's positions include them)."""
        return self.inner.flops(_CallOfWrapped(call), kept)


#: Built-in wrapper handlers: layer classes -> handler.
WRAPPER_HANDLERS = {
    (keras.layers.TimeDistributed,): Distributed(),
}
