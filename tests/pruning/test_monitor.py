"""ScoreMonitor: scores during fit without pruning; rankings and would-be masks compared."""

import keras
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfprune


def setup(learning_rate):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(6, 1, activation="relu", name="conv2")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile(keras.optimizers.SGD(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(48, 6, 6, 2)).astype("float32"), np.arange(48) % 3


def test_frozen_weights_give_identical_rankings_and_masks(tmp_path):
    model, x, y = setup(0.0)
    monitor = tfprune.ScoreMonitor("snip", (x, y), every=1, target=0.5, log_dir=tmp_path,
                                   score_options={"num_samples": 48})
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]
    for entry in monitor.history[1:]:
        assert entry["mask_distance"] == 0.0
        assert all(np.isclose(c, 1.0) for c in entry["rank_correlation"].values())
    for a, b in zip(before, model.get_weights(), strict=True):  # nothing was pruned
        np.testing.assert_array_equal(a, b)
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"monitor/mask_distance", "monitor/rank_correlation/conv", "monitor/scores",
            "monitor/scores/conv"} <= tags


def test_training_moves_the_ranking_every_second_epoch():
    model, x, y = setup(0.5)
    monitor = tfprune.ScoreMonitor("magnitude", (x, y), every=2, target=0.5)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[monitor])
    assert [h["epoch"] for h in monitor.history] == [0, 2, 4]
    assert any(h["mask_distance"] > 0 or min(h["rank_correlation"].values()) < 1
               for h in monitor.history[1:])
