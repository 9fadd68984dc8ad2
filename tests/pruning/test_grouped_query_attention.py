"""keras.layers.GroupQueryAttention loses whole query groups (a key/value head and its query
heads): scores over the four projections' slices, masks, slim with fewer heads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.handlers import GraphError

TOKENS, WIDTH = 5, 8


def _model(use_bias=True):
    tokens = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(30, WIDTH, name="embed")(tokens)
    y = keras.layers.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2,
                                         use_bias=use_bias, name="gqa")(x, x)
    x = keras.layers.LayerNormalization(name="ln")(x + y)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(tokens, logits)


def _data(count=8):
    return np.random.default_rng(0).integers(0, 30, (count, TOKENS)), np.arange(count) % 3


def test_query_groups_are_a_group_scored_over_their_slices():
    """snip of a group is sum |theta * g| over its query heads', key/value head's slices."""
    keras.utils.set_random_seed(3)
    model = _model(use_bias=False)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("sgd", loss)
    group = next(g for g in tfprune.channel_groups(model) if g.sources == ["gqa/query_groups"])
    assert group.size == 2
    x, y = _data()
    scores = tfprune.score(model, "snip", (x, y), num_samples=8, batch_size=8)
    layer = model.get_layer("gqa")
    kernels = [layer._query_dense.kernel, layer._key_dense.kernel, layer._value_dense.kernel,
               layer._output_dense.kernel]
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=False))
    grads = tape.gradient(value, kernels)
    expected = np.zeros(2)
    # Keras' kernels: query (hidden, 4 heads, dim), key/value (hidden, 2, dim), output
    # (4 heads, dim, hidden); query head h belongs to group h // 2.
    for kernel, grad, axis in zip(kernels, grads, (1, 1, 1, 0), strict=True):
        product = np.abs(np.moveaxis(kernel.numpy() * grad.numpy(), axis, 0))
        per_head = product.reshape(product.shape[0], -1).sum(axis=1)
        expected += per_head.reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(scores["gqa/query_groups"], expected, rtol=1e-4)


def test_removing_a_query_group_equals_a_smaller_layer():
    keras.utils.set_random_seed(4)
    model = _model()
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.0)
    group = next(g for g in tfprune.channel_groups(model) if g.sources == ["gqa/query_groups"])
    plan.keep[str(group.index)] = np.array([True, False])
    assert _slim_equals_masked(model, plan) == (2, 1)


def _slim_equals_masked(model, plan) -> tuple[int, int]:
    """Checks slimmed == masked (and != dense); returns the slimmed layer's head counts."""
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    x, _ = _data()
    expected = masked.predict(x, verbose=0)
    assert not np.allclose(expected, model.predict(x, verbose=0))
    np.testing.assert_allclose(slimmed.predict(x, verbose=0), expected, atol=1e-5)
    layer = slimmed.get_layer("gqa")
    return layer.num_query_heads, layer.num_key_value_heads


def test_in_heads_mode_query_heads_go_evenly_from_every_group_and_slim_equals_masked():
    keras.utils.set_random_seed(5)
    model = _model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("sgd", loss)
    groups = tfprune.channel_groups(model, gqa="heads")
    heads = next(g for g in groups if g.sources == ["gqa/query_heads"])
    assert (heads.size, heads.parts) == (4, 2)  # 4 query heads in 2 groups
    x, y = _data()
    scores = tfprune.score(model, "snip", (x, y), num_samples=8, batch_size=8)
    layer = model.get_layer("gqa")
    kernels = [layer._query_dense.kernel, layer._output_dense.kernel]
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=False))
    expected = np.zeros(4)  # a query head's slices of the query and output kernels
    for kernel, grad, axis in zip(kernels, tape.gradient(value, kernels), (1, 0), strict=True):
        product = np.abs(np.moveaxis(kernel.numpy() * grad.numpy(), axis, 0))
        expected += product.reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(scores["gqa/query_heads"], expected, rtol=1e-4)
    plan = tfprune.make_plan(model, scores, 0.0, gqa="heads")
    plan.keep[str(heads.index)] = np.array([True, True, False, False])  # group 1 emptied
    with pytest.raises(GraphError, match=r"keeps \[2, 0\] query heads in its groups"):
        tfprune.slim(model, plan)
    plan.keep[str(heads.index)] = np.array([True, False, False, True])  # one head per group
    assert _slim_equals_masked(model, plan) == (2, 2)
    chosen = tfprune.make_plan(model, scores, 0.5, gqa="heads")  # even parts by construction
    kept = chosen.keep[str(heads.index)]
    assert kept[:2].sum() == kept[2:].sum() == 1 and chosen.settings["gqa"] == "heads"
