"""One PruningCallback over several fits, saved and reloaded models, and schedules it refuses."""

import keras
import numpy as np
import pytest

from tfprune.pruning import MaskConstraint, PruningCallback, RoundsSchedule


def model_and_data():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    # A removed channel of conv is 0, sigmoid makes it 0.5, so conv2's input rows for it get
    # gradients: without masks they (and then conv's kernel and bias) would regrow.
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.Conv2D(6, 1, name="conv2")(keras.layers.Activation("sigmoid")(x))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(32, 6, 6, 2)).astype("float32"), np.arange(32) % 3


def removed(model, plan):
    """The removed channels' conv kernel and bias entries and conv2 input rows, together."""
    keep = plan.keep["0"]
    conv, conv2 = model.get_layer("conv"), model.get_layer("conv2")
    return (np.concatenate([conv.kernel.numpy()[..., ~keep].ravel(),
                            conv2.kernel.numpy()[:, :, ~keep, :].ravel()]),
            conv.bias.numpy()[~keep])


def test_a_second_fit_goes_on_from_the_plan_without_stacking_constraints():
    model, x, y = model_and_data()
    callback = PruningCallback("magnitude", RoundsSchedule(0.5, rounds=1), (x, y))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    plan = callback.plan
    first_kept = callback.kept_filters()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert callback.plan is plan and callback.kept_filters() == first_kept < 14
    kernel = model.get_layer("conv").kernel
    assert isinstance(kernel.constraint, MaskConstraint)
    assert not isinstance(kernel.constraint.inner, MaskConstraint)  # depth 1 after two fits
    kernel_values, bias_values = removed(model, plan)
    assert not kernel_values.any() and not bias_values.any()
    callback.remove_masks()
    assert kernel.constraint is None


def test_masks_survive_save_and_load(tmp_path):
    model, x, y = model_and_data()
    callback = PruningCallback("magnitude", RoundsSchedule(0.5, rounds=1), (x, y))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded.fit(x, y, epochs=3, verbose=0)  # plain training, no callback
    kernel_values, bias_values = removed(loaded, callback.plan)
    assert not kernel_values.any() and not bias_values.any()
    kept = loaded.get_layer("conv").kernel.numpy()[..., callback.plan.keep["0"]]
    assert np.abs(kept).sum() > 0


def test_tfmot_schedules_are_refused_when_constructed():
    from tfprune.pruning.tfmot_import import import_tfmot

    tfmot = import_tfmot()
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 100)
    with pytest.raises(TypeError, match="PolynomialDecay.*RoundsSchedule"):
        PruningCallback("magnitude", schedule, None)


def test_a_measure_by_name_scores_at_the_compiled_training_temperature():
    from tfprune.training.loss import TemperatureCrossEntropy

    model, x, y = model_and_data()
    model.compile(keras.optimizers.SGD(0.1), TemperatureCrossEntropy(5.0))
    callback = PruningCallback("snip", RoundsSchedule(0.5, rounds=1), (x, y))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.measure.temperature == 5.0  # as the CLI and configs score
    assert callback.plan.settings["measure"] == {"name": "snip", "temperature": 5.0}
    explicit = PruningCallback({"name": "snip", "temperature": 2.0},
                               RoundsSchedule(0.5, rounds=1), (x, y))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[explicit])
    assert explicit.measure.temperature == 2.0


def test_a_measure_that_cannot_run_fails_before_the_first_epoch():
    from tfprune.importance import ScoringError

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile("sgd", "sparse_categorical_crossentropy")
    x_data = np.random.default_rng(0).normal(size=(16, 6, 6, 2)).astype("float32")
    y_data = np.arange(16) % 2
    bad_labels = (x_data[:, 0, 0, :1] * 10).astype("float32")  # not class ids
    epochs = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    callback = PruningCallback("snip", RoundsSchedule(0.5, rounds=1), (x_data, bad_labels))
    with pytest.raises(ScoringError, match="not class ids"):
        model.fit(x_data, y_data, epochs=2, verbose=0, callbacks=[counter, callback])
    assert epochs == []
