"""Slimming composites whose sublayers are written as keras-hub writes them.

keras-hub's blocks are saved through their own configs, never their
sublayers'; a flat slim saves the sublayers, so their quirks must not stop
the slimmed model from saving and loading: a call returning ``(x, None)``
(T5's attention), a ``get_config`` that leaves out an argument kept only in a
Dropout layer (T5), a broken ``get_config`` (RoFormerV2's embedding), a
Dropout layer written where its rate belongs (Swin), blocks of the same
name in two stages (Swin), an argument stored under another name (QwenMoe),
and a block holding its MLP in a Sequential made from a list (ViTDet) or in
a plain list (refused).
"""

import keras
import numpy as np
import pytest
from slim_checks import assert_slims_as_masked_and_reloads

import tfprune
from tfprune.layer_configs import layer_config
from tfprune.plans.pruning_plan import PlanError


@keras.saving.register_keras_serializable(package="tests")
class CachingAttention(keras.layers.Layer):
    """Returns ``(output, None)`` and saves no ``dropout``: its rate lives in ``dropout_layer``."""

    def __init__(self, width, dropout, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.value = keras.layers.Dense(width, name="value")
        self.dropout_layer = keras.layers.Dropout(dropout)

    def call(self, x, cache=None):
        return self.dropout_layer(self.value(x)), cache

    def get_config(self):
        return {**super().get_config(), "width": self.width}  # no "dropout"


@keras.saving.register_keras_serializable(package="tests")
class BrokenConfigScale(keras.layers.Layer):
    """Scales by a weight; its ``get_config`` reads an attribute it never set."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "width": self.out_width}  # AttributeError


@keras.saving.register_keras_serializable(package="tests")
class QuirkyBlock(keras.layers.Layer):
    def __init__(self, width=8, hidden=12, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden = width, hidden
        self.attention = CachingAttention(width, 0.0, name="attention")
        self.scale = BrokenConfigScale(width, name="scale")
        self.up = keras.layers.Dense(hidden, activation="relu", name="up")
        self.down = keras.layers.Dense(width, name="down")

    def call(self, x):
        attended, _ = self.attention(x)
        return self.scale(x + attended) + self.down(self.up(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden}


def test_a_flat_slim_of_keras_hub_like_sublayers_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(5)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = QuirkyBlock(name="block")(x)
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling1D()(x)))
    data = np.random.default_rng(0).integers(0, 20, (5, 6))
    assert_slims_as_masked_and_reloads(model, data, tmp_path,
                                       ignored_layers=["scale"])  # kept whole


def test_a_dropout_layer_in_a_config_is_read_as_its_rate():
    class SwinLike(keras.layers.Layer):
        def __init__(self, proj_drop=0.0, **kwargs):
            super().__init__(**kwargs)
            self.proj_drop = keras.layers.Dropout(proj_drop)

        def get_config(self):
            return {**super().get_config(), "proj_drop": self.proj_drop}

    assert layer_config(SwinLike(0.25))["proj_drop"] == pytest.approx(0.25)
    assert layer_config(CachingAttention(4, 0.125))["dropout"] == pytest.approx(0.125)


@keras.saving.register_keras_serializable(package="tests")
class SizedBlock(keras.layers.Layer):
    """Reads its batch size and length (rebuilt in place by slim), named alike in each stage."""

    def __init__(self, width=8, hidden=12, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden = width, hidden
        self.up = keras.layers.Dense(hidden, activation="relu", name="up")
        self.down = keras.layers.Dense(width, name="down")

    def call(self, x):
        batch, length = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        return x + self.down(self.up(x)) * keras.ops.ones((batch, length, 1))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="tests")
class Stage(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [SizedBlock(name="blocks_0"), SizedBlock(name="blocks_1")]

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_blocks_named_alike_in_two_stages_are_named_by_their_paths(tmp_path):
    keras.utils.set_random_seed(6)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = Stage(name="stage_1")(Stage(name="stage_0")(x))
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling1D()(x)))
    data = np.random.default_rng(1).integers(0, 20, (4, 6))
    slimmed = assert_slims_as_masked_and_reloads(model, data, tmp_path)
    names = [layer.name for layer in slimmed.layers]
    assert len(names) == len(set(names))


def test_an_argument_stored_under_another_name_is_read_from_the_constructor():
    from tfprune.layer_configs import constructor_config

    class MoeLike(keras.layers.Layer):  # as keras-hub's QwenSparseMoeBlock
        def __init__(self, moe_intermediate_dim, shared_dim, **kwargs):
            super().__init__(**kwargs)
            self.intermediate_dim = moe_intermediate_dim
            self.intermediate_dim_shared = int(shared_dim)

    config = constructor_config(MoeLike(6, 3))
    assert (config["moe_intermediate_dim"], config["shared_dim"]) == (6, 3)
    assert MoeLike.from_config(config).intermediate_dim_shared == 3


@keras.saving.register_keras_serializable(package="tests")
class SequentialMlpBlock(keras.layers.Layer):
    """Reads its batch size (rebuilt in place); its MLP is a Sequential made from a list.

    As keras-hub's ViTDet: the list's layers stay tracked by the block itself
    too, so the full-size ones must leave with the Sequential they are in.
    """

    def __init__(self, width=8, hidden=12, unstack=False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden, self.unstack = width, hidden, unstack
        self.mlp = [keras.layers.Dense(hidden, activation="relu", name="up"),
                    keras.layers.Dense(width, name="down")]
        self.mlp = keras.Sequential(self.mlp)

    def call(self, x):
        batch, length = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        y = self.mlp(x) * keras.ops.ones((batch, length, 1))
        if self.unstack:  # ops.unstack of another axis than the channels' (ViTDet's q, k, v)
            halves = keras.ops.reshape(y, (batch, 2, length // 2, keras.ops.shape(y)[-1]))
            first, second = keras.ops.unstack(halves, axis=1)
            y = keras.ops.concatenate([second, first], axis=1)
        return x + y

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden,
                "unstack": self.unstack}


@pytest.mark.parametrize("unstack", [False, True])
def test_a_composite_holding_a_sequential_slims_without_its_full_size_layers(tmp_path, unstack):
    keras.utils.set_random_seed(7)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = SequentialMlpBlock(unstack=unstack, name="block")(x)
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling1D()(x)))
    data = np.random.default_rng(2).integers(0, 20, (4, 6))
    slimmed = assert_slims_as_masked_and_reloads(model, data, tmp_path)
    block, original = slimmed.get_layer("block"), model.get_layer("block")
    assert len(block.weights) == 4  # the slimmed Dense layers only, not full-size twins too
    assert block.count_params() < original.count_params()


class ListMlpBlock(SequentialMlpBlock):
    """Holds its MLP in a plain list, where slim cannot put slimmed layers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mlp = list(self.mlp.layers)

    def call(self, x):
        batch = keras.ops.shape(x)[0]
        y = x
        for layer in self.mlp:
            y = layer(y)
        return x + y * keras.ops.ones((batch, 1, 1))


def test_a_composite_holding_sublayers_in_a_list_is_refused_by_slim():
    tokens = keras.Input((6,), dtype="int32")
    x = ListMlpBlock(name="block")(keras.layers.Embedding(20, 8, name="embed")(tokens))
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling1D()(x)))
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    with pytest.raises(PlanError, match="'block' \\(ListMlpBlock\\) holds .*ignored_layers"):
        tfprune.slim(model, plan)


def _unregistered_quick_gelu(x):  # as keras-hub's CLIP quick_gelu: a plain function
    return x * keras.ops.sigmoid(1.702 * x)


def test_a_layer_with_an_unregistered_activation_function_slims():
    keras.utils.set_random_seed(9)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation=_unregistered_quick_gelu, name="up")(inputs)
    x = keras.layers.Activation(_unregistered_quick_gelu, name="again")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    slimmed = tfprune.slim(model, plan)
    masked = tfprune.apply_plan(model, plan)  # (clone_model cannot rebuild it either)
    assert slimmed.get_layer("up").units == 4
    assert slimmed.get_layer("again").activation is _unregistered_quick_gelu
    data = np.random.default_rng(3).normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(slimmed(data), masked(data), atol=1e-5)
