"""``tfprune.score`` end to end on real gradients, checked against independent computations."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_models import explicit_gradient_and_hessian, tiny_model

import tfprune
from tfprune.importance import (
    MEASURES,
    ImportanceScores,
    NonFiniteScoreError,
    SampleError,
    ScoringError,
    register_measure,
)
from tfprune.importance.context import estimator_for


def tiny_data(per_class=2, seed=0):
    """``per_class`` examples of each of the tiny model's 3 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3 * per_class, 4, 4, 2))
    return x, np.repeat(np.arange(3), per_class)


def conv_slice(model, flat):
    """The conv kernel's part of a flat parameter vector, as (elements, filters)."""
    kernel = model.get_layer("conv").kernel
    size = int(np.prod(kernel.shape))
    return flat[:size].reshape(-1, kernel.shape[-1])


@pytest.fixture
def signed_inner_product():
    """A plain-function measure theta * g (signed), registered for one test."""
    register_measure("test_signed_inner_product", lambda view: view.kernel * view.gradient,
                     requires=("gradient",))
    yield "test_signed_inner_product"
    MEASURES.pop("test_signed_inner_product")


def test_score_returns_a_dict_of_prunable_layers():
    model = tfprune.models.build("vgg11", width_multiplier=0.0625)
    scores = tfprune.score(model, "magnitude")
    assert isinstance(scores, dict) and "classifier" not in scores
    assert list(scores)[0] == "block1_unit1_conv" and scores["block1_unit1_conv"].shape == (4,)
    weights = tfprune.score(model, "magnitude", granularity="weight")
    assert weights["block1_unit1_conv"].shape == (3, 3, 3, 4)
    np.testing.assert_allclose(weights["block1_unit1_conv"].reshape(-1, 4).sum(0),
                               scores["block1_unit1_conv"])


def test_magnitude_is_data_independent():
    model = tiny_model()
    alone = tfprune.score(model, "magnitude")
    with_data = tfprune.score(model, "magnitude", tiny_data())
    np.testing.assert_array_equal(alone["conv"], with_data["conv"])
    kernel = model.get_layer("conv").kernel.numpy()
    np.testing.assert_allclose(alone["conv"], (kernel ** 2).reshape(-1, 3).sum(0))


# None: the default, one fused pass over the memory; 2: one class per batch, as the
# reference code; 4: an uneven split (4 + 2) that must still weigh every sample equally.
@pytest.mark.parametrize("hessian_batch_size", [None, 2, 4])
@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_equals_explicit_hessian_formula_at_its_temperature(temperature,
                                                                  hessian_batch_size):
    model = tiny_model()
    x, y = tiny_data(per_class=2)
    scores = tfprune.score(model, "grasp", (x, y), temperature=temperature, samples_per_class=2,
                           hessian_batch_size=hessian_batch_size)

    # The memory is all 6 samples: the same loss as the flat one.
    theta, grad, hessian = explicit_gradient_and_hessian(model, [(x, y)], temperature)
    expected = (conv_slice(model, theta) * conv_slice(model, hessian @ grad)).sum(0)
    np.testing.assert_allclose(scores["conv"], expected, rtol=1e-6, atol=1e-14)
    abs_scores = tfprune.score(model, "grasp_abs", (x, y), samples_per_class=2)
    if temperature == 1.0:
        np.testing.assert_allclose(abs_scores["conv"], np.abs(expected), rtol=1e-6, atol=1e-14)


def test_eq9_norm_change_after_one_sgd_step(signed_inner_product):
    """||Theta_p||^2 after one SGD step of size eta changes by -2 eta Theta_p^T g + O(eta^2)."""
    x, y = tiny_data(per_class=4)
    errors = []
    for eta in (1e-1, 1e-2, 1e-3):
        model = tiny_model()
        inner = tfprune.score(model, signed_inner_product, (x, y), num_samples=len(y))["conv"]
        kernel = model.get_layer("conv").kernel
        before = (kernel.numpy() ** 2).reshape(-1, 3).sum(0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, model(x, training=False), from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        keras.optimizers.SGD(learning_rate=eta).apply(grads, model.trainable_variables)
        change = (kernel.numpy() ** 2).reshape(-1, 3).sum(0) - before
        errors.append(np.max(np.abs(change - (-2 * eta * inner)) / np.abs(2 * eta * inner)))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2
    assert errors[0] / errors[2] == pytest.approx(100, rel=0.05)  # the error is O(eta)


def test_scoring_leaves_weights_and_trainable_state_unchanged():
    model = tiny_model()
    model.get_layer("bn").trainable = False
    before = [w.numpy().copy() for w in model.weights]
    for name in ("snip", "grasp", "proposed", "random"):
        tfprune.score(model, name, tiny_data(), samples_per_class=2)
    for a, b in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert model.get_layer("bn").trainable is False and model.get_layer("conv").trainable


def test_scoring_again_reuses_one_trace():
    model = tiny_model()
    for temperature in (1.0, 5.0):
        tfprune.score(model, "snip", tiny_data(), num_samples=6, temperature=temperature)
        tfprune.score(model, "grasp", tiny_data(), samples_per_class=2)  # one fused pass
        tfprune.score(model, "grasp", tiny_data(), samples_per_class=2, hessian_batch_size=2)
    estimator = estimator_for(model, [model.get_layer("conv").kernel])  # the prunable kernels
    assert estimator._gradient_fn.experimental_get_tracing_count() == 1
    assert estimator._fused_fn.experimental_get_tracing_count() == 1
    assert estimator._hvp_fn.experimental_get_tracing_count() == 1


def test_non_finite_scores_name_the_layer():
    model = tiny_model()
    kernel = model.get_layer("conv").kernel
    kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0, 0, 0, 1]], [np.nan]))
    with pytest.raises(NonFiniteScoreError, match=r"1 NaN/Inf scores of 3 in layer 'conv'"):
        tfprune.score(model, "magnitude")


