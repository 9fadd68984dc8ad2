"""The handlers own every per-type fact: which weights follow a channel, where each weight's
mask constraint lives, the batch statistics a layer normalizes with, a final probability
activation, FLOPs; and the registry finds them along the type's MRO."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.handlers import LayerHandler, handler_for, register_layer_handler


def test_batchnorm_masks_every_per_channel_weight_including_its_moving_statistics():
    layer = keras.layers.BatchNormalization()
    layer.build((None, 4))
    mask = np.array([1, 0, 1, 0], bool)
    masked = {v.path.split("/")[-1]: m for v, m in
              handler_for(layer).variable_masks(layer, mask, mask)}
    assert sorted(masked) == ["beta", "gamma", "moving_mean", "moving_variance"]
    for values in masked.values():
        np.testing.assert_array_equal(values, mask.astype("float32"))


def test_group_norm_has_no_moving_statistics_to_mask():
    layer = keras.layers.GroupNormalization(groups=2)
    layer.build((None, 4))
    masked = handler_for(layer).variable_masks(layer, np.ones(4, bool), None)
    assert sorted(v.path.split("/")[-1] for v, _ in masked) == ["beta", "gamma"]


@pytest.mark.parametrize("layer, expected", [
    (keras.layers.Dense(3), {"kernel": "kernel_constraint", "bias": "bias_constraint"}),
    (keras.layers.DepthwiseConv2D(3), {"kernel": "depthwise_constraint",
                                       "bias": "bias_constraint"}),
    (keras.layers.BatchNormalization(), {"gamma": "gamma_constraint",
                                         "beta": "beta_constraint"}),
    (keras.layers.Embedding(5, 3), {"embeddings": "embeddings_constraint"}),
])
def test_each_weight_has_its_constraint_attribute(layer, expected):
    layer.build((None, 4, 4, 2) if isinstance(layer, keras.layers.DepthwiseConv2D)
                else (None, 4))
    slots = handler_for(layer).constraint_slots(layer)
    by_name = {v.path.split("/")[-1]: v for v in layer.weights}
    assert {name: slots[id(by_name[name])][1] for name in expected} == expected
    assert all(owner is layer for owner, _ in slots.values())


def test_batch_statistics_are_the_normalizing_layer_even_under_a_wrapper():
    norm = keras.layers.BatchNormalization()
    wrapper = keras.layers.TimeDistributed(norm)
    wrapper.build((None, 2, 4))
    assert handler_for(norm).batch_statistics(norm) is norm
    assert handler_for(wrapper).batch_statistics(wrapper) is norm
    dense = keras.layers.Dense(2)
    assert handler_for(dense).batch_statistics(dense) is None
    group_norm = keras.layers.GroupNormalization(groups=2)
    assert handler_for(group_norm).batch_statistics(group_norm) is None


@pytest.mark.parametrize("layer, expected", [
    (keras.layers.Softmax(), "softmax"),
    (keras.layers.Dense(3, activation="sigmoid"), "sigmoid"),
    (keras.layers.Activation("softmax"), "softmax"),
    (keras.layers.Dense(3, activation="relu"), None),
    (keras.layers.LayerNormalization(), None),
])
def test_probability_activation_of_layers(layer, expected):
    assert (handler_for(layer) or LayerHandler()).probability_activation(layer) == expected


def test_conv_flops_equal_a_hand_count():
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    # 4 x 4 output positions x (3 x 3 x 3 x 4) kernel entries x 2
    assert tfprune.pruning.stats.flops(model) == 2 * 16 * 3 * 3 * 3 * 4


def test_registry_finds_a_handler_along_the_mro_and_takes_a_users_own():
    class MyDense(keras.layers.Dense):
        pass

    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    assert handler_for(MyDense(2)) is handler_for(keras.layers.Dense(2))
    assert handler_for(Scale()) is None
    mine = LayerHandler()
    register_layer_handler(Scale, mine)
    try:
        assert handler_for(Scale()) is mine
    finally:
        from tfprune.handlers import HANDLERS

        HANDLERS.pop(Scale)


def test_an_op_broadcasting_a_tensor_to_more_channels_keeps_them_whole():
    inputs = keras.Input((6, 4))
    x = keras.layers.Dense(5, name="features")(inputs)
    gate = keras.layers.Dense(1, name="gate")(inputs)
    widened = keras.ops.add(gate, keras.ops.zeros((1, 1, 5)))  # 1 channel -> 5
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x * widened))
    groups = tfprune.channel_groups(keras.Model(inputs, outputs))
    # Kept whole, no error; and so is what the widened gate multiplies.
    assert not any({"gate", "features"} & set(group.sources) for group in groups)
