import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.pruning import PruningCallback, channel_groups, variable_masks
from tfprune.pruning.tfmot_schedules import RoundsSchedule


def user_model():
    """A small functional model of the user's own: a residual Add and a Concatenate."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    branch = keras.layers.Conv2D(8, 3, padding="same", name="branch")(
        keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_bn")(stem)))
    merged = keras.layers.Add(name="add")([stem, branch])
    side = keras.layers.Conv2D(4, 1, name="side")(inputs)
    joined = keras.layers.Concatenate(name="cat")([merged, side])
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(12, 3, name="top")(joined))
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(pooled))


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16, 16, 3)).astype("float32")
    return x, np.arange(40) % 5


def test_front_loaded_rounds_on_a_user_model_with_plain_fit():
    model = user_model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data()
    schedule = RoundsSchedule(0.5, rounds=3, split="front_loaded")
    callback = PruningCallback("proposed", schedule, (x, y), score_options={"num_samples": 20})
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(10), epochs=4,
                        callbacks=[callback], verbose=0)
    total = sum(group.size for group in channel_groups(model))
    assert total == 8 + 4 + 12  # the residual stream, the side branch, top
    expected = [total - round(schedule.sparsity_after(k) * total) for k in (1, 2, 3, 3)]
    assert history.history["kept_filters"] == expected
    for variable, mask in variable_masks(model, callback.plan):
        assert np.all(variable.numpy()[mask == 0] == 0), variable.path


def test_callback_continues_on_the_same_model_and_starts_afresh_on_another():
    def compiled():
        model = user_model()
        model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        return model

    model = compiled()
    x, y = data()
    callback = PruningCallback("magnitude", RoundsSchedule(0.25, rounds=1), (x, y))
    model.fit(x, y, epochs=1, batch_size=10, callbacks=[callback], verbose=0)
    first = callback.plan
    model.fit(x, y, epochs=1, batch_size=10, callbacks=[callback], verbose=0)
    assert callback.plan is first  # the second fit goes on from the masks in force
    other = compiled()
    other.fit(x, y, epochs=1, batch_size=10, callbacks=[callback], verbose=0)
    assert callback.plan is not first and callback.plan.fraction_removed == first.fraction_removed


def test_early_bird_prunes_once_the_masks_settle_in_fit():
    from tfprune.pruning.tfmot_schedules import EarlyBirdSchedule

    model = user_model()
    model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))  # lr 0: the magnitude masks never change, so they settle at once
    x, y = data()
    schedule = EarlyBirdSchedule(0.5, threshold=0.01, patience=2, max_epochs=6)
    callback = PruningCallback("magnitude", schedule, (x, y))
    history = model.fit(x, y, epochs=4, batch_size=10, callbacks=[callback], verbose=0)
    assert schedule.distances == [0.0, 0.0] and schedule.pruned_at == 3  # no probe at epoch 1
    assert history.history["kept_filters"] == [24, 24, 12, 12]


def test_a_sub_model_is_pruned_inside_the_whole_models_fit():
    # keras.io's VAE pattern: the decoder is a model of its own, trained inside the whole.
    import keras

    import tfprune
    from tfprune.pruning import PruningCallback, RoundsSchedule

    keras.utils.set_random_seed(0)
    code = keras.Input((4,))
    hidden = keras.layers.Dense(16, activation="relu", name="dec_hidden")(code)
    decoder = keras.Model(code, keras.layers.Dense(8, name="dec_out")(hidden), name="decoder")
    inputs = keras.Input((8,))
    encoder = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    whole = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    whole.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    pruner = tfprune.Pruner(decoder, "magnitude", verbose=0)
    whole.fit(x, x, epochs=2, batch_size=16, verbose=0,
              callbacks=[PruningCallback(pruner, RoundsSchedule(0.5, rounds=1))])
    assert pruner.plan.fraction_removed == 0.5
    kernel = whole.get_layer("decoder").get_layer("dec_hidden").kernel.numpy()
    removed = np.all(kernel == 0, axis=0)
    assert removed.sum() == 8  # zero after the second epoch's updates: the masks held
    np.testing.assert_allclose(pruner.slim()(x[:4] @ np.zeros((8, 4), "float32")),
                               decoder(x[:4] @ np.zeros((8, 4), "float32")), atol=1e-5)


class _SlotsAfterRound(keras.callbacks.Callback):
    """Copies the optimizer's momentum slots right after the pruning callback's round."""

    def on_epoch_end(self, epoch, logs=None):
        self.slots = [v.numpy().copy() for v in self.model.optimizer.variables
                      if v.name.endswith("momentum")]


@pytest.mark.parametrize("reset", [False, True])
def test_reset_optimizer_zeroes_every_slot_as_a_new_optimizer_would(reset):
    model = user_model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data()
    probe = _SlotsAfterRound()
    callback = PruningCallback("magnitude", RoundsSchedule(0.5, rounds=1), reset_optimizer=reset,
                               verbose=0)
    model.fit(x, y, epochs=1, batch_size=10, verbose=0, callbacks=[callback, probe])
    assert probe.slots and model.optimizer.iterations.numpy() == 4  # the step count is kept
    nonzero = sum(int(np.count_nonzero(slot)) for slot in probe.slots)
    assert (nonzero == 0) == reset  # kept (on the surviving weights) unless reset


def test_reset_optimizer_is_a_config_key():
    from tfprune.config import load_config

    assert load_config(None)["prune"]["reset_optimizer"] is False
    assert load_config(None, ["prune.reset_optimizer=true"])["prune"]["reset_optimizer"]
