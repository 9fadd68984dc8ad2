"""``tfprune.Pruner``: score, plan, apply, slim; and the callback driving one."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.pruning import GraphError, PruningCallback, RoundsSchedule

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 8, 8, 3)).astype("float32")
Y = np.arange(32) % 4


def cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(12, 3, name="a")(inputs)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="b")(keras.layers.ReLU()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))


def test_steps_accumulate_and_equal_make_plan_on_the_same_scores():
    model = cnn()
    pruner = tfprune.Pruner(model, "snip", (X, Y), score_options={"num_samples": 32})
    first = pruner.step(0.25)
    assert first.removed == round(0.25 * 28)
    expected = tfprune.make_plan(model, pruner.scores, 0.25)
    for key in first.keep:
        np.testing.assert_array_equal(first.keep[key], expected.keep[key])
    second = pruner.step(0.5)
    assert pruner.plan is second and second.removed == 14 and len(second.history) == 2
    for key in first.keep:  # channels removed by the first step stay removed
        assert not np.any(second.keep[key][~first.keep[key]])


def test_apply_and_slim_agree_and_need_a_plan():
    model = cnn()
    pruner = tfprune.Pruner(model, "magnitude", round_to=4)
    with pytest.raises(ValueError, match="no plan yet; call step"):
        pruner.slim()
    plan = pruner.step(0.5)
    assert all(k.sum() % 4 == 0 or k.all() for k in plan.keep.values())
    small = pruner.slim()
    masked = pruner.apply()
    assert small.count_params() < masked.count_params()
    np.testing.assert_allclose(small(X[:4]), masked(X[:4]), rtol=1e-4, atol=1e-6)


def test_the_graph_is_analysed_once_at_construction_naming_every_problem():
    class Odd(keras.layers.Layer):  # a weight of its own: tfprune cannot look through it
        def build(self, input_shape):
            self.factor = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.factor

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = Odd(name="odd_one")(x)
    x = Odd(name="odd_two")(keras.layers.Conv2D(4, 3, name="conv2")(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(GraphError, match="(?s)odd_one.*odd_two"):
        tfprune.Pruner(model, "magnitude")


def test_a_measure_by_name_takes_the_temperature_compiled_after_the_pruner_was_made():
    model = cnn()
    pruner = tfprune.Pruner(model, "snip", (X, Y))
    assert pruner.measure.temperature == 1.0
    model.compile("sgd", tfprune.losses.TemperatureCrossEntropy(5.0))
    assert pruner.measure.temperature == 5.0
    explicit = tfprune.Pruner(model, {"name": "snip", "temperature": 2.0}, (X, Y))
    assert explicit.measure.temperature == 2.0


def test_the_callback_drives_a_pruner_and_refuses_options_that_belong_to_it():
    model = cnn()
    model.compile("sgd", "sparse_categorical_crossentropy")
    pruner = tfprune.Pruner(model, "proposed", (X, Y), round_to=2,
                            score_options={"num_samples": 32})
    callback = PruningCallback(pruner, RoundsSchedule(0.5, rounds=2))
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert callback.plan is pruner.plan and len(pruner.plan.history) == 2
    assert callback.kept_filters() == 14 and pruner.plan.settings["round_to"] == 2
    with pytest.raises(TypeError, match=r"\['min_keep', 'data'\] belong to the Pruner"):
        PruningCallback(pruner, RoundsSchedule(0.5), (X, Y), min_keep=0.2)
    other = cnn()
    other.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="the Pruner prunes model"):
        other.fit(X, Y, epochs=1, verbose=0,
                  callbacks=[PruningCallback(pruner, RoundsSchedule(0.5))])


def ocr_like():
    """keras.io's OCR pattern: a Reshape folds the conv's channels into time steps."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Reshape((8, 32))(x)  # (width, height x channels): channels into features
    x = keras.layers.Dense(16, activation="relu", name="dense")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="chars")(x))
    model.compile("adam", keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    return model


def test_the_pruner_says_what_pruning_can_reach_unless_silenced(capsys, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = ocr_like()
    pruner = tfprune.Pruner(model, "magnitude")
    out = capsys.readouterr().out
    assert "1 prunable channel groups, 16 channels; pruning can remove at most" in out
    assert "| conv | 4 |" in out  # kept whole, with the reason
    kept = [row for row in pruner.coverage.kept_whole if row[0] == ["conv"]]
    assert kept and 0 < pruner.coverage.params < 1
    tfprune.Pruner(model, "magnitude", verbose=0)
    assert capsys.readouterr().out == ""
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
    y = keras.utils.to_categorical(np.arange(16) % 5, 5)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[PruningCallback(
        pruner, RoundsSchedule(0.5, rounds=1), log_dir=tmp_path / "logs")])
    events = EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0}).Reload()
    (text,) = events.Tensors("pruning/coverage")
    assert b"kept whole" in text.tensor_proto.string_val[0]


def test_scoring_shows_its_samples_its_loss_settings_and_progress(capsys):
    model = ocr_like()
    x = np.random.default_rng(0).normal(size=(40, 8, 8, 1)).astype("float32")
    y = keras.utils.to_categorical(np.arange(40) % 5, 5)
    pruner = tfprune.Pruner(model, "snip", (x, y), score_options={"num_samples": 256,
                                                                   "batch_size": 16})
    capsys.readouterr()
    pruner.score()
    out = capsys.readouterr().out
    assert "scoring: g over 40 samples (all the data given: fewer than the 256 asked)" in out
    assert "categorical_crossentropy (label_smoothing=0.1) on" in out
    assert "40/40" in out  # Keras' progress bar over the samples
    assert pruner.scores.metadata["loss"] == [
        "chars: categorical_crossentropy (label_smoothing=0.1) on logits / T"]
    tfprune.Pruner(model, "snip", (x, y), verbose=0).score()
    assert capsys.readouterr().out == ""


def test_a_step_below_the_pruning_done_warns_once():
    import warnings

    pruner = tfprune.Pruner(cnn(), "magnitude", verbose=0)
    pruner.step(0.5)
    with pytest.warns(UserWarning, match=r"Pruner.step\(0.25\): 50.0% of the channels are "
                                         r"removed already.*the target is a total"):
        plan = pruner.step(0.25)
    assert plan.fraction_removed == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruner.step(0.25)  # said once
