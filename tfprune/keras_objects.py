"""tfprune's Keras-serializable objects that saved models refer to: the mask constraint.

``import tfprune`` imports this module (and ``tfprune.losses``), so a model saved
by tfprune (a pruned run's ``model.keras``, whose layers carry
``MaskConstraint``s, compiled with ``TemperatureCrossEntropy``) loads with plain
``keras.saving.load_model`` after ``import tfprune``. It is tfprune's one
deliberate import-time effect: Keras' registry of custom objects.
"""

from __future__ import annotations

import base64

import keras
import numpy as np
import tensorflow as tf


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
