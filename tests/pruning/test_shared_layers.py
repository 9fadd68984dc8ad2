"""Shared layers (siamese towers, an encoder model called on two inputs): one set of weights,
so every call loses the same channels; scored once, counted per call, slimmed still shared."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import masked_copy

import tfprune
from tfprune.pruning import MaskEnforcer
from tfprune.pruning.stats import flops

RNG = np.random.default_rng(0)
LEFT, RIGHT = (RNG.normal(size=(24, 10, 10, 3)).astype("float32") for _ in range(2))
LABELS = (np.arange(24) % 2).astype("int64")


def siamese():
    """One conv and one dense layer applied to both inputs; a logits head on both features."""
    keras.utils.set_random_seed(0)
    left, right = keras.Input((10, 10, 3), name="left"), keras.Input((10, 10, 3), name="right")
    conv = keras.layers.Conv2D(8, 3, activation="relu", name="shared_conv")
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    dense = keras.layers.Dense(12, activation="relu", name="shared_dense")
    features = [dense(pool(conv(image))) for image in (left, right)]
    logits = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()(features))
    return keras.Model([left, right], logits)


def encoder_twice():
    """A nested encoder model (conv, BatchNorm, conv) called on both inputs, then subtracted."""
    keras.utils.set_random_seed(1)
    image = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="enc_conv1")(image)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="enc_bn")(x))
    x = keras.layers.Conv2D(6, 3, name="enc_conv2")(x)
    encoder = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x), name="encoder")
    left, right = keras.Input((10, 10, 3)), keras.Input((10, 10, 3))
    difference = keras.layers.Subtract()([encoder(left), encoder(right)])
    return keras.Model([left, right], keras.layers.Dense(2, name="head")(difference))


def test_a_shared_layers_calls_form_one_group_and_slim_keeps_the_layer_shared():
    model = siamese()
    groups = tfprune.channel_groups(model)
    assert [(g.sources, g.consumers, g.size) for g in groups] == [
        (["shared_conv"], ["shared_dense"], 8), (["shared_dense"], ["head"], 12)]
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=3), 0.5)
    slimmed = tfprune.slim(model, plan)
    expected = masked_copy(model, plan)([LEFT, RIGHT])
    np.testing.assert_allclose(slimmed([LEFT, RIGHT]), expected, atol=1e-5)
    conv = slimmed.get_layer("shared_conv")
    assert conv.filters == int(plan.keep["0"].sum()) < 8
    assert len(conv._inbound_nodes) == 2  # still one layer, called on both inputs
    assert slimmed.count_params() == tfprune.pruning.stats.param_count(model, plan)


def test_flops_count_every_call_of_a_shared_layer():
    model = siamese()
    conv_flops = 2 * (8 * 8) * 8 * (3 * 3 * 3)  # 8x8 outputs, 8 filters, 3x3x3 kernel
    dense_flops = 2 * 8 * 12
    head_flops = 2 * 24 * 2
    assert flops(model) == 2 * conv_flops + 2 * dense_flops + head_flops
    # A FLOPs budget counts the same way, so it holds on the model as it runs.
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"),
                             {"flops": 0.5 * flops(model)})
    assert flops(model, plan) <= 0.5 * flops(model)
    assert tfprune.pruning.stats.flops(tfprune.slim(model, plan)) == flops(model, plan)


def test_snip_scores_a_shared_conv_once_from_the_gradient_of_both_calls():
    model = siamese()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    scores = tfprune.score(model, "snip", ([LEFT, RIGHT], LABELS), num_samples=24,
                           batch_size=24)
    conv = model.get_layer("shared_conv")
    with tf.GradientTape() as tape:
        logits = model([LEFT, RIGHT], training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            LABELS, logits, from_logits=True))
    gradient = tape.gradient(loss, conv.kernel).numpy()  # both calls' contributions
    by_hand = np.abs(conv.kernel.numpy() * gradient).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(scores["shared_conv"], by_hand, rtol=1e-4, atol=1e-9)


def test_an_encoder_model_called_twice_is_pruned_alike_in_both_branches():
    model = encoder_twice()
    groups = tfprune.channel_groups(model)
    assert [g.sources for g in groups] == [["enc_conv1"], ["enc_conv2"]]
    assert groups[0].followers == ["enc_bn"]
    bn = model.get_layer("encoder").get_layer("enc_bn")
    bn.moving_mean.assign(RNG.normal(size=8))
    bn.moving_variance.assign(RNG.uniform(0.5, 2.0, size=8))
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    slimmed = tfprune.slim(model, plan)
    expected = masked_copy(model, plan)([LEFT, RIGHT], training=False)
    np.testing.assert_allclose(slimmed([LEFT, RIGHT], training=False), expected, atol=1e-5)
    assert len(slimmed.get_layer("enc_conv1")._inbound_nodes) == 2
    # The removed channels stay zero while the model trains (both calls' gradients).
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    enforcer = MaskEnforcer(model)
    enforcer.install()
    enforcer.update(plan)
    model.fit([LEFT, RIGHT], LABELS, epochs=1, batch_size=8, verbose=0)
    kernel = model.get_layer("encoder").get_layer("enc_conv1").kernel.numpy()
    assert not np.any(kernel[..., ~plan.keep["0"]])


def test_calls_with_differently_laid_out_inputs_keep_those_channels():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6,))
    a = keras.layers.Dense(8, name="a")(inputs)
    b = keras.layers.Dense(8, name="b")(inputs)
    c = keras.layers.Dense(16, name="c")(inputs)
    shared = keras.layers.Dense(4, name="shared")
    # Its first call sees a concatenation of two spaces, its second one plain space.
    outputs = keras.layers.Add()([shared(keras.layers.Concatenate()([a, b])), shared(c)])
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(outputs))
    groups = tfprune.channel_groups(model)
    # a, b and c are kept whole; the calls' outputs (laid out alike) are one group.
    assert [(g.sources, g.consumers) for g in groups] == [(["shared"], ["head"])]
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    x = RNG.normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(tfprune.slim(model, plan)(x), masked_copy(model, plan)(x),
                               atol=1e-5)


@pytest.mark.parametrize("build", [siamese, encoder_twice])
def test_the_slimmed_model_exports_and_runs_in_litert(build, tmp_path):
    from tfprune.export import export_tflite, verify_tflite

    model = build()
    slimmed = tfprune.slim(model, tfprune.make_plan(model, tfprune.score(model, "magnitude"),
                                                    0.4))
    check = verify_tflite(export_tflite(slimmed, tmp_path / "m.tflite"), slimmed,
                          [LEFT[:4], RIGHT[:4]])
    assert check.max_abs_diff <= 1e-4