def test_bad_requests_fail_before_any_pass():
    model = tiny_model()
    with pytest.raises(SampleError, match="measure 'snip' needs data"):
        tfprune.score(model, "snip")
    with pytest.raises(ScoringError, match="weights at initialization"):
        tfprune.score(model, "distance_from_init")
    with pytest.raises(ValueError, match="granularity must be one of"):
        tfprune.score(model, "magnitude", granularity="channel")
    with pytest.raises(TypeError, match="unknown option"):
        tfprune.score(model, "magnitude", num_sample=10)
    with pytest.raises(tfprune.data.DataError, match="fewer than the 5 per class"):
        tfprune.score(model, "grasp", tiny_data(per_class=2), samples_per_class=5)
    no_bn = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 3, name="c"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ScoringError, match="layer 'c' is not followed directly by a Batch"):
        tfprune.score(no_bn, "bn_scale")


def test_distance_from_init_reads_initial_weights_from_a_model_or_file(tmp_path):
    model = tiny_model()
    start = tiny_model()
    path = tmp_path / "initial.weights.h5"
    start.save_weights(path)
    model.get_layer("conv").kernel.assign_add(tf.ones_like(model.get_layer("conv").kernel))
    for source in (start, str(path)):
        scores = tfprune.score(model, "distance_from_init", initial_weights=source)
        np.testing.assert_allclose(scores["conv"], [18.0, 18.0, 18.0])  # 3*3*2 ones per filter


def test_dataset_and_array_inputs_agree_and_count_samples():
    model = tiny_model()
    x, y = tiny_data(per_class=4)
    from_arrays = tfprune.score(model, "snip", (x, y), num_samples=12)
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    from_batched = tfprune.score(model, "snip", batched, num_samples=12)
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(3)[y]))
    from_unbatched = tfprune.score(model, "snip", one_hot, num_samples=12)
    np.testing.assert_allclose(from_batched["conv"], from_arrays["conv"], rtol=1e-9)
    np.testing.assert_allclose(from_unbatched["conv"], from_arrays["conv"], rtol=1e-9)
    assert from_batched.metadata["samples"] == {"gradient": 12}
    grasp = tfprune.score(model, "grasp", batched.repeat(), samples_per_class=3)
    assert grasp.metadata["samples"] == {"hessian": 9}


def test_scores_save_and_load(tmp_path):
    model = tfprune.models.build("vgg11", width_multiplier=0.0625)
    scores = tfprune.score(model, "random", seed=4)
    path = scores.save(tmp_path / "scores" / "random")
    assert path.name == "random.npz" and (tmp_path / "scores" / "random.json").is_file()
    loaded = ImportanceScores.load(path)
    assert list(loaded) == list(scores) and loaded.measure == {"name": "random", "seed": 4}
    for name in scores:
        np.testing.assert_array_equal(loaded[name], scores[name])
    assert "block1_unit1_conv" in loaded.summary()


def test_frozen_layers_score_as_if_they_were_trained():
    # A pretrained backbone frozen under a new head (trainable = False) still has a gradient:
    # its weights join g and H, so the scores equal those of the same model unfrozen.
    model, unfrozen = tiny_model(), tiny_model()
    unfrozen.set_weights(model.get_weights())
    model.get_layer("conv").trainable = False
    model.get_layer("bn").trainable = False
    assert len(model.trainable_variables) < len(unfrozen.trainable_variables)
    for name in ("snip", "grasp", "proposed", "taylor_fo"):
        scores = tfprune.score(model, name, tiny_data(), num_samples=6, samples_per_class=2)
        expected = tfprune.score(unfrozen, name, tiny_data(), num_samples=6, samples_per_class=2)
        assert set(scores) == set(expected) == {"conv"}
        np.testing.assert_allclose(scores["conv"], expected["conv"], rtol=1e-6, atol=1e-15)
        assert np.ptp(expected["conv"]) > 0
