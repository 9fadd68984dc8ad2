import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.handlers import HANDLERS, PassThrough, register_layer_handler
from tfprune.pruning import GraphError, channel_groups


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


class _Scaled(keras.layers.Layer):
    """A custom layer with a weight of its own: tfprune cannot look through it."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.factor


def test_unknown_layers_fail_naming_them_unless_ignored():
    class Custom(_Scaled):
        pass

    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d1")(inputs)
    x = Custom(name="custom")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, name="d2")(x)))
    with pytest.raises(GraphError, match=r"'custom' \(Custom\): a custom layer with weights"):
        channel_groups(model)
    groups = by_source(channel_groups(model, ignored_layers=["custom"]))
    assert set(groups) == {"d2"}  # d1 feeds the ignored layer
    register_layer_handler(Custom, PassThrough)
    try:
        assert set(by_source(channel_groups(model))) == {"d1", "d2"}
    finally:
        HANDLERS.pop(Custom)
    with pytest.raises(GraphError, match=r"no layer or op named \['nope'\]"):
        channel_groups(model, ignored_layers=["nope"])
    with pytest.raises(TypeError, match="LayerHandler"):
        register_layer_handler(Custom, "pass_through")


def test_every_unsupported_layer_is_reported_at_once():
    class A(_Scaled):
        pass

    class B(A):
        pass

    class C(keras.layers.Layer):
        def call(self, x):
            return tf.nn.relu(x)  # not keras.ops: cannot be traced

    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d1")(inputs)
    x = C(name="c")(B(name="b")(A(name="a")(x)))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(GraphError) as error:
        channel_groups(model)
    message = str(error.value)
    assert "cannot analyse 3 layer(s)" in message
    for name, kind in (("a", "A"), ("b", "B"), ("c", "C")):
        assert f"'{name}' ({kind})" in message
    assert "ignored_layers=['a', 'b', 'c']" in message and "register_layer_handler" in message


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(keras.ops.zeros((1, 3)))
    with pytest.raises(GraphError, match="subclassed model"):
        channel_groups(model)


def test_keras_ops_nodes_are_analysed_and_can_be_ignored():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    gate = keras.ops.relu(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid
    x = keras.layers.Multiply(name="hard_swish")([x, gate])
    y = keras.layers.Conv2D(6, 1, name="conv2")(x)
    x = keras.ops.mean(x + y, axis=[1, 2])  # a merge, then a spatial reduction
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    groups = by_source(channel_groups(model))
    assert groups["conv"] is groups["conv2"] and groups["conv"].size == 6
    add = [op.name for op in model.operations if type(op).__name__ == "Add"]
    # Ignoring the hard sigmoid's op keeps conv's channels whole, and conv2's joined with them.
    assert channel_groups(model, ignored_layers=add[:1]) == []


def test_split_maps_index_ranges_and_slims_at_the_new_boundaries():
    from tfprune.check import check_model

    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(6, 1, name="b")(inputs)
    first, second = keras.ops.split(keras.ops.concatenate([a, b], axis=-1), [4], axis=-1)
    top, bottom = keras.ops.split(keras.layers.Conv2D(5, 1, name="c")(first), 2, axis=1)
    pool = keras.layers.GlobalAveragePooling2D
    fused = keras.layers.Dense(12, name="qkv")(pool()(inputs))
    q, k, v = keras.ops.split(fused, 3, axis=-1)  # splits through one space: kept whole
    x = keras.layers.Concatenate()([pool()(top + bottom), pool()(
        keras.layers.Conv2D(3, 1, name="d")(second)), q * k + v])
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    groups = by_source(channel_groups(model))
    assert groups["a"].consumers == ["c"] and groups["b"].consumers == ["d"]
    assert "qkv" not in groups
    images = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype("float32")
    check = check_model(model, images, np.arange(8) % 2, target=0.5, tflite=False)
    assert check.params_after < check.params_before and check.slim_error < 1e-5, check


def test_a_softmax_over_the_channels_blocks_them():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d1")(inputs)
    x = keras.ops.softmax(x) * 2.0
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, name="d2")(x)))
    assert set(by_source(channel_groups(model))) == {"d2"}


def test_moveaxis_keeping_the_channel_axis_last_passes_and_zeros_like_follows():
    inputs = keras.Input((4, 5, 3))
    x = keras.layers.Dense(6, name="d1")(inputs)
    x = keras.ops.moveaxis(x, 1, 2) + keras.ops.zeros_like(keras.ops.moveaxis(x, 1, 2))
    moved = keras.ops.moveaxis(keras.layers.Dense(7, name="d2")(inputs), -1, 1)  # channels moved
    x = keras.ops.mean(x, axis=[1, 2])
    y = keras.ops.mean(moved, axis=[2, 3])
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.ops.concatenate([x, y], -1)))
    groups = by_source(channel_groups(model))
    assert set(groups) == {"d1"} and groups["d1"].size == 6


def test_sequential_models_built_either_way():
    def layers():
        return [keras.layers.Conv2D(4, 3, name="c1"), keras.layers.ReLU(),
                keras.layers.Conv2D(5, 3, name="c2"), keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(2)]

    on_input = keras.Sequential([keras.Input((8, 8, 3)), *layers()])
    built = keras.Sequential(layers())
    built.build((None, 8, 8, 3))
    for model in (on_input, built):
        assert [g.sources for g in channel_groups(model)] == [["c1"], ["c2"]]
    with pytest.raises(GraphError, match="has no graph yet"):
        channel_groups(keras.Sequential(layers()))


def test_a_nested_backbone_is_analysed_with_the_head():
    backbone_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="b1")(backbone_in)
    x = keras.layers.BatchNormalization(name="b1_bn")(x)
    backbone = keras.Model(backbone_in, keras.layers.Conv2D(6, 3, name="b2")(x),
                           name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    x = keras.layers.Dense(5, name="head")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    groups = by_source(channel_groups(model))
    assert set(groups) == {"b1", "b2", "head"}
    assert groups["b1"].members == ["b1", "b1_bn", "b2"]
    assert groups["b2"].consumers == ["head"]


@pytest.mark.parametrize("application", ["MobileNet", "MobileNetV2", "ResNet50", "EfficientNetB0"])
def test_keras_applications_analyse(application):
    model = getattr(keras.applications, application)(
        weights=None, input_shape=(32, 32, 3), classes=10)
    groups = channel_groups(model)
    assert groups and all(g.size > 0 and g.sources for g in groups)


def test_per_channel_preprocessing_layers_keep_their_channels():
    # Mid-network, a Normalization (a mean and variance per channel) and a per-channel
    # Rescaling would need their statistics sliced: their channels are kept whole, while a
    # scalar Rescaling passes channels through. slim then matches the masked model.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, name="a")(inputs)
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).normal(size=(16, 6, 6, 4)).astype("float32") + 2)
    b = keras.layers.Conv2D(4, 3, name="b")(norm(a))
    c = keras.layers.Conv2D(3, 1, name="c")(keras.layers.Rescaling([1.0, 2.0, 3.0, 4.0])(b))
    d = keras.layers.Conv2D(5, 1, name="d")(keras.layers.Rescaling(0.5, offset=1.0)(c))
    x = keras.layers.GlobalAveragePooling2D()(d)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    assert sorted(g.sources[0] for g in channel_groups(model)) == ["c", "d"]
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.4)
    images = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    np.testing.assert_allclose(tfprune.slim(model, plan)(images), masked(images), atol=1e-4)


def test_a_shared_layer_the_analysis_refuses_is_named_once():
    import keras
    import tensorflow as tf

    from tfprune.graph.channels import ChannelGraph
    from tfprune.handlers.channel_analysis import GraphError

    class Opaque(keras.layers.Layer):  # a custom layer that cannot be traced into keras.ops
        def call(self, x):
            return tf.ensure_shape(tf.numpy_function(lambda v: v * 2, [x], tf.float32),
                                   x.shape)

    opaque = Opaque(name="opaque")
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 3, name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, name="b")(inputs)
    outputs = keras.layers.Add()([opaque(a), opaque(b)])  # one layer, called twice
    try:
        ChannelGraph(keras.Model(inputs, outputs))
    except GraphError as error:
        message = str(error)
    else:
        message = ""
    assert message.count("- 'opaque'") == 1 and "ignored_layers=['opaque'] " in message, message
