"""Mean gradients g and Hessian-gradient products Hg with nested ``tf.GradientTape``.

Never builds the Hessian: ``Hg = d/dtheta [ sum_i stop_gradient(g_i) * dL/dtheta_i ]``
costs about two gradient passes per batch. BatchNorm runs in inference mode and
the cross-entropy is taken on ``logits / temperature``, as the reference code does.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _loss(model: keras.Model, images, labels, temperature: float) -> tf.Tensor:
    """Mean cross-entropy of ``softmax(model(images) / temperature)``, BN in inference mode.

    Not ``TemperatureCrossEntropy``: a Keras ``Loss`` object casts to floatx
    (float32), which would cap the precision of float64 models.
    """
    logits = model(images, training=False)
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        labels, logits / temperature, from_logits=True
    ))


class GradientEstimator:
    """Computes g and Hg for a model's trainable variables, one traced function per shape.

    Args:
        model: A built Keras model mapping images to logits.
        temperature: Logits are divided by it in the loss.

    Example:
        >>> estimator = GradientEstimator(model, temperature=1.0)
        >>> g = estimator.mean_gradient(batches)
        >>> hg = estimator.hessian_gradient_product(g, batches)
    """

    def __init__(self, model: keras.Model, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.model = model
        self.temperature = float(temperature)
        self.variables = list(model.trainable_variables)
        self._gradient_fn = tf.function(self._batch_gradient, reduce_retracing=True)
        self._hvp_fn = tf.function(self._batch_hessian_gradient, reduce_retracing=True)

    def _batch_gradient(self, images, labels):
        with tf.GradientTape() as tape:
            loss = _loss(self.model, images, labels, self.temperature)
        return tape.gradient(loss, self.variables)

    def _batch_hessian_gradient(self, images, labels, g):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = _loss(self.model, images, labels, self.temperature)
            grads = inner.gradient(loss, self.variables)
            pairs = zip(g, grads, strict=True)
            z = tf.add_n([tf.reduce_sum(tf.stop_gradient(gi) * grad) for gi, grad in pairs])
        return outer.gradient(z, self.variables)

    def mean_gradient(self, batches) -> list[tf.Tensor]:
        """Returns g, the example-weighted mean gradient over ``(images, labels)`` batches."""
        return self._weighted_mean(batches, self._gradient_fn)

    def hessian_gradient_product(self, g, batches) -> list[tf.Tensor]:
        """Returns H g averaged over batches (e.g. one class-balanced batch per class)."""
        g = [tf.convert_to_tensor(gi) for gi in g]
        return self._weighted_mean(batches, lambda x, y: self._hvp_fn(x, y, g))

    def _weighted_mean(self, batches, fn) -> list[tf.Tensor]:
        total, count = None, 0
        for images, labels in batches:
            size = int(images.shape[0])
            values = fn(tf.convert_to_tensor(images), tf.convert_to_tensor(labels))
            scaled = [v * size for v in values]
            total = scaled if total is None else [t + s for t, s in zip(total, scaled, strict=True)]
            count += size
        if not count:
            raise ValueError("no batches to estimate from.")
        return [t / count for t in total]
