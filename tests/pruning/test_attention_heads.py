"""MultiHeadAttention loses whole heads: groups, scores over the heads' slices, masks, slim,
FLOPs, and training with the masks on."""

import keras
import numpy as np
import tensorflow as tf

import tfprune
from tfprune.pruning.masks import MaskEnforcer
from tfprune.pruning.stats import flops

HEADS, KEY_DIM, WIDTH, TOKENS = 4, 3, 8, 6


def transformer(cross=False, scores=False):
    tokens = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(30, WIDTH, name="embed")(tokens)
    context = keras.layers.Dense(WIDTH, name="context")(x) if cross else x
    attention = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="attention")
    if scores:
        y, weights = attention(x, context, return_attention_scores=True)
        y = y + keras.layers.Flatten()(weights)[:, :1, None] * 0.0
    else:
        y = attention(x, context)
    x = keras.layers.LayerNormalization(name="ln")(x + y)
    hidden = keras.layers.Dense(12, activation="relu", name="mlp_in")(x)
    x = x + keras.layers.Dense(WIDTH, name="mlp_out")(hidden)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(tokens, logits)


def _data(count=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 30, size=(count, TOKENS)).astype("int32"), np.arange(count) % 3


def _heads_group(model):
    return next(g for g in tfprune.channel_groups(model) if g.sources == ["attention/heads"])


def _plan(model, keep_heads):
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.0)
    plan.keep[str(_heads_group(model).index)] = np.isin(np.arange(HEADS), keep_heads)
    return plan


def test_heads_are_a_group_of_their_own():
    group = _heads_group(transformer())
    assert group.size == HEADS and not group.consumers and not group.followers


def test_heads_score_over_their_query_key_value_and_output_slices():
    """loss_preservation of a head is |sum of theta * g| over its four slices (GradientTape)."""
    keras.utils.set_random_seed(1)
    model = transformer()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("sgd", loss)
    x, y = _data()
    scores = tfprune.score(model, "loss_preservation", (x, y), num_samples=16, batch_size=16)
    layer = model.get_layer("attention")
    kernels = [layer.query_dense.kernel, layer.key_dense.kernel, layer.value_dense.kernel,
               layer.output_dense.kernel]
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=False))
    grads = tape.gradient(value, kernels)
    expected = np.zeros(HEADS)
    for kernel, grad, axis in zip(kernels, grads, (1, 1, 1, 0), strict=True):
        product = np.moveaxis(kernel.numpy() * grad.numpy(), axis, 0)
        expected += product.reshape(HEADS, -1).sum(axis=1)
    np.testing.assert_allclose(scores["attention/heads"], np.abs(expected), rtol=1e-4)
    assert scores["attention"].shape == (WIDTH,)  # the output projection's columns


def test_removing_heads_equals_a_smaller_attention_layer():
    """The slimmed layer, and an independently built 2-head layer, compute the masked model."""
    keras.utils.set_random_seed(2)
    model = transformer()
    x, _ = _data()
    plan = _plan(model, [1, 3])
    slimmed = tfprune.slim(model, plan)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    assert np.abs(np.asarray(masked(x)) - np.asarray(model(x))).max() > 1e-3
    np.testing.assert_allclose(slimmed(x), masked(x), rtol=1e-5, atol=1e-6)
    assert slimmed.get_layer("attention").num_heads == 2

    original = model.get_layer("attention")
    embedded = model.get_layer("embed")(x)
    small = keras.layers.MultiHeadAttention(2, KEY_DIM)
    small(embedded, embedded)
    kept = [1, 3]
    weights = []
    for dense in (original.query_dense, original.key_dense, original.value_dense):
        weights += [dense.kernel.numpy()[:, kept], dense.bias.numpy()[kept]]
    weights += [original.output_dense.kernel.numpy()[kept], original.output_dense.bias.numpy()]
    small.set_weights(weights)
    inner = slimmed.get_layer("attention")
    np.testing.assert_allclose(inner(embedded, embedded), small(embedded, embedded), rtol=1e-5,
                               atol=1e-6)


def test_flops_count_the_projections_and_the_attention_products():
    model = transformer()
    plan = _plan(model, [0, 2, 3])
    slimmed = tfprune.slim(model, plan)

    def attention_flops(heads):
        projections = TOKENS * (2 * WIDTH * heads * KEY_DIM) * 2  # q, o and k, v: same sizes
        products = TOKENS * TOKENS * heads * 2 * KEY_DIM
        return 2 * (projections + products)

    others = flops(model) - attention_flops(HEADS)
    assert flops(model, plan) == flops(slimmed) == others + attention_flops(3)


