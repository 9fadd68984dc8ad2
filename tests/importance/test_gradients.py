import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.importance import GradientEstimator


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


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_hg_from_nested_tapes_equals_explicit_hessian_times_g(temperature):
    model = tiny_model()
    data = batches()
    estimator = GradientEstimator(model, temperature)
    g = estimator.mean_gradient(data)
    hg = estimator.hessian_gradient_product(g, data)
    g_flat = tf.concat([tf.reshape(t, [-1]) for t in g], 0).numpy()
    hg_flat = tf.concat([tf.reshape(t, [-1]) for t in hg], 0).numpy()

    loss, theta = flat_loss_fn(model, data, temperature)
    theta = tf.Variable(theta)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            value = loss(theta)
        grad = inner.gradient(value, theta)
    hessian = outer.jacobian(grad, theta).numpy()
    assert hessian.shape == (theta.shape[0], theta.shape[0])
    np.testing.assert_allclose(grad.numpy(), g_flat, rtol=1e-9, atol=1e-12)
    expected = hessian @ g_flat
    assert np.linalg.norm(hg_flat - expected) <= 1e-5 * np.linalg.norm(expected)


def test_g_equals_central_finite_differences():
    model = tiny_model()
    data = batches(seed=3)
    g = GradientEstimator(model, 1.0).mean_gradient(data)
    g_flat = tf.concat([tf.reshape(t, [-1]) for t in g], 0).numpy()
    loss, theta = flat_loss_fn(model, data, 1.0)
    theta = theta.numpy()
    rng = np.random.default_rng(0)
    eps = 1e-6
    for index in rng.choice(theta.size, size=12, replace=False):
        step = np.zeros_like(theta)
        step[index] = eps
        numeric = (float(loss(theta + step)) - float(loss(theta - step))) / (2 * eps)
        assert numeric == pytest.approx(g_flat[index], rel=1e-5, abs=1e-9)


def test_estimation_leaves_weights_unchanged_and_traces_once():
    model = tiny_model()
    before = [w.numpy().copy() for w in model.weights]
    estimator = GradientEstimator(model, 5.0)
    data = batches(count=4)
    g = estimator.mean_gradient(data)
    estimator.hessian_gradient_product(g, data)
    for a, b in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert estimator._gradient_fn.experimental_get_tracing_count() == 1
    assert estimator._hvp_fn.experimental_get_tracing_count() == 1
