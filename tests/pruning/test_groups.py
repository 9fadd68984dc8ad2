import keras
import pytest

import tfprune
from tfprune.pruning import GraphError, channel_groups, register_layer_rule
from tfprune.pruning.groups import LAYER_RULES


def by_source(groups):
    return {source: group for group in groups for source in group.sources}


def test_vgg_has_one_group_per_conv():
    model = tfprune.models.build("vgg13", width_multiplier=0.25)
    groups = channel_groups(model)
    assert len(groups) == 10 and sum(g.size for g in groups) == 2944 // 4
    first = by_source(groups)["block1_unit1_conv"]
    assert first.members == ["block1_unit1_conv", "block1_unit1_bn", "block1_unit2_conv"]
    last = by_source(groups)["block5_unit2_conv"]
    assert "classifier" in last.consumers  # through pool and a 1x1 flatten


def test_mobilenet_depthwise_follows_the_pointwise_filter():
    model = tfprune.models.build("mobilenet_v1", width_multiplier=0.25)
    groups = by_source(channel_groups(model))
    group = groups["block1_pw_conv"]
    assert group.followers == ["block1_pw_bn", "block2_dw_conv", "block2_dw_bn"]
    assert group.consumers == ["block2_pw_conv"]
    assert "block2_dw_conv" not in groups  # depthwise layers never lead a group


def test_resnet_residual_stream_is_one_group_with_the_projection_shortcut():
    model = tfprune.models.build("resnet20", width_multiplier=0.5)
    groups = channel_groups(model)
    stage2 = by_source(groups)["stage2_block1_shortcut_conv"]
    assert sorted(stage2.sources) == ["stage2_block1_conv2", "stage2_block1_shortcut_conv",
                                      "stage2_block2_conv2", "stage2_block3_conv2"]
    assert by_source(groups)["stage1_block1_conv2"] is by_source(groups)["stem_conv"]
    inner = by_source(groups)["stage2_block1_conv1"]  # the first conv of a block: free
    assert inner.sources == ["stage2_block1_conv1"] and inner.size == 16
    assert len(groups) == 3 + 9  # three residual streams, nine inner convs


def test_concatenate_and_flatten_map_index_ranges():
    inputs = keras.Input((4, 4, 3))
    a = keras.layers.Conv2D(2, 1, name="a")(inputs)
    b = keras.layers.Conv2D(3, 1, name="b")(inputs)
    joined = keras.layers.Concatenate(name="cat")([a, b])
    flat = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(joined))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Dense(
        4, name="hidden")(flat)))
    graph = tfprune.pruning.ChannelGraph(model)
    groups = by_source(graph.groups)
    assert set(groups) == {"a", "b", "hidden"} and groups["a"].consumers == ["hidden"]
    keep = {groups["a"].index: [True, False], groups["b"].index: [False, True, True]}
    mask = graph.channel_mask(graph.layer_inputs["hidden"], keep)
    assert mask.tolist() == [True, False, False, True, True] * 4  # 2x2 positions


def test_squeeze_excite_gate_joins_the_channels_it_scales():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = keras.layers.Conv2D(2, 1, name="squeeze")(gate)
    gate = keras.layers.Conv2D(6, 1, activation="sigmoid", name="excite")(gate)
    x = keras.layers.Multiply(name="scale")([x, gate])
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    groups = by_source(channel_groups(keras.Model(inputs, outputs)))
    assert groups["conv"] is groups["excite"] and groups["squeeze"].size == 2


def test_unknown_layers_fail_naming_them_unless_ignored():
    class Custom(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d1")(inputs)
    x = Custom(name="custom")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, name="d2")(x)))
    with pytest.raises(GraphError, match="layer 'custom' of type Custom"):
        channel_groups(model)
    groups = by_source(channel_groups(model, ignored_layers=["custom"]))
    assert set(groups) == {"d2"}  # d1 feeds the ignored layer
    register_layer_rule(Custom, "pass_through")
    try:
        assert set(by_source(channel_groups(model))) == {"d1", "d2"}
    finally:
        LAYER_RULES.pop(Custom)
    with pytest.raises(GraphError, match=r"no layer named \['nope'\]"):
        channel_groups(model, ignored_layers=["nope"])


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(keras.ops.zeros((1, 3)))
    with pytest.raises(GraphError, match="not a functional graph"):
        channel_groups(model)


@pytest.mark.parametrize("application", ["MobileNet", "MobileNetV2", "ResNet50", "EfficientNetB0"])
def test_keras_applications_analyse(application):
    model = getattr(keras.applications, application)(
        weights=None, input_shape=(32, 32, 3), classes=10)
    groups = channel_groups(model)
    assert groups and all(g.size > 0 and g.sources for g in groups)
