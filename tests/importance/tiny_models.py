"""Tiny float64 models and an independent flat-parameter loss for numerical tests."""

import keras
import numpy as np
import tensorflow as tf


def tiny_model():
    """A conv + BN + dense model in float64, small enough for an explicit Hessian."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4, 4, 2), dtype="float64")
    x = keras.layers.Conv2D(3, 3, use_bias=False, dtype="float64", name="conv")(inputs)
    x = keras.layers.BatchNormalization(dtype="float64", name="bn")(x)
    x = keras.layers.ReLU(dtype="float64")(x)
    x = keras.layers.Flatten(dtype="float64")(x)
    outputs = keras.layers.Dense(3, dtype="float64", name="dense")(x)
    return keras.Model(inputs, outputs)


def batches(seed=0, count=2, size=5):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(size, 4, 4, 2)), rng.integers(0, 3, size=size)) for _ in range(count)]


def flat_loss_fn(model, data, temperature):
    """Loss as a function of one flat float64 parameter vector (independent of the estimator)."""
    variables = model.trainable_variables
    shapes = [v.shape for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    x = np.concatenate([d[0] for d in data])
    y = np.concatenate([d[1] for d in data])

    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(flat):
        parts = tf.split(flat, sizes)
        params = [tf.reshape(part, shape) for part, shape in zip(parts, shapes, strict=True)]
        logits, _ = model.stateless_call(params, non_trainable, x, training=False)
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, logits / temperature, from_logits=True))

    theta = tf.concat([tf.reshape(v, [-1]) for v in variables], 0)
    return loss, theta


def explicit_gradient_and_hessian(model, data, temperature):
    """(theta, gradient, Hessian) of the flat loss, the Hessian as a full jacobian."""
    loss, theta = flat_loss_fn(model, data, temperature)
    theta = tf.Variable(theta)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = loss(theta)
        grad = inner.gradient(value, theta)
    hessian = outer.jacobian(grad, theta).numpy()
    return theta.numpy(), grad.numpy(), hessian
