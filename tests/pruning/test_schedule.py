import subprocess
import sys

import keras
import numpy as np
import pytest

from tfprune.pruning.tfmot_import import import_tfmot
from tfprune.pruning.tfmot_schedules import EarlyBirdSchedule, RoundsSchedule


def test_schedules_are_tfmot_pruning_schedules():
    tfmot = import_tfmot()
    assert isinstance(RoundsSchedule(0.5, 5), tfmot.sparsity.keras.PruningSchedule)
    should, sparsity = RoundsSchedule(0.5, 5)(2)
    assert bool(should) and float(sparsity) == pytest.approx(0.2)


def test_even_split():
    schedule = RoundsSchedule(0.75, rounds=5)
    assert [schedule.decide(step) for step in range(7)] == [
        (False, 0.0), (True, 0.15), (True, 0.3), (True, pytest.approx(0.45)),
        (True, 0.6), (True, 0.75), (False, 0.75)]


def test_front_loaded_split_matches_the_reference_formula():
    p, n = 0.75, 5
    schedule = RoundsSchedule(p, rounds=n, split="front_loaded")
    remaining = 1.0
    for k in range(1, n + 1):
        remaining *= 1 - p / (k * p + n * (1 - p))  # round k removes this share of what is left
        assert schedule.decide(k) == (True, pytest.approx(1 - remaining))
    assert remaining == pytest.approx(1 - p)
    assert schedule.sparsity_after(1) > RoundsSchedule(p, n).sparsity_after(1)


def test_one_shot_is_one_round():
    assert RoundsSchedule(0.6).decide(1) == (True, 0.6)
    assert RoundsSchedule(0.6).decide(2) == (False, 0.6)


@pytest.mark.parametrize("schedule", [RoundsSchedule(0.5, 3, "front_loaded"),
                                      EarlyBirdSchedule(0.3, threshold=0.05, patience=2)])
def test_keras_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(schedule) and rebuilt.get_config() == schedule.get_config()
    tfmot_form = {"class_name": type(schedule).__name__, "config": schedule.get_config()}
    assert type(schedule).from_config(tfmot_form).get_config() == schedule.get_config()


def test_early_bird_prunes_once_masks_settle():
    schedule = EarlyBirdSchedule(0.5, threshold=0.1, patience=2, max_epochs=10)
    decisions = []
    for step, distance in enumerate([0.5, 0.3, 0.05, 0.02, 0.01], start=1):
        schedule.observe(distance)
        decisions.append(schedule.decide(step))
    assert decisions == [(False, 0.0), (False, 0.0), (False, 0.0), (True, 0.5), (False, 0.5)]
    late = EarlyBirdSchedule(0.5, max_epochs=3)
    assert [late.decide(s)[0] for s in (1, 2, 3)] == [False, False, True]


def test_bad_schedules_fail_clearly():
    with pytest.raises(ValueError, match="target must be in"):
        RoundsSchedule(1.0)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        RoundsSchedule(0.5, 0)
    with pytest.raises(ValueError, match="split must be one of"):
        RoundsSchedule(0.5, 2, "uneven")


def test_tf_keras_stays_keras_3_after_importing_tfprune():
    code = (
        "import tfprune.pruning, tensorflow as tf, keras, os\n"
        "assert tf.keras.layers.Dense is keras.layers.Dense, tf.keras\n"
        "assert os.environ.get('TF_USE_LEGACY_KERAS') is None\n"
        "print('keras', keras.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("keras 3.")


def test_a_schedule_of_ones_own_drives_the_callback():
    import tfprune
    from tfprune.pruning import PruningCallback, PruningSchedule, RoundsSchedule

    class AtEpochs(PruningSchedule):
        def __init__(self, targets):
            self.targets, self.target = dict(targets), max(targets.values())

        def decide(self, step):
            return step in self.targets, self.targets.get(step, 0.0)

        def get_config(self):
            return {"targets": self.targets}

    with pytest.raises(TypeError, match="abstract"):
        PruningSchedule()
    assert isinstance(RoundsSchedule(0.5), PruningSchedule)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(10, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_data = np.random.default_rng(0).normal(size=(16, 6, 6, 3)).astype("float32")
    y_data = np.arange(16) % 2
    schedule = AtEpochs({2: 0.3, 3: 0.6})
    kept = []
    callback = PruningCallback("magnitude", schedule, min_keep=0.0)
    log = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: kept.append(
        logs["kept_filters"]))
    model.fit(x_data, y_data, epochs=4, verbose=0, callbacks=[callback, log])
    assert kept == [10, 7, 4, 4]
    assert schedule.from_config(schedule.get_config()).targets == {2: 0.3, 3: 0.6}
    assert tfprune.pruning.PruningSchedule is PruningSchedule
