"""SeparableConv2D through the channel analysis, scoring, masks and FLOP counts."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.importance.prunable import prunable_layers
from tfprune.pruning import MaskEnforcer, channel_groups
from tfprune.pruning.stats import layer_flops, param_count


def separable_model():
    """stem conv (4) -> separable (6, depth multiplier 2) -> separable (5, stride 2) -> head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_bn")(x))
    x = keras.layers.SeparableConv2D(6, 3, depth_multiplier=2, padding="same", name="sep1")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="sep1_bn")(x))
    x = keras.layers.SeparableConv2D(5, 3, strides=2, padding="same", use_bias=False,
                                     name="sep2")(x)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def hand_plan(model):
    """Removes stem channel 1 and sep1 filter 2."""
    keep = {"stem": [True, False, True, True], "sep1": [True, True, False, True, True, True]}
    groups = channel_groups(model)
    masks = {str(g.index): np.array(keep.get(g.sources[0], [True] * g.size)) for g in groups}
    return tfprune.PruningPlan("filter", [g.to_dict() for g in groups], masks, {})


def test_separable_conv_consumes_its_input_and_produces_its_filters():
    groups = {g.sources[0]: g for g in channel_groups(separable_model())}
    assert sorted(groups) == ["sep1", "sep2", "stem"]
    assert groups["stem"].consumers == ["sep1"] and groups["stem"].followers == ["stem_bn"]
    assert groups["sep1"].size == 6 and groups["sep1"].consumers == ["sep2"]
    assert groups["sep2"].consumers == ["head"]


def test_filters_are_the_pointwise_columns_and_gradients_reach_them():
    model = separable_model()
    layers = {layer.name: layer for layer in prunable_layers(model)}
    assert layers["sep1"].kernel is model.get_layer("sep1").pointwise_kernel
    assert layers["sep1"].filters == 6 and layers["sep1"].batch_norm.name == "sep1_bn"
    pointwise = np.asarray(model.get_layer("sep1").pointwise_kernel)
    magnitude = tfprune.score(model, "magnitude")["sep1"]
    np.testing.assert_allclose(magnitude, (pointwise ** 2).sum(axis=(0, 1, 2)), rtol=1e-5)
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(12, 8, 8, 3)).astype("float32"), np.arange(12) % 3)
    scores = tfprune.score(model, "grasp_abs", data, num_samples=12, samples_per_class=4)
    assert scores["sep1"].shape == (6,) and np.all(np.isfinite(scores["sep1"]))
    assert np.any(scores["sep1"] > 0)


def test_masks_cover_depthwise_inputs_pointwise_rows_and_filters():
    model = separable_model()
    tfprune.apply_plan(model, hand_plan(model))
    sep1, sep2 = model.get_layer("sep1"), model.get_layer("sep2")
    depthwise, pointwise = np.asarray(sep1.depthwise_kernel), np.asarray(sep1.pointwise_kernel)
    assert np.all(depthwise[:, :, 1, :] == 0) and np.all(depthwise[:, :, [0, 2, 3], :] != 0)
    # input channel 1 with depth multiplier 2 feeds pointwise rows 2 and 3
    assert np.all(pointwise[:, :, 2:4, :] == 0) and np.all(pointwise[:, :, :, 2] == 0)
    assert np.count_nonzero(pointwise) == 6 * 5
    sep1_bias = np.asarray(sep1.bias)
    assert sep1_bias[2] == 0
    assert np.all(np.asarray(sep2.depthwise_kernel)[:, :, 2, :] == 0)
    assert np.all(np.asarray(sep2.pointwise_kernel)[:, :, 2, :] == 0)


def test_flops_and_params_by_hand():
    model = separable_model()
    plan = hand_plan(model)
    positions = 8 * 8
    # depthwise 3*3*4*2 = 72 entries, pointwise 8*6 = 48, each once per output position
    assert layer_flops(model)["sep1"] == 2 * positions * (72 + 48)
    # without stem channel 1: depthwise 72 - 18 = 54, pointwise 6 rows x 5 filters = 30
    assert layer_flops(model, plan)["sep1"] == 2 * positions * (54 + 30)
    assert layer_flops(model, plan)["sep2"] == 2 * 4 * 4 * (3 * 3 * 5 + 5 * 5)
    removed = (3 * 3 * 3 + 1 + 2 + 2  # stem filter 1 (kernel, bias) and its BN's 4 entries
               + 18 + 2 * 6 + 6 * 1 + 1 + 4  # sep1 inputs and filter 2, its bias and BN
               + 9 + 5)  # sep2's depthwise channel 2 and pointwise row 2
    assert param_count(model, plan) == model.count_params() - removed


def test_masks_hold_while_training():
    model = separable_model()
    enforcer = MaskEnforcer(model)
    enforcer.install()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    enforcer.update(hand_plan(model), model.optimizer)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 8, 8, 3)), np.arange(16) % 3, epochs=2, verbose=0)
    assert np.all(np.asarray(model.get_layer("sep1").depthwise_kernel)[:, :, 1, :] == 0)
    assert np.all(np.asarray(model.get_layer("sep1").pointwise_kernel)[:, :, 2:4, :] == 0)


@pytest.mark.parametrize("application", ["Xception"])
def test_applications_with_separable_convs_analyse(application):
    model = getattr(keras.applications, application)(
        weights=None, input_shape=(71, 71, 3), classes=10)
    groups = channel_groups(model)
    separable = {layer.name for layer in model.layers
                 if isinstance(layer, keras.layers.SeparableConv2D)}
    assert separable and separable <= {name for g in groups for name in g.consumers}
