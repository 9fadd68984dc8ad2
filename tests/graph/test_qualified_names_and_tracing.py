"""Sublayers that share a name are known by their path; composite layers are traced whatever
their call reads (the batch size, the sequence length, None arguments); a trace that fails
names the line of the layer's call."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from slim_checks import assert_slims_as_masked_and_reloads

import tfprune
from tfprune.graph.channels import graph_for
from tfprune.graph.model_graph import TRACE_LENGTH
from tfprune.handlers import GraphError
from tfprune.model_files import load_model_file
from tfprune.plans.pruning_plan import PruningPlan


@keras.saving.register_keras_serializable(package="tests")
class Block(keras.layers.Layer):
    """An MLP block whose sublayers have fixed names, as keras-hub's blocks do."""

    def __init__(self, width=8, hidden=12, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden = width, hidden
        self.up = keras.layers.Dense(hidden, activation="relu", name="up")
        self.down = keras.layers.Dense(width, name="down")

    def call(self, x, mask=None):
        y = self.down(self.up(x))
        if mask is not None:  # an optional argument left as None
            y = y * mask
        return x + y

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="tests")
class BatchScaledBlock(Block):
    """Reads the batch size and the sequence length, like a decoder building its causal mask."""

    def call(self, x, mask=None):
        batch, length = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        ones = keras.ops.ones((batch, length, 1))
        return x + self.down(self.up(x)) * ones


def _model(block=Block, length=6):
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = block(name="block_a")(x)
    x = block(name="block_b")(x)
    logits = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(tokens, logits)


def _tokens(count=6, length=6):
    return np.random.default_rng(0).integers(0, 20, (count, length))


def test_sublayers_sharing_a_name_are_named_by_their_path():
    model = _model()
    groups = {tuple(g.sources): g for g in tfprune.channel_groups(model)}
    # The residual stream, and each block's hidden units.
    assert set(groups) == {("embed", "block_a/down", "block_b/down"), ("block_a/up",),
                           ("block_b/up",)}
    assert groups[("block_a/up",)].consumers == ["block_a/down"]
    # A unique name stays as it is: the embedding and the head are not qualified.
    assert "embed" in graph_for(model).operations and "head" in graph_for(model).operations


