import numpy as np
import pytest
import tensorflow as tf
from tiny_models import batches, explicit_gradient_and_hessian, flat_loss_fn, tiny_model

from tfprune.importance import GradientEstimator


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_hg_from_nested_tapes_equals_explicit_hessian_times_g(temperature):
    model = tiny_model()
    data = batches()
    estimator = GradientEstimator(model, temperature)
    g = estimator.mean_gradient(data)
    hg = estimator.hessian_gradient_product(g, data)
    g_flat = tf.concat([tf.reshape(t, [-1]) for t in g], 0).numpy()
    hg_flat = tf.concat([tf.reshape(t, [-1]) for t in hg], 0).numpy()

    theta, grad, hessian = explicit_gradient_and_hessian(model, data, temperature)
    assert hessian.shape == (theta.size, theta.size)
    np.testing.assert_allclose(grad, g_flat, rtol=1e-9, atol=1e-12)
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


def test_fused_single_batch_pass_equals_the_two_pass_product():
    model = tiny_model()
    data = batches(count=1, size=6)
    estimator = GradientEstimator(model, 3.0)
    g = estimator.mean_gradient(data)
    hg = estimator.hessian_gradient_product(g, data)
    fused_g, fused_hg = estimator.gradient_and_hessian_gradient(*data[0])
    for a, b in zip(g + hg, fused_g + fused_hg, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-9, atol=1e-14)


def test_hg_for_chosen_variables_is_their_rows_of_the_full_product():
    model = tiny_model()
    data = batches(count=1, size=6)
    kernels = [model.get_layer("dense").kernel, model.get_layer("conv").kernel]
    estimator = GradientEstimator(model, 2.0, hessian_variables=kernels)
    g = estimator.mean_gradient(data)
    hg = estimator.hessian_gradient_product(g, data)
    fused_g, fused_hg = estimator.gradient_and_hessian_gradient(*data[0])
    assert len(g) == len(model.trainable_variables) and len(hg) == len(fused_hg) == 2

    theta, _, hessian = explicit_gradient_and_hessian(model, data, 2.0)
    g_flat = tf.concat([tf.reshape(t, [-1]) for t in g], 0).numpy()
    full = hessian @ g_flat
    offsets = np.cumsum([0] + [int(np.prod(v.shape)) for v in model.trainable_variables])
    for kernel, rows, fused_rows in zip(kernels, hg, fused_hg, strict=True):
        index = [id(v) for v in model.trainable_variables].index(id(kernel))
        expected = full[offsets[index]:offsets[index + 1]].reshape(kernel.shape)
        np.testing.assert_allclose(rows.numpy(), expected, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(fused_rows.numpy(), expected, rtol=1e-7, atol=1e-12)


def test_hessian_variables_must_be_among_the_differentiated_variables():
    model = tiny_model()
    moving_mean = model.get_layer("bn").moving_mean
    with pytest.raises(ValueError, match="not among them.*moving_mean"):
        GradientEstimator(model, hessian_variables=[moving_mean])
