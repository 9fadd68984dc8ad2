"""Layers of handled types that must be kept whole: ``data_format="channels_first"`` (never
read the wrong axis as channels), LoRA-enabled layers (their kernel is computed) and layers
quantized by Keras (integer kernels). Their FLOPs are still counted, the rest of the model
is still pruned, and the reason is given."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.importance import ScoringError
from tfprune.pruning.stats import layer_flops


def mixed_model():
    """Two channels_last convs, a Permute to channels_first, a channels_first conv.

    The channels_first conv's output is (8, 8, 10): its last axis (10 positions)
    is not its channel axis (8 filters).
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 14, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="last_a")(inputs)
    x = keras.layers.Conv2D(3, 3, activation="relu", name="last_b")(x)  # (8, 10, 3)
    x = keras.layers.Permute((3, 1, 2))(x)  # (3, 8, 10)
    x = keras.layers.Conv2D(8, 3, padding="same", data_format="channels_first",
                            name="first_c")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_channels_first_layers_are_kept_whole_and_the_others_pruned():
    model = mixed_model()
    groups = tfprune.channel_groups(model)
    assert [g.sources for g in groups] == [["last_a"]]  # last_b feeds the Permute
    scores = tfprune.score(model, "magnitude")
    assert "first_c" not in scores  # never scored with the wrong axis as its filters
    plan = tfprune.make_plan(model, scores, 0.5)
    slimmed = tfprune.slim(model, plan)
    assert slimmed.get_layer("last_a").filters == 3
    assert slimmed.get_layer("first_c").get_config() == model.get_layer("first_c").get_config()
    x = np.random.default_rng(0).normal(size=(2, 12, 14, 3)).astype("float32")
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    np.testing.assert_allclose(slimmed(x), masked(x), atol=1e-5)


def test_channels_first_flops_count_the_spatial_axes():
    model = mixed_model()
    # 8 x 10 output positions (axes 2 and 3), 8 filters of 3 x 3 x 3.
    assert layer_flops(model)["first_c"] == 2 * (8 * 10) * (3 * 3 * 3 * 8)
    assert layer_flops(model)["last_a"] == 2 * (10 * 12) * (3 * 3 * 3 * 6)


def test_an_all_channels_first_model_is_refused_naming_the_layers():
    inputs = keras.Input((3, 10, 10))
    x = keras.layers.Conv2D(8, 3, data_format="channels_first", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first", name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ScoringError, match=r"'conv' is kept whole: data_format='channels_first'"):
        tfprune.score(model, "magnitude")
    graph = tfprune.pruning.ChannelGraph(model)
    assert graph.kept_whole()[0][0] == ["conv"] and "channels_first" in graph.kept_whole()[0][2]


def test_a_lora_enabled_layer_is_kept_whole_with_the_reason():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu", name="plain")(inputs)
    x = keras.layers.Dense(10, activation="relu", name="feeds_lora")(x)
    x = keras.layers.Dense(12, activation="relu", name="adapted")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    model.get_layer("adapted").enable_lora(2)
    graph = tfprune.pruning.ChannelGraph(model)
    assert [g.sources for g in graph.groups] == [["plain"]]
    # Its input channels (feeds_lora's) and its own are kept whole; then the head's output.
    kept = {tuple(sources): (size, reason) for sources, size, reason in graph.kept_whole()}
    assert "LoRA is enabled" in kept[("adapted",)][1] and kept[("adapted",)][0] == 12
    assert "LoRA is enabled" in kept[("feeds_lora",)][1]
    scores = tfprune.score(model, "magnitude")
    assert "adapted" not in scores
    plan = tfprune.make_plan(model, scores, 0.5)
    assert layer_flops(model, plan)["adapted"] == layer_flops(model)["adapted"] == 2 * 10 * 12
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    np.testing.assert_allclose(slimmed(x), masked(x), atol=1e-5)


def test_lora_inside_an_attention_layer_keeps_it_whole_and_slim_says_why():
    inputs = keras.Input((6, 16))
    attended = keras.layers.MultiHeadAttention(4, 4, name="mha")(inputs, inputs)
    x = keras.layers.Dense(32, activation="relu", name="mlp")(attended + inputs)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(16, name="mlp_out")(x))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    model.get_layer("mha")._query_dense.enable_lora(2)
    graph = tfprune.pruning.ChannelGraph(model)
    assert [g.sources for g in graph.groups] == [["mlp"], ["mlp_out"]]  # no mha/heads group
    assert any(sources == ["mha"] and "LoRA" in why for sources, _, why in graph.kept_whole())
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.3)
    with pytest.raises(tfprune.handlers.GraphError, match="'mha': LoRA is enabled on its sub"):
        tfprune.slim(model, plan)


def test_a_keras_quantized_model_is_refused_naming_its_layers():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu", name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    model.quantize("int8")  # integer kernels: prune the float model, then quantize
    assert tfprune.channel_groups(model) == []
    with pytest.raises(ScoringError, match=r"'a' is kept whole: quantized by Keras \(int8"):
        tfprune.score(model, "magnitude")
