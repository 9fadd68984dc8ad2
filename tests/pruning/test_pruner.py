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
