"""Models ending in a softmax are scored on their logits: the scores equal the logits model's."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.importance.logits import final_activation


def body(inputs):
    x = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.layers.Dense(8, activation="relu", name="hidden")(x)


def build(ending):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = body(inputs)
    if ending == "dense_softmax":
        return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="out")(x))
    logits = keras.layers.Dense(4, name="out")(x)
    if ending == "activation_layer":
        return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits))
    if ending == "softmax_layer":
        return keras.Model(inputs, keras.layers.Softmax(name="probs")(logits))
    if ending == "ops_softmax":
        return keras.Model(inputs, keras.ops.softmax(logits))
    return keras.Model(inputs, logits)


DATA = (np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype("float32"),
        np.arange(16) % 4)


@pytest.mark.parametrize("ending", ["dense_softmax", "activation_layer", "softmax_layer",
                                    "ops_softmax"])
@pytest.mark.parametrize("measure", ["snip", "grasp"])
def test_scores_equal_those_of_the_same_weights_without_the_softmax(ending, measure):
    logits_model = build("logits")
    probabilities_model = build(ending)
    probabilities_model.set_weights(logits_model.get_weights())
    assert final_activation(logits_model) is None
    assert final_activation(probabilities_model)[0] == "softmax"
    options = {"samples_per_class": 4} if measure == "grasp" else {"num_samples": 16}
    expected = tfprune.score(logits_model, measure, DATA, **options)
    actual = tfprune.score(probabilities_model, measure, DATA, **options)
    for layer in expected:
        np.testing.assert_allclose(actual[layer], expected[layer], rtol=1e-5, atol=1e-12)
    # and the model itself still outputs probabilities afterwards
    np.testing.assert_allclose(np.sum(probabilities_model(DATA[0][:2]), axis=-1), 1, rtol=1e-5)


def test_scoring_probabilities_as_logits_would_have_ranked_differently():
    """The check above is not vacuous: cross-entropy of probabilities gives other scores."""
    from tfprune.importance.gradients import GradientEstimator

    model = build("dense_softmax")
    estimator = GradientEstimator(model)
    estimator.objective._forward = lambda x, training: model(x, training=training)  # old
    wrong = estimator.mean_gradient([DATA])
    right = GradientEstimator(model).mean_gradient([DATA])
    assert not np.allclose(wrong[0].numpy(), right[0].numpy(), rtol=1e-3)
