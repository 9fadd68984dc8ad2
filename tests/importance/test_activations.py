"""The activation measure against activations computed here, without the measure's hooks.

A Dense layer's is the mean of |relu(x W + b)| by hand; a convolution's
averages over pixels too and weights the samples by their sample weights; a
MultiHeadAttention head's is its attention output, rebuilt from the layer's
own attention scores and value projection.
"""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.importance import ScoringError

RNG = np.random.default_rng(0)


def _compiled(model):
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_dense_layer_scores_the_mean_absolute_output_of_each_unit():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    model = _compiled(keras.Model(inputs, keras.layers.Dense(3)(hidden)))
    x, y = RNG.normal(size=(40, 6)).astype("float32"), np.arange(40) % 3
    scores = tfprune.score(model, "activation", (x, y), batch_size=16)
    layer = model.get_layer("hidden")
    expected = np.abs(np.maximum(x @ layer.kernel.numpy() + layer.bias.numpy(), 0)).mean(0)
    np.testing.assert_allclose(scores["hidden"], expected, rtol=1e-5)
    assert scores.measure == {"name": "activation"}


def test_a_conv_averages_over_pixels_with_samples_weighted():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    model = _compiled(keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D()(conv))))
    x, y = RNG.normal(size=(12, 5, 5, 2)).astype("float32"), np.arange(12) % 2
    weights = np.where(np.arange(12) < 4, 3.0, 0.0)  # only the first four samples count
    scores = tfprune.score(model, "activation", (x, y, weights))
    outputs = np.abs(np.asarray(model.get_layer("conv")(x[:4])))
    np.testing.assert_allclose(scores["conv"], outputs.mean(axis=(0, 1, 2)), rtol=1e-5)


def test_a_head_scores_its_attention_output_and_is_not_read_from_the_query():
    keras.utils.set_random_seed(2)
    tokens = keras.Input((7, 8))
    attention = keras.layers.MultiHeadAttention(3, 4, name="attention")
    mixed = attention(tokens, tokens)
    model = _compiled(keras.Model(tokens, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling1D()(mixed))))
    x, y = RNG.normal(size=(10, 7, 8)).astype("float32"), np.arange(10) % 2
    scores = tfprune.score(model, "activation", (x, y))
    _, weights = attention(x, x, return_attention_scores=True)  # (batch, heads, T, S)
    values = np.asarray(attention.value_dense(x))  # (batch, S, heads, head_dim)
    per_head = np.einsum("bhts,bshd->bthd", np.asarray(weights), values)
    expected = np.abs(per_head).sum(-1).mean(axis=(0, 1))
    np.testing.assert_allclose(scores["attention/heads"], expected, rtol=1e-5)


def test_it_needs_data_and_scores_filters_only():
    inputs = keras.Input((3,))
    model = _compiled(keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.Dense(4, name="hidden")(inputs))))
    with pytest.raises(ValueError, match="measure 'activation' needs data"):
        tfprune.score(model, "activation")
    with pytest.raises(ScoringError, match="activation.*'filter'"):
        tfprune.score(model, "activation", (np.ones((4, 3)), np.zeros(4)),
                      granularity="weight")
    with pytest.raises(ScoringError, match="'hidden' did not run on the data"):
        tfprune.score(model, "activation", (np.ones((4, 3)), np.zeros(4), np.zeros(4)))