def test_paths_work_in_ignored_layers_ratios_plans_and_slim(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    assert ["block_a/up"] not in [g.sources for g in tfprune.channel_groups(
        model, ["block_a/up"])]
    with pytest.raises(GraphError, match="no layer or op named \\['up'\\]"):
        tfprune.channel_groups(model, ["up"])
    scores = tfprune.score(model, "magnitude")
    assert {"block_a/up", "block_b/up"} <= set(scores)
    plan = tfprune.make_plan(model, scores, {"block_b/up": 0.5})
    assert plan.kept_per_layer()["block_b/up"] == [6, 12]
    assert plan.kept_per_layer()["block_a/up"] == [12, 12]
    plan.save(tmp_path / "plan.json")
    saved = json.loads((tmp_path / "plan.json").read_text())["groups"]
    assert ["block_b/up"] in [group["sources"] for group in saved]
    loaded = PruningPlan.load(tmp_path / "plan.json")
    slimmed = tfprune.slim(model, loaded)
    assert slimmed.get_layer("block_b_up").units == 6  # inlined, named by its path


def test_a_composite_reading_its_batch_size_is_traced_and_rebuilt_in_place(tmp_path):
    keras.utils.set_random_seed(1)
    model = _model(BatchScaledBlock, length=None)
    assert ["block_a/up"] in [g.sources for g in tfprune.channel_groups(model)]
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    block = slimmed.get_layer("block_a")
    kept = plan.kept_per_layer()["block_a/up"][0]
    assert isinstance(block, BatchScaledBlock) and block.up.units == kept < 12  # its own class
    # Other sizes than the trace's (batch 2, length TRACE_LENGTH).
    tokens = _tokens(count=5, length=TRACE_LENGTH + 3)
    np.testing.assert_allclose(slimmed.predict(tokens, verbose=0),
                               masked.predict(tokens, verbose=0), atol=1e-5)
    assert slimmed.count_params() < model.count_params()
    # Saved, it loads with its slimmed sublayers (its config alone would build full-size ones).
    slimmed.save(tmp_path / "slim.keras")
    reloaded = load_model_file(tmp_path / "slim.keras")
    assert isinstance(reloaded.get_layer("block_a"), BatchScaledBlock)
    assert reloaded.get_layer("block_a").up.units == kept
    np.testing.assert_array_equal(reloaded.predict(tokens, verbose=0),
                                  slimmed.predict(tokens, verbose=0))


class Broken(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(8)

    def call(self, x):
        return self.dense(self._helper(x))

    def _helper(self, x):
        return tf.math.square(x)  # TensorFlow, not keras.ops: a KerasTensor is refused


def test_a_trace_that_fails_names_the_layer_line_and_call():
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(4)(Broken(name="broken")(keras.layers.Dense(8)(inputs)))
    model = keras.Model(inputs, outputs)
    with pytest.raises(GraphError) as raised:
        tfprune.channel_groups(model)
    message = str(raised.value)
    assert "'broken' (Broken)" in message
    assert "Broken._helper, line" in message and "tf.math.square(x)" in message


@keras.saving.register_keras_serializable(package="tests")
class TrainingScaledBlock(BatchScaledBlock):
    """Reads its sizes and takes ``training`` (a dropout between its dense layers)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = keras.layers.Dropout(0.5)

    def call(self, x, training=None):
        batch, length = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
        ones = keras.ops.ones((batch, length, 1))
        return x + self.down(self.drop(self.up(x), training=training)) * ones


def test_a_shared_composite_called_twice_with_training_is_one_group_per_layer(tmp_path):
    keras.utils.set_random_seed(2)
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    block = TrainingScaledBlock(name="shared")
    x = block(block(x, training=False), training=False)  # one set of weights, two calls
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling1D()(x)))
    groups = [g.sources for g in tfprune.channel_groups(model)]
    assert groups.count(["up"]) == 1  # both calls' hidden units are one group
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    tokens = _tokens(count=3, length=TRACE_LENGTH + 2)
    np.testing.assert_allclose(slimmed.predict(tokens, verbose=0),
                               masked.predict(tokens, verbose=0), atol=1e-5)
    assert slimmed.count_params() < model.count_params()
    # Saved, it loads with its slimmed sublayers (its config alone would build full-size ones).
    slimmed.save(tmp_path / "slim.keras")
    reloaded = load_model_file(tmp_path / "slim.keras")  # still one layer, called twice
    assert [type(layer) for layer in reloaded.layers].count(type(slimmed.get_layer("shared"))) \
        == 1
    np.testing.assert_array_equal(reloaded.predict(tokens, verbose=0),
                                  slimmed.predict(tokens, verbose=0))


def test_path_names_read_back_as_tensorboard_tags(tmp_path):
    """TensorBoard groups tags by their first part; a path name keeps the whole path."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tfprune.inspection.round_summaries import write_round
    from tfprune.pruning.stats import layer_table

    model = _model()
    scores = tfprune.score(model, "magnitude")
    plan = tfprune.make_plan(model, scores, 0.5)
    writer = tf.summary.create_file_writer(str(tmp_path))
    write_round(writer, plan, scores, 1, layer_table=layer_table(model, plan))
    writer.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"kept_ratio/block_a/up", "kept_ratio/block_b/up", "scores/block_b/up"} <= tags
    (text,) = events.Tensors("pruning/summary")
    assert "| block_b/up |" in tf.make_ndarray(text.tensor_proto).item().decode()


class ConstantOutputBlock(Block):
    """Returns, beside its result, an empty tensor made from constants (as DeiT's encoder)."""

    def call(self, x, mask=None):
        return x + self.down(self.up(x)), keras.ops.zeros((0, self.width))


def test_a_composite_with_constant_outputs_is_traced_and_slims():
    keras.utils.set_random_seed(3)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x, _ = ConstantOutputBlock(name="block")(x)  # the constant output is not used
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(
        keras.layers.GlobalAveragePooling1D()(x)))
    assert ["up"] in [g.sources for g in tfprune.channel_groups(model)]  # a unique name
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), {"up": 0.5})
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    assert slimmed.get_layer("up").units == 6
    np.testing.assert_allclose(slimmed.predict(_tokens(), verbose=0),
                               masked.predict(_tokens(), verbose=0), atol=1e-5)