def test_plans_remove_heads_by_name_and_by_score():
    model = transformer()
    scores = tfprune.score(model, "magnitude")
    by_name = tfprune.make_plan(model, scores, {"attention/heads": 0.5})
    assert by_name.kept_per_layer()["attention/heads"] == [2, HEADS]
    by_layer = tfprune.make_plan(model, scores, 0.5, scope="layer")
    assert tfprune.slim(model, by_layer).get_layer("attention").num_heads == 2
    weights = tfprune.score(model, "magnitude", granularity="weight")
    assert "attention/heads" not in weights  # heads have no kernel of their own to mask


def test_cross_attention_keeps_key_and_value_channels():
    keras.utils.set_random_seed(3)
    model = transformer(cross=True)
    assert not any("context" in g.sources for g in tfprune.channel_groups(model))
    x, _ = _data()
    plan = _plan(model, [0])
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    np.testing.assert_allclose(tfprune.slim(model, plan)(x), masked(x), rtol=1e-5, atol=1e-6)


def test_heads_are_kept_when_their_scores_are_an_output():
    model = transformer(scores=True)
    assert not any("attention/heads" in g.sources for g in tfprune.channel_groups(model))


def test_removed_heads_stay_zero_while_training():
    model = transformer()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plan = _plan(model, [0, 1])
    enforcer = MaskEnforcer(model)
    enforcer.install()
    enforcer.update(plan, model.optimizer)
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    layer = model.get_layer("attention")
    for dense in (layer.query_dense, layer.key_dense, layer.value_dense):
        assert not dense.kernel.numpy()[:, 2:].any() and not dense.bias.numpy()[2:].any()
    assert not layer.output_dense.kernel.numpy()[2:].any()
    assert layer.query_dense.kernel.numpy()[:, :2].any()


def test_every_measure_scores_heads_embeddings_and_mlp_units():
    model = transformer()
    initial = keras.models.clone_model(model)
    initial.set_weights(model.get_weights())
    x, y = _data()
    # bn_scale and taylor_fo score filters by the BatchNorm after them: there is none here
    names = sorted(set(tfprune.importance.available_measures()) - {"bn_scale", "taylor_fo"})
    assert len(names) >= 10
    for name in names:
        scores = tfprune.score(model, name, (x, y), samples_per_class=4, initial_weights=initial)
        for layer, size in (("attention/heads", HEADS), ("embed", WIDTH), ("mlp_in", 12)):
            assert scores[layer].shape == (size,) and np.isfinite(scores[layer]).all(), name


def test_without_layer_norm_the_input_rows_and_output_columns_prune_too():
    from tfprune.check import check_model

    keras.utils.set_random_seed(4)
    tokens = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(30, 16, name="embed")(tokens)
    a = keras.layers.MultiHeadAttention(4, 4, output_shape=12, name="first")(x, x)
    b = keras.layers.MultiHeadAttention(2, 3, name="second")(a, a)  # its output joins a's
    model = keras.Model(tokens, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(
        a + b)))
    groups = {tuple(g.sources): g for g in tfprune.channel_groups(model)}
    assert groups[("embed",)].consumers == ["first"]
    assert groups[("first", "second")].consumers[0] == "second"
    x, y = _data(12)
    check = check_model(model, x, y, measure="snip", target=0.5, tflite=False)
    assert check.params_after < check.params_before and check.slim_error <= 1e-5, check


def test_dot_product_attention_joins_query_and_key_and_passes_the_value():
    # keras.layers.Attention scores q . k over the channels: q's and k's channels are one
    # group (removed from both, every score stays as it was); the output has v's channels.
    keras.utils.set_random_seed(0)
    queries, memory = keras.Input((5, 6)), keras.Input((7, 6))
    q = keras.layers.Dense(8, name="q")(queries)
    k = keras.layers.Dense(8, name="k")(memory)
    v = keras.layers.Dense(4, name="v")(memory)
    attended = keras.layers.Attention(use_scale=True, name="attention")([q, v, k])
    x = keras.layers.GlobalAveragePooling1D()(attended)
    model = keras.Model([queries, memory], keras.layers.Dense(2, name="head")(x))
    groups = tfprune.channel_groups(model)
    assert sorted(g.sources for g in groups) == [["q", "k"], ["v"]]
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=2), 0.5)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(3, 5, 6)).astype("float32"),
              rng.normal(size=(3, 7, 6)).astype("float32")]
    weights = model.get_weights()
    expected = tfprune.apply_plan(model, plan)(inputs)
    model.set_weights(weights)
    slimmed = tfprune.slim(model, plan)
    assert slimmed.get_layer("q").units == slimmed.get_layer("k").units < 8
    np.testing.assert_allclose(slimmed(inputs), expected, atol=1e-5)
    # Returning the scores keeps the channels whole.
    scores_out = keras.layers.Attention(name="attention")([q, v, k], return_attention_scores=True)
    with_scores = keras.Model([queries, memory], [scores_out[0], scores_out[1]])
    assert tfprune.channel_groups(with_scores) == []
