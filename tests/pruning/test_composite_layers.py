"""Custom composite layers (a call made of sublayers and keras.ops) are analysed through their
call; custom layers tfprune cannot see into are named with the reason."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.check import check_model
from tfprune.pruning.masks import MaskEnforcer


class ConvBlock(keras.layers.Layer):
    """conv -> BN -> relu, written as a custom layer."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.norm = keras.layers.BatchNormalization()

    def call(self, x):
        return keras.ops.relu(self.norm(self.conv(x)))


class Residual(keras.layers.Layer):
    """x + conv(x): the inner conv joins the stream it is added to."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = ConvBlock(8)
        self.project = keras.layers.Conv2D(8, 1)

    def call(self, x):
        return x + self.project(self.inner(x))


class Halve(keras.layers.Layer):
    """No weights, no sublayers: only keras.ops."""

    def call(self, x):
        return x * 0.5


class OwnScale(keras.layers.Layer):
    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


class TensorFlowRelu(keras.layers.Layer):
    def call(self, x):
        return tf.nn.relu(x)


def model_with_composites():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    x = Residual(name="residual")(x)
    x = Halve(name="halve")(x)
    x = ConvBlock(12, name="block")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def _images(count=8):
    return np.random.default_rng(0).normal(size=(count, 10, 10, 3)).astype("float32")


def test_groups_reach_inside_composite_layers():
    model = model_with_composites()
    residual = model.get_layer("residual")
    groups = {tuple(g.sources): g for g in tfprune.channel_groups(model)}
    stream = groups[("stem", residual.project.name)]  # the residual stream: stem + project
    assert residual.inner.conv.name in stream.consumers
    assert (residual.inner.conv.name,) in groups  # the inner block's own filters
    assert (model.get_layer("block").conv.name,) in groups


def test_composite_model_slims_flat_and_matches_the_masked_model():
    keras.utils.set_random_seed(0)
    model = model_with_composites()
    check = check_model(model, _images(), np.arange(8) % 3, measure="snip", tflite=False)
    assert check.params_after < check.params_before and check.slim_error <= 1e-5, check
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.4)
    slimmed = tfprune.slim(model, plan)
    assert not any(isinstance(layer, ConvBlock | Residual | Halve) for layer in slimmed.layers)


def test_masks_inside_composite_layers_hold_while_training():
    model = model_with_composites()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    enforcer = MaskEnforcer(model)
    enforcer.install()
    enforcer.update(plan, model.optimizer)
    kernel = model.get_layer("block").conv.kernel
    removed = kernel.numpy() == 0
    assert removed.any()
    model.fit(_images(16), np.arange(16) % 3, batch_size=8, epochs=2, verbose=0)
    assert not kernel.numpy()[removed].any()


def test_opaque_custom_layers_are_named_with_the_reason():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = OwnScale(name="own_scale")(x)
    x = TensorFlowRelu(name="tf_relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(tfprune.handlers.GraphError) as error:
        tfprune.channel_groups(model)
    message = str(error.value)
    assert "'own_scale' (OwnScale): a custom layer with weights of its own" in message
    assert "'tf_relu' (TensorFlowRelu): a custom layer whose call could not be traced" in message
    assert "A KerasTensor cannot be used as input to a TensorFlow function" in message  # why
    assert "register_layer_handler" in message and "ignored_layers=['own_scale', 'tf_relu']" in (
        message)
