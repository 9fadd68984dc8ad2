"""tfprune's Keras-serializable objects that saved models refer to.

The mask constraint, and the LayerNormalization of a slimmed hidden width.
``import tfprune`` imports this module (and ``tfprune.losses``), so a model saved
by tfprune (a pruned run's ``model.keras``, whose layers carry
``MaskConstraint``s, compiled with ``TemperatureCrossEntropy``; a slimmed
transformer with ``KeptChannelsLayerNormalization``) loads with plain
``keras.saving.load_model`` after ``import tfprune``. It is tfprune's one
deliberate import-time effect: Keras' registry of custom objects.
"""

from __future__ import annotations

import base64

import keras
import numpy as np
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="tfprune")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a variable by a mask variable after each optimizer update.

    It is saved with the model (``model.save``: the mask packed as bits in the
    layer's config), so a reloaded model keeps its removed channels at zero
    while it trains.

    Args:
        mask: A non-trainable ``tf.Variable`` of the variable's shape (or an
            array, made into one).
        inner: A constraint the variable had before, applied first.
    """

    def __init__(self, mask, inner=None):
        if not isinstance(mask, tf.Variable):
            mask = tf.Variable(np.asarray(mask, np.float32), trainable=False)
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        """Returns ``inner(w) * mask``."""
        if self.inner is not None:
            w = self.inner(w)
        return w * tf.cast(self.mask, w.dtype)

    def get_config(self) -> dict:
        """The mask as base64 bits plus its shape, and the inner constraint."""
        kept = np.asarray(self.mask.numpy()) != 0
        return {"shape": list(kept.shape),
                "bits": base64.b64encode(np.packbits(kept.ravel())).decode("ascii"),
                "inner": None if self.inner is None else keras.constraints.serialize(self.inner)}

    @classmethod
    def from_config(cls, config: dict) -> MaskConstraint:
        """Rebuilds the constraint saved by ``get_config``."""
        shape = tuple(config["shape"])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(config["bits"]), np.uint8))
        mask = bits[:int(np.prod(shape))].reshape(shape).astype(np.float32)
        inner = config.get("inner")
        return cls(mask, keras.constraints.deserialize(inner) if inner else None)


@keras.saving.register_keras_serializable(package="tfprune")
class KeptChannelsLayerNormalization(keras.layers.LayerNormalization):
    """A LayerNormalization over the kept channels of a wider, zero-padded stream.

    ``slim`` puts it where a ``keras.layers.LayerNormalization`` lost channels of
    its input (the hidden width of a transformer). In the masked model the
    removed channels are zero and the layer's mean and variance still run over
    all ``full_width`` of them; this layer computes the same statistics from
    the kept channels alone:

    ``mean = sum(x) / D`` and
    ``variance = (sum((x - mean)^2) + (D - k) * mean^2) / D``,

    with ``k`` kept channels of ``D = full_width``. So the slimmed model
    computes what the masked one does; a plain LayerNormalization over ``k``
    channels would not (its mean divides by ``k``). The last axis only, and
    not ``rms_scaling``.

    Args:
        full_width: ``D``, the channel count of the original layer.
        **kwargs: ``keras.layers.LayerNormalization``'s arguments.
    """

    def __init__(self, full_width: int, **kwargs):
        super().__init__(**kwargs)
        if self.rms_scaling:
            raise ValueError("KeptChannelsLayerNormalization does not take rms_scaling.")
        self.full_width = int(full_width)

    def call(self, inputs):
        """Normalizes over the last axis as a LayerNormalization of ``full_width`` would."""
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        width = float(self.full_width)
        missing = width - x.shape[-1]
        mean = ops.sum(x, axis=-1, keepdims=True) / width
        centred = x - mean
        variance = (ops.sum(ops.square(centred), axis=-1, keepdims=True)
                    + missing * ops.square(mean)) / width
        outputs = centred * ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            outputs = outputs * ops.cast(self.gamma, outputs.dtype)
        if self.beta is not None:
            outputs = outputs + ops.cast(self.beta, outputs.dtype)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self) -> dict:
        """LayerNormalization's config and ``full_width``."""
        return {**super().get_config(), "full_width": self.full_width}