def test_a_composite_whose_constant_output_is_used_is_refused_with_why():
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x, empty = ConstantOutputBlock(name="block")(x)
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(tokens, [keras.layers.Dense(3, name="head")(pooled), empty])
    with pytest.raises(GraphError, match="'block'.*made from constants.*the model uses them"):
        tfprune.channel_groups(model)


@keras.saving.register_keras_serializable(package="tests")
class HeadsMergingBlock(Block):
    """Splits and merges heads with sizes read from its input, as DINOv3's attention does."""

    def build(self, input_shape):  # a merged width traced as None: sublayers built here
        self.up.build(input_shape)
        self.down.build((*input_shape[:-1], self.hidden))

    def call(self, x, mask=None):
        batch, length, _ = keras.ops.shape(x)
        heads = keras.ops.reshape(self.up(x), (batch, length, 3, 4))
        merged = keras.ops.reshape(keras.ops.tanh(heads), (batch, length, -1))
        return x + self.down(merged)


@pytest.mark.parametrize("length", [6, None])
def test_reshapes_with_sizes_read_from_the_input_replay_at_other_sizes(tmp_path, length):
    keras.utils.set_random_seed(4)
    tokens = _tokens(count=5, length=length or TRACE_LENGTH + 3)
    assert_slims_as_masked_and_reloads(_model(HeadsMergingBlock, length=length), tokens, tmp_path)


def test_input_sized_reshape_reads_the_named_axes():
    from tfprune.keras_objects import InputSizedReshape

    merge = InputSizedReshape((None, None, -1), input_axes=(0, 1))
    assert merge.compute_output_shape((None, 7, 3, 4)) == (None, 7, None)
    assert merge.compute_output_shape((2, 7, 3, 4)) == (2, 7, 12)
    assert tuple(merge(np.zeros((2, 7, 3, 4))).shape) == (2, 7, 12)
    # A mask (batch, length) to (batch, 1, 1, length): the second None is the input's axis 1.
    spread = InputSizedReshape((None, 1, 1, None), input_axes=(0, 1))
    assert tuple(spread(np.zeros((2, 5))).shape) == (2, 1, 1, 5)
    with pytest.raises(ValueError, match="1 input axes for 2 None entries"):
        InputSizedReshape((None, None, -1), input_axes=(0,))


@keras.saving.register_keras_serializable(package="tests")
class CausalMeanBlock(Block):
    """Builds a causal mask from the length it reads, as T5Gemma's decoder does.

    Traced symbolically, ``ops.arange(0, length)`` is empty: the trace would
    hold a (0, 0) mask that cannot run at any real length.
    """

    def call(self, x, mask=None):
        length = keras.ops.shape(x)[1]
        positions = keras.ops.arange(0, length, dtype="int32")
        causal = keras.ops.logical_and(positions[None, :] <= positions[:, None],
                                       keras.ops.ones((1, 1), "bool"))
        hidden = self.up(x)
        mixed = keras.ops.einsum("qk,bkh->bqh", keras.ops.cast(causal, hidden.dtype), hidden)
        return x + self.down(mixed)


def test_a_mask_built_from_a_read_length_is_traced_at_sizes_and_rebuilt_in_place(tmp_path):
    keras.utils.set_random_seed(8)
    tokens = _tokens(count=3, length=TRACE_LENGTH + 2)
    slimmed = assert_slims_as_masked_and_reloads(_model(CausalMeanBlock, length=None), tokens,
                                                 tmp_path)
    assert isinstance(slimmed.get_layer("block_a"), CausalMeanBlock)  # its own call, any length
