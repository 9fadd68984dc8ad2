"""``TimeDistributed``: a per-frame conv or dense layer prunes as the layer it wraps (a
video CNN feeding an LSTM), its FLOPs counted over every frame."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import masked_copy

import tfprune
from tfprune.pruning import MaskEnforcer
from tfprune.pruning.stats import layer_flops

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 4, 10, 10, 3)).astype("float32")
Y = np.arange(16) % 3


def video_model():
    """Per-frame conv -> BN -> ReLU -> conv -> pooling -> dense, then an LSTM and a head."""
    keras.utils.set_random_seed(0)
    td = keras.layers.TimeDistributed
    inputs = keras.Input((4, 10, 10, 3))
    x = td(keras.layers.Conv2D(8, 3), name="conv1")(inputs)
    x = td(keras.layers.BatchNormalization(), name="bn1")(x)
    x = td(keras.layers.ReLU(), name="relu1")(x)
    x = td(keras.layers.Conv2D(12, 3, activation="relu"), name="conv2")(x)
    x = td(keras.layers.GlobalAveragePooling2D(), name="pool")(x)
    x = td(keras.layers.Dense(10, activation="relu"), name="frame_dense")(x)
    x = keras.layers.LSTM(6, unroll=True, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    bn = model.get_layer("bn1").layer
    bn.moving_mean.assign(RNG.normal(size=8))
    bn.moving_variance.assign(RNG.uniform(0.5, 2.0, size=8))
    bn.beta.assign(RNG.normal(size=8))
    bn.gamma.assign(RNG.uniform(0.5, 1.5, size=8))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_wrapped_layers_form_the_groups_of_the_layers_they_wrap():
    groups = tfprune.channel_groups(video_model())
    assert [(g.sources, g.followers, g.consumers, g.size) for g in groups] == [
        (["conv1"], ["bn1"], ["conv2"], 8), (["conv2"], [], ["frame_dense"], 12),
        (["frame_dense"], [], ["lstm"], 10)]


def test_slim_equals_the_masked_model_and_rebuilds_the_wrapped_layers():
    model = video_model()
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=3), 0.5)
    masked = masked_copy(model, plan)
    slimmed = tfprune.slim(model, plan)
    np.testing.assert_allclose(slimmed(X), masked(X), atol=1e-5)
    conv1 = slimmed.get_layer("conv1")
    assert isinstance(conv1, keras.layers.TimeDistributed)
    assert conv1.layer.filters == int(plan.keep["0"].sum()) < 8
    assert slimmed.get_layer("bn1").layer.gamma.shape == (int(plan.keep["0"].sum()),)
    assert slimmed.get_layer("conv2").layer.kernel.shape == (
        3, 3, int(plan.keep["0"].sum()), int(plan.keep["1"].sum()))
    assert slimmed.get_layer("lstm").cell.kernel.shape[0] == int(plan.keep["2"].sum())


def test_snip_scores_of_a_wrapped_kernel_equal_a_plain_gradient_tape():
    model = video_model()
    scores = tfprune.score(model, "snip", (X, Y), num_samples=16, batch_size=16)
    kernel = model.get_layer("conv1").layer.kernel
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(Y, model(X, training=False))
    gradient = tape.gradient(loss, kernel).numpy()
    expected = np.abs(kernel.numpy() * gradient).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(scores["conv1"], expected, rtol=1e-4, atol=1e-9)


def test_the_batch_norm_inside_a_wrapper_is_paired_with_its_conv():
    model = video_model()
    pool = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())
    features = keras.layers.Flatten()(pool(model.get_layer("bn1").output))
    conv_bn = keras.Model(model.inputs, keras.layers.Dense(3)(features))
    scores = tfprune.score(conv_bn, "bn_scale")
    np.testing.assert_allclose(scores["conv1"], np.abs(model.get_layer("bn1").layer.gamma))


def test_wrapped_flops_count_every_frame():
    flops = layer_flops(video_model())
    frames = 4
    assert flops["conv1"] == 2 * frames * 8 * 8 * (3 * 3 * 3 * 8)
    assert flops["conv2"] == 2 * frames * 6 * 6 * (3 * 3 * 8 * 12)
    assert flops["frame_dense"] == 2 * frames * 12 * 10


def test_masks_on_wrapped_kernels_hold_through_fit():
    model = video_model()
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    enforcer = MaskEnforcer(model)
    enforcer.install()
    enforcer.update(plan)
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    removed = model.get_layer("conv1").layer.kernel.numpy()[..., ~plan.keep["0"]]
    assert removed.size and not np.any(removed)


def test_a_wrapped_layer_without_a_handler_is_named():
    inner = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten()], name="frame_net")
    inputs = keras.Input((2, 6, 6, 3))
    x = keras.layers.TimeDistributed(inner, name="frames")(inputs)
    x = keras.layers.Dense(5, name="mix")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(tfprune.handlers.GraphError,
                       match=r"'frames' \(TimeDistributed\) wraps Sequential 'frame_net'"):
        tfprune.channel_groups(model)
    groups = tfprune.channel_groups(model, ignored_layers=["frames"])
    assert [g.sources for g in groups] == [["mix"]]


def test_the_slimmed_video_model_runs_in_litert(tmp_path):
    from tfprune.export import export_tflite, verify_tflite

    model = video_model()
    slimmed = tfprune.slim(model, tfprune.make_plan(model, tfprune.score(model, "magnitude"),
                                                    0.4))
    check = verify_tflite(export_tflite(slimmed, tmp_path / "video.tflite"), slimmed, X[:4])
    assert check.max_abs_diff <= 1e-4
