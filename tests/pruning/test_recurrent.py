"""Recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional): their input channels are pruned
with the layer feeding them (a CNN-LSTM), their units kept whole."""

import keras
import numpy as np
import pytest
from conftest import masked_copy

import tfprune
from tfprune.pruning import MaskEnforcer
from tfprune.pruning.stats import layer_flops

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 20, 4)).astype("float32")
Y = np.arange(16) % 3


def crnn():
    """Conv1D + BatchNorm, then an LSTM, a Bidirectional GRU and a SimpleRNN; a logits head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((20, 4))
    x = keras.layers.Conv1D(16, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.LSTM(12, return_sequences=True, name="lstm")(x)
    x = keras.layers.Dense(10, name="between")(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=True), name="bigru")(x)
    x = keras.layers.SimpleRNN(5, name="rnn")(keras.layers.Dense(8, name="before_rnn")(x))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(RNG.normal(size=16))
    bn.moving_variance.assign(RNG.uniform(0.5, 2.0, size=16))
    bn.beta.assign(RNG.normal(size=16))
    return model


def test_the_layers_feeding_recurrent_layers_are_pruned_and_the_units_kept_whole():
    model = crnn()
    graph = tfprune.pruning.ChannelGraph(model)
    assert [(g.sources, g.consumers) for g in graph.groups] == [
        (["conv"], ["lstm"]), (["between"], ["bigru"]), (["before_rnn"], ["rnn"])]
    kept = {tuple(sources): reason for sources, _, reason in graph.kept_whole()}
    assert "recurrent units are kept whole" in kept[("lstm",)]
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=1), 0.5)
    masked = masked_copy(model, plan)
    slimmed = tfprune.slim(model, plan)
    np.testing.assert_allclose(slimmed(X), masked(X), atol=1e-5)
    kept_conv = int(plan.keep["0"].sum())
    assert slimmed.get_layer("conv").filters == kept_conv < 16
    assert slimmed.get_layer("lstm").cell.kernel.shape == (kept_conv, 4 * 12)
    kept_between = int(plan.keep["1"].sum())
    bigru = slimmed.get_layer("bigru")
    assert bigru.forward_layer.cell.kernel.shape == (kept_between, 3 * 6)
    assert bigru.backward_layer.cell.kernel.shape == (kept_between, 3 * 6)


def test_recurrent_flops_count_every_timestep():
    flops = layer_flops(crnn())
    steps = 18  # 20 - 3 + 1
    assert flops["lstm"] == 2 * steps * (16 * 48 + 12 * 48)
    assert flops["bigru"] == 2 * steps * 2 * (10 * 18 + 6 * 18)
    assert flops["rnn"] == 2 * steps * (8 * 5 + 5 * 5)


def test_masks_on_the_recurrent_kernel_rows_hold_through_fit():
    model = crnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plan = tfprune.make_plan(model, tfprune.score(model, "snip", (X, Y), num_samples=16), 0.5)
    enforcer = MaskEnforcer(model)
    enforcer.install()
    enforcer.update(plan)
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    rows = model.get_layer("lstm").cell.kernel.numpy()[~plan.keep["0"]]
    assert rows.size and not np.any(rows)


def test_a_bidirectional_wrapper_of_another_layer_is_named():
    inputs = keras.Input((5, 4))
    x = keras.layers.Dense(6, name="d")(inputs)
    x = keras.layers.Bidirectional(keras.layers.RNN(keras.layers.SimpleRNNCell(3)), name="bi")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(tfprune.handlers.GraphError, match="'bi' wraps a RNN, not an LSTM"):
        tfprune.channel_groups(model)


def test_the_slimmed_crnn_runs_in_litert_when_unrolled(tmp_path):
    # Keras' recurrent loops convert to TensorFlow ops LiteRT's builtin interpreter lacks
    # (Flex); unrolled over a fixed length they convert to builtin ops.
    from tfprune.export import export_tflite, verify_tflite

    keras.utils.set_random_seed(0)
    inputs = keras.Input((20, 4))
    x = keras.layers.Conv1D(16, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.LSTM(12, unroll=True, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    slimmed = tfprune.slim(model, tfprune.make_plan(model, tfprune.score(model, "magnitude"),
                                                    0.4))
    check = verify_tflite(export_tflite(slimmed, tmp_path / "crnn.tflite"), slimmed, X[:4])
    assert check.max_abs_diff <= 1e-4


@pytest.mark.parametrize("masking", ["embedding", "layer"])
def test_masked_sequences_prune_and_slim_with_their_masks(masking):
    # Embedding(mask_zero=True) and Masking put their masks into the graph as keras.ops
    # comparisons (not_equal, any): the padded steps must stay masked in the slimmed model,
    # which then gives a padded sequence the output of the same sequence unpadded.
    keras.utils.set_random_seed(0)
    if masking == "embedding":
        inputs = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(30, 12, mask_zero=True, name="embed")(inputs)
        sequences = RNG.integers(1, 30, size=(8, 9))
    else:
        inputs = keras.Input((None, 4))
        x = keras.layers.Masking(name="masking")(inputs)
        sequences = RNG.normal(size=(8, 9, 4)).astype("float32")
    x = keras.layers.Dense(10, activation="relu", name="project")(x)
    x = keras.layers.LSTM(6, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=2), 0.5)
    slimmed = tfprune.slim(model, plan)
    padded = np.concatenate([sequences, np.zeros_like(sequences[:, :3])], axis=1)
    np.testing.assert_allclose(slimmed(padded), masked_copy(model, plan)(padded), atol=1e-5)
    np.testing.assert_allclose(slimmed(padded), slimmed(sequences), atol=1e-5)
    assert slimmed.get_layer("project").units == int(plan.keep[str(len(plan.keep) - 1)].sum())


def test_a_conv_lstm_takes_its_input_channels_from_the_frame_conv_feeding_it():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 10, 10, 3))
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3), name="frame_conv")(inputs)
    x = keras.layers.ConvLSTM2D(6, 3, padding="same", name="convlstm")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    graph = tfprune.pruning.ChannelGraph(model)
    assert [(g.sources, g.consumers) for g in graph.groups] == [(["frame_conv"], ["convlstm"])]
    frames = RNG.normal(size=(4, 4, 10, 10, 3)).astype("float32")
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=1), 0.5)
    slimmed = tfprune.slim(model, plan)
    np.testing.assert_allclose(slimmed(frames), masked_copy(model, plan)(frames), atol=1e-5)
    kept = int(plan.keep["0"].sum())
    assert slimmed.get_layer("convlstm").cell.kernel.shape == (3, 3, kept, 4 * 6)
    # every frame: the input kernel and the recurrent kernel at each of the 8 x 8 positions
    assert layer_flops(model)["convlstm"] == 2 * 4 * 8 * 8 * (3 * 3 * 8 * 24 + 3 * 3 * 6 * 24)
