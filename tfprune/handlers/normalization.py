"""Handlers of normalization layers: per-channel (BatchNorm), across channels (LayerNorm, RMS)."""

from __future__ import annotations

import weakref

import keras
import numpy as np

from tfprune.handlers.base import (
    LayerHandler,
    block,
    follow,
    follow_unless,
    pass_through,
    take,
)
from tfprune.keras_objects import KeptChannelsLayerNormalization
from tfprune.layer_configs import layer_config


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
    """Normalizes across the channels (Softmax, normalizations tfprune cannot rescale).

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


class LayerNorm(AcrossChannels):
    """``keras.layers.LayerNormalization`` over the last axis: its channels follow.

    A removed channel is zero in the masked model (every layer writing the
    stream is masked, and so are this layer's gamma and beta), but the mean and
    variance still run over all ``d`` channels. A LayerNormalization over the
    ``k`` kept channels would divide by ``k``; ``slim`` builds a
    ``tfprune.keras_objects.KeptChannelsLayerNormalization`` instead, which
    computes the ``d``-channel statistics from the kept ones, so the slimmed
    model computes what the masked one does. keras-hub's classes build plain
    LayerNormalizations, so a model holding one that loses channels is not
    slimmed into its own class (``same_class_obstacle``). Other axes, or
    ``rms_scaling``, keep the channels whole.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        if _channel_axes(layer, rank) != {rank - 1} or layer.rms_scaling:
            super().analyse(analysis, layer, inputs, outputs)
        else:
            follow(analysis, layer, inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask):
        if in_mask is None:
            return []
        return [(weight, np.asarray(in_mask, np.float32))
                for weight in (layer.gamma, layer.beta) if weight is not None]

    def slim(self, layer, context):
        config, weights = layer_config(layer), layer.get_weights()
        index = context.input_index(layer)
        if index is None:
            return config, weights
        config["full_width"] = int(getattr(layer, "full_width", weights[0].shape[0]))
        return config, [take(weight, index, 0) for weight in weights]

    def rebuilt_class(self, layer, context):
        """``KeptChannelsLayerNormalization`` when the layer loses channels."""
        if context.input_index(layer) is None:
            return type(layer)
        return KeptChannelsLayerNormalization

    def same_class_obstacle(self, layer, context):
        if context.input_index(layer) is None:
            return None
        return (f"its LayerNormalization {layer.name!r} loses channels: the class would "
                "normalize over the kept ones, the masked model over all of them")


#: What an RMS normalization multiplies ``x / rms(x)`` by: its ``scale`` (Keras, Llama) or
#: ``1 + scale`` (Gemma).
RMS_FORMS = {"scale": lambda scale: scale, "one_plus_scale": lambda scale: 1.0 + scale}


#: ``rms_form`` per layer, found once: the analysis, ``slim`` and the rescaled weights ask.
_FORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def rms_form(layer) -> str | None:
    """How a normalization scales ``x / sqrt(mean(x^2) + epsilon)``, found by calling it.

    Returns ``"scale"`` or ``"one_plus_scale"`` (``RMS_FORMS``) for a layer with one
    weight of the channels' size that computes that on a probe with a nonzero mean
    (which a LayerNormalization would subtract), else None. Found once per layer.
    """
    if layer not in _FORMS:
        _FORMS[layer] = _probed_form(layer)
    return _FORMS[layer]


def _probed_form(layer) -> str | None:
    """``rms_form``, computed: the layer called on a probe, compared with each form."""
    weights = layer.get_weights()
    if len(weights) != 1 or np.ndim(weights[0]) != 1:
        return None
    scale = weights[0].astype(np.float64)
    probe = np.random.default_rng(0).normal(1.0, 1.0, (2, scale.size))
    try:
        output = np.asarray(layer(probe.astype(np.float32)), np.float64)
    except Exception:  # noqa: BLE001 - a layer that cannot take the probe is not this kind
        return None
    epsilon = float(layer_config(layer).get("epsilon", 1e-6))
    normed = probe / np.sqrt(np.mean(probe ** 2, axis=-1, keepdims=True) + epsilon)
    for form, factor in RMS_FORMS.items():
        if np.allclose(output, normed * factor(scale), rtol=1e-3, atol=1e-4):
            return form
    return None


class RootMeanSquare(AcrossChannels):
    """RMS normalizations (Keras', keras-hub's Gemma, Llama, Mistral...): channels follow.

    ``x / sqrt(mean(x^2) + epsilon) * scale`` (or ``1 + scale``) over the last
    axis. A removed channel is zero in the masked model, so it adds nothing to
    the sum of squares, but the mean still divides by all ``d`` channels where
    the slimmed layer divides by the ``k`` kept. ``slim`` makes up for it:
    epsilon times ``d / k`` (where the config has ``epsilon``) and the scale
    times ``sqrt(d / k)``, so the slimmed layer computes exactly what the
    masked one does. (keras-hub's generic ``RMSNormalization`` fixes its
    epsilon at 1e-6, so there the two differ by about 1e-6 relative.) A layer
    that turns out not to compute this form (``rms_form``), such as a
    LayerNormalization named like one, keeps its channels whole.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        if hasattr(layer, "axis") and _channel_axes(layer, rank) != {rank - 1}:
            super().analyse(analysis, layer, inputs, outputs)
        elif rms_form(layer) is None:
            block(analysis, layer, inputs, outputs,
                  f"{type(layer).__name__} normalizes across the channels, and is not an "
                  "RMS normalization tfprune can rescale")
        else:
            follow(analysis, layer, inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask):
        if in_mask is None:
            return []
        return [(layer.weights[0], np.asarray(in_mask, np.float32))]

    def slim(self, layer, context):
        config, weights = layer_config(layer), layer.get_weights()
        index = context.input_index(layer)
        if index is None:
            return config, weights
        if "epsilon" in config:
            config["epsilon"] = float(config["epsilon"]) * weights[0].shape[0] / index.size
        return config, [take(self.rescaled_weights(layer, context)[0][1], index, -1)]

    def rescaled_weights(self, layer, context):
        """The scale, times ``sqrt(d / k)`` (``1 + scale`` in Gemma's form)."""
        index = context.input_index(layer)
        if index is None:
            return []
        variable = layer.weights[0]
        scale = np.asarray(variable, np.float64)
        gain = np.sqrt(scale.shape[0] / index.size)
        scale = scale * gain if rms_form(layer) == "scale" else (1.0 + scale) * gain - 1.0
        return [(variable, scale.astype(variable.dtype))]


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
    _available("LayerNormalization"): LayerNorm(),
    _available("RMSNormalization"): RootMeanSquare(),
    _available("Softmax"): SoftmaxLayer(),
    _available("UnitNormalization"): UnitNorm(),
}
