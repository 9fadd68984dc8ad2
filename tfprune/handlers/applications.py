"""Handlers of the custom layers keras.applications models are built with."""

from __future__ import annotations

import numpy as np
from keras.src.applications import convnext, inception_resnet_v2

from tfprune.handlers.base import LayerHandler, follow, merge, take


class ChannelScale(LayerHandler):
    """A trainable scale per channel (ConvNeXt's ``LayerScale``: ``x * gamma``)."""

    def analyse(self, analysis, layer, inputs, outputs):
        follow(analysis, layer, inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask):
        return [] if in_mask is None else [(layer.gamma, np.asarray(in_mask, np.float32))]

    def slim(self, layer, context):
        index = context.input_index(layer)
        config = layer.get_config()
        if index is not None:
            config["projection_dim"] = int(index.size)
        return config, [take(w, index, -1) for w in layer.get_weights()]


class ScaledSum(LayerHandler):
    """InceptionResNetV2's ``CustomScaleLayer``: ``inputs[0] + inputs[1] * scale``."""

    def analyse(self, analysis, layer, inputs, outputs):
        merge(analysis, layer, inputs, outputs)


#: Built-in handlers of keras.applications' own layers.
APPLICATION_HANDLERS = {
    (convnext.LayerScale,): ChannelScale(),
    (inception_resnet_v2.CustomScaleLayer,): ScaledSum(),
}
