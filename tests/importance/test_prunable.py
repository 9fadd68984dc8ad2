import keras
import numpy as np
import pytest

import tfprune
from tfprune.handlers import HANDLERS, Source, register_layer_handler
from tfprune.importance import ScoringError, prunable_layers


def test_vgg_layers_are_its_convs_with_their_batch_norms():
    model = tfprune.models.build("vgg13", width_multiplier=0.25)
    layers = prunable_layers(model)
    assert len(layers) == 10 and sum(layer.filters for layer in layers) == 2944 // 4
    assert all(layer.batch_norm.name == layer.name.replace("_conv", "_bn") for layer in layers)
    assert "classifier" in [x.name for x in prunable_layers(model, include_output_layers=True)]


def test_mobilenet_depthwise_layers_have_one_filter_per_channel():
    model = tfprune.models.build("mobilenet_v1", width_multiplier=0.25)
    by_name = {layer.name: layer for layer in prunable_layers(model)}
    depthwise = by_name["block1_dw_conv"]
    assert depthwise.filters == 8 and tuple(depthwise.kernel.shape) == (3, 3, 8, 1)
    scores = tfprune.score(model, "magnitude")
    kernel = depthwise.kernel.numpy()
    expected = (kernel ** 2).sum(axis=(0, 1, 3))
    np.testing.assert_allclose(scores["block1_dw_conv"], expected, rtol=1e-6)


def test_depth_multiplier_orders_filters_as_keras_outputs():
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=3, name="dw")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    scores = tfprune.score(model, "magnitude_l1")["dw"]
    kernel = model.get_layer("dw").kernel.numpy()  # (3, 3, in=2, multiplier=3)
    # Keras output channel c * 3 + j comes from input channel c, multiplier j.
    expected = [np.abs(kernel[:, :, c, j]).sum() for c in range(2) for j in range(3)]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_output_layer_behind_a_softmax_is_left_out():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    outputs = keras.layers.Softmax()(keras.layers.Dense(3, name="head")(hidden))
    assert [layer.name for layer in prunable_layers(keras.Model(inputs, outputs))] == ["hidden"]


def test_resnet_scores_every_conv_including_shortcuts():
    model = tfprune.models.build("resnet20", width_multiplier=0.25)
    names = {layer.name for layer in prunable_layers(model)}
    assert "stem_conv" in names and "stage2_block1_shortcut_conv" in names
    assert len(names) == 1 + 3 * 3 * 2 + 2


def test_a_model_without_prunable_layers_fails_naming_the_types():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ScoringError, match="no prunable layer.*Conv"):
        prunable_layers(model)


def test_registering_a_layer_type():
    class Special(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 4))

        def call(self, x):
            return keras.ops.matmul(x, self.kernel)

    inputs = keras.Input((6,))
    hidden = Special(name="special")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, name="d")(hidden)))
    assert [layer.name for layer in prunable_layers(model)] == ["d"]  # no handler: not scored
    register_layer_handler(Special, Source)
    try:
        assert [layer.name for layer in prunable_layers(model)] == ["special", "d"]
    finally:
        HANDLERS.pop(Special)


def test_nested_backbone_layers_are_scored():
    backbone = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              include_top=False, alpha=0.35)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(x))
    names = [layer.name for layer in prunable_layers(model)]
    assert "Conv1" in names and "head" not in names and len(names) > 40


def test_transposed_conv_filters_are_its_second_last_kernel_axis():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2DTranspose(5, 3, strides=2, name="up")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))
    (layer,) = prunable_layers(model)
    assert layer.filters == 5 and tuple(layer.kernel.shape) == (3, 3, 5, 3)
    kernel = layer.kernel.numpy()
    np.testing.assert_allclose(tfprune.score(model, "magnitude")["up"],
                               (kernel ** 2).sum(axis=(0, 1, 3)), rtol=1e-6)
