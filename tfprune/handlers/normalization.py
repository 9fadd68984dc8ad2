"""Handlers of normalization layers: per-channel (BatchNorm) or across channels (LayerNorm)."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.handlers.base import LayerHandler, block, follow, follow_unless, pass_through, take


def _channel_axes(layer, rank: int) -> set[int]:
    """The layer's ``axis`` setting as non-negative axes of a rank-``rank`` tensor."""
    axis = layer.axis
    axes = axis if isinstance(axis, list | tuple) else [axis]
    return {a % rank for a in axes}


class BatchNorm(LayerHandler):
    """BatchNormalization over the channel axis: gamma, beta and moving statistics per channel.

    All four follow the channel: a removed channel's are masked (and counted as
    removed parameters) and sliced away by ``slim``.
    """

    #: The per-channel weights (GroupNormalization has no moving statistics).
    channel_weights = ("gamma", "beta", "moving_mean", "moving_variance")

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        follow_unless(analysis, layer, inputs, outputs,
                      None if _channel_axes(layer, rank) == {rank - 1} else
                      f"BatchNormalization over axis {layer.axis}, not the channel axis")

    def variable_masks(self, layer, in_mask, out_mask):
        if in_mask is None:
            return []
        mask = np.asarray(in_mask, np.float32)
        return [(getattr(layer, name), mask) for name in self.channel_weights
                if getattr(layer, name, None) is not None]

    def slim(self, layer, context):
        index = context.input_index(layer)
        return layer.get_config(), [take(w, index, -1) for w in layer.get_weights()]

    def batch_statistics(self, layer):
        return layer


class GroupNorm(BatchNorm):
    """GroupNormalization: channels go in whole groups of ``channels / groups``.

    A group whose channels are all zero normalizes to zero (its mean and
    variance are 0) and its gamma and beta are masked, so removing whole
    groups leaves the others exactly as they were; the slimmed layer has
    fewer groups. With one group it normalizes across all the channels, which
    are then kept whole.
    """

    channel_weights = ("gamma", "beta")

    def batch_statistics(self, layer):
        return None

    def analyse(self, analysis, layer, inputs, outputs):
        rank, groups = len(inputs[0].shape), layer.groups
        if _channel_axes(layer, rank) != {rank - 1}:
            pass_through(analysis, layer, inputs, outputs)
        elif groups == 1:
            block(analysis, layer, inputs, outputs,
                  "GroupNormalization with one group normalizes across the channels")
        elif not analysis.layout(inputs[0]).plain:
            block(analysis, layer, inputs, outputs,
                  "GroupNormalization of a concatenation keeps its channels")
        else:
            follow(analysis, layer, inputs, outputs)
            analysis.constrain(analysis.layout(inputs[0]), analysis.name_of(layer),
                               atom=inputs[0].shape[-1] // groups)

    def slim(self, layer, context):
        config, weights = super().slim(layer, context)
        index = context.input_index(layer)
        if index is not None:
            channels = (layer.gamma if layer.scale else layer.beta).shape[0]
            config["groups"] = int(index.size) // (channels // layer.groups)
        return config, weights


class AcrossChannels(LayerHandler):
    """Normalizes across the channels (LayerNormalization, RMSNormalization, Softmax).

    A removed channel is zero in the masked model but absent from the slimmed
    one, and either way it would change the mean, variance or sum the other
    channels are normalized by; so its channels are kept whole.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        if hasattr(layer, "axis") and rank - 1 not in _channel_axes(layer, rank):
            pass_through(analysis, layer, inputs, outputs)
            return
        block(analysis, layer, inputs, outputs,
              f"{type(layer).__name__} normalizes across the channels")


class SoftmaxLayer(AcrossChannels):
    """``keras.layers.Softmax``: normalizes across the channels; its input is logits."""

    def probability_activation(self, layer):
        return "softmax"


class UnitNorm(LayerHandler):
    """UnitNormalization: a zero channel leaves the L2 norm unchanged, so channels pass."""

    def analyse(self, analysis, layer, inputs, outputs):
        pass_through(analysis, layer, inputs, outputs)


def _available(*names: str) -> tuple:
    return tuple(getattr(keras.layers, name) for name in names if hasattr(keras.layers, name))


#: Built-in normalization handlers: layer classes -> handler.
NORMALIZATION_HANDLERS = {
    _available("BatchNormalization"): BatchNorm(),
    _available("GroupNormalization"): GroupNorm(),
    _available("LayerNormalization", "RMSNormalization"): AcrossChannels(),
    _available("Softmax"): SoftmaxLayer(),
    _available("UnitNormalization"): UnitNorm(),
}
