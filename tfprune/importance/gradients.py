"""Mean gradients g and Hessian-gradient products Hg with nested ``tf.GradientTape``.

Never builds the Hessian: ``Hg = d/dtheta [ sum_i stop_gradient(g_i) * dL/dtheta_i ]``
costs about three gradient passes per batch (forward, backward, and the
backward of the backward). BatchNorm runs in inference mode and
the cross-entropy is taken on ``logits / temperature``, as the reference code does.
A model ending in a softmax or sigmoid is scored on the logits before it
(``tfprune.importance.logits``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfprune.importance.logits import logits_function
from tfprune.importance.scores import ScoringError


def _loss(forward, images, labels, temperature: float) -> tf.Tensor:
    """Mean cross-entropy of ``softmax(forward(images) / temperature)``, BN in inference mode.

    Not ``TemperatureCrossEntropy``: a Keras ``Loss`` object casts to floatx
    (float32), which would cap the precision of float64 models.
    """
    logits = forward(images, training=False)
    temperature = tf.cast(temperature, logits.dtype)
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        labels, logits / temperature, from_logits=True
    ))


def _dense(gradients) -> list:
    """Gradients as dense tensors: an Embedding's sparse ``IndexedSlices`` are scattered."""
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]


class GradientEstimator:
    """Computes g and Hg for a model's trainable variables with functions traced once.

    The batch dimension is left open in the traced signatures and the
    temperature is a tensor argument, so every batch size and temperature
    (e.g. GraSP's 200 and 1) reuses one trace per function.

    Hg is returned only for ``hessian_variables`` (scoring needs it for the
    prunable kernels alone): its rows for the other variables, such as BatchNorm
    parameters, biases and the classifier, are never computed. g always covers
    every trainable variable, since Hg's rows sum over all of them.

    Args:
        model: A built Keras model mapping images to logits.
        temperature: The default temperature: logits are divided by it in the loss.
        hessian_variables: The trainable variables Hg is returned for, in this
            order; None (default): all of ``model.trainable_variables``.

    Example:
        >>> estimator = GradientEstimator(model, temperature=1.0)
        >>> g = estimator.mean_gradient(batches)
        >>> hg = estimator.hessian_gradient_product(g, batches)
    """

    def __init__(self, model: keras.Model, temperature: float = 1.0, hessian_variables=None):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.model = model
        self.temperature = float(temperature)
        self.variables = list(model.trainable_variables)
        self.hessian_variables = self._check_hessian_variables(hessian_variables)
        if not getattr(model, "inputs", None) or len(model.inputs) != 1:
            raise ValueError(f"model {model.name!r} must be built with exactly one input.")
        if int(model.outputs[0].shape[-1]) < 2:
            raise ScoringError(
                f"model {model.name!r} has one output unit (a binary classifier or a "
                "regression): gradient measures take a cross-entropy over classes, which is "
                "constant for one unit, so their scores would be meaningless. Use a data-free "
                "measure (magnitude) or give the model one output per class.")
        self._forward = logits_function(model)
        image_spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype)
        self._input_dtype = image_spec.dtype
        batch_specs = [image_spec, tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.float64)]
        g_spec = [tf.TensorSpec(v.shape, v.dtype) for v in self.variables]
        self._gradient_fn = tf.function(self._batch_gradient, input_signature=batch_specs)
        self._hvp_fn = tf.function(
            self._batch_hessian_gradient, input_signature=[*batch_specs, g_spec]
        )
        self._fused_fn = tf.function(self._batch_gradient_and_hessian_gradient,
                                     input_signature=batch_specs)

    def _check_hessian_variables(self, variables) -> list:
        if variables is None:
            return self.variables
        variables = list(variables)
        trainable = {id(v) for v in self.variables}
        strangers = [v.path for v in variables if id(v) not in trainable]
        if strangers or not variables:
            raise ValueError(
                f"hessian_variables must be a non-empty list of model {self.model.name!r}'s "
                f"trainable variables; not trainable in it: {strangers}."
            )
        return variables

    def _batch_gradient(self, images, labels, temperature):
        with tf.GradientTape() as tape:
            loss = _loss(self._forward, images, labels, temperature)
        return _dense(tape.gradient(loss, self.variables))

    def _batch_hessian_gradient(self, images, labels, temperature, g):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = _loss(self._forward, images, labels, temperature)
            grads = _dense(inner.gradient(loss, self.variables))
            pairs = zip(g, grads, strict=True)
            z = tf.add_n([tf.reduce_sum(tf.stop_gradient(gi) * grad) for gi, grad in pairs])
        return _dense(outer.gradient(z, self.hessian_variables))

    def _batch_gradient_and_hessian_gradient(self, images, labels, temperature):
        """One batch's g and Hg in one nested pass: Hg = d/dtheta (||g||^2 / 2)."""
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = _loss(self._forward, images, labels, temperature)
            grads = _dense(inner.gradient(loss, self.variables))
            z = 0.5 * tf.add_n([tf.reduce_sum(grad * grad) for grad in grads])
        return grads, _dense(outer.gradient(z, self.hessian_variables))

    def gradient_and_hessian_gradient(
        self, images, labels, temperature: float | None = None
    ) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """``(g, Hg)`` of a single batch in one nested-tape pass.

        g has one tensor per trainable variable, Hg one per ``hessian_variables``.

        Since g is the gradient of this batch's loss, d/dtheta (g^T g / 2) = H g:
        one double-backward pass instead of a gradient pass plus a
        Hessian-gradient pass. Equals ``hessian_gradient_product(g, [(images, labels)])``.
        """
        images = tf.cast(tf.convert_to_tensor(images), self._input_dtype)
        labels = tf.cast(tf.convert_to_tensor(labels), tf.int64)
        return self._fused_fn(images, labels, self._temperature(temperature))

    def _temperature(self, temperature: float | None) -> tf.Tensor:
        value = self.temperature if temperature is None else float(temperature)
        if value <= 0:
            raise ValueError(f"temperature must be > 0, got {value}.")
        return tf.constant(value, tf.float64)

    def mean_gradient(self, batches, temperature: float | None = None) -> list[tf.Tensor]:
        """Returns g, the example-weighted mean gradient over ``(images, labels)`` batches.

        Args:
            batches: An iterable of ``(images, labels)`` pairs.
            temperature: Overrides the estimator's temperature for this call.
        """
        t = self._temperature(temperature)
        return self._weighted_mean(batches, lambda x, y: self._gradient_fn(x, y, t))

    def hessian_gradient_product(
        self, g, batches, temperature: float | None = None
    ) -> list[tf.Tensor]:
        """Returns H g averaged over batches (e.g. one class-balanced batch per class).

        One tensor per variable of ``hessian_variables``.

        Args:
            g: The vector to multiply, one tensor per trainable variable.
            batches: An iterable of ``(images, labels)`` pairs.
            temperature: Overrides the estimator's temperature for this call.
        """
        g = [tf.cast(gi, v.dtype) for gi, v in zip(g, self.variables, strict=True)]
        t = self._temperature(temperature)
        return self._weighted_mean(batches, lambda x, y: self._hvp_fn(x, y, t, g))

    def _weighted_mean(self, batches, fn) -> list[tf.Tensor]:
        total, count = None, 0
        for images, labels in batches:
            size = int(images.shape[0])
            images = tf.cast(tf.convert_to_tensor(images), self._input_dtype)
            values = fn(images, tf.cast(tf.convert_to_tensor(labels), tf.int64))
            scaled = [v * size for v in values]
            total = scaled if total is None else [t + s for t, s in zip(total, scaled, strict=True)]
            count += size
        if not count:
            raise ValueError("no batches to estimate from.")
        return [t / count for t in total]
