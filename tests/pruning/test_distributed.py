"""PruningCallback under tf.distribute.MirroredStrategy on two logical CPU devices.

Four measures, each run twice from the same weights and data, on one device and
mirrored over two: round 1 (before training) must give the same plan, round 2
(after an epoch, BatchNorm synchronized so both see the global batch) 99% of
the same channels, and every replica's copy of every masked variable must hold
its zeros.

Logical devices must be configured before TensorFlow starts, so the check runs
in a fresh interpreter.
"""

import subprocess
import sys

SAME_PLANS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import tfprune
from tfprune.pruning import PruningCallback, variable_masks
from tfprune.pruning.tfmot_schedules import RoundsSchedule

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, 64)
keras.utils.set_random_seed(0)
initial = tfprune.models.build("vgg11", width_multiplier=0.0625).get_weights()
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


class FirstRound(keras.callbacks.Callback):
    def __init__(self, pruning):
        super().__init__()
        self.pruning = pruning

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0:  # round 1 was made before any training step
            self.checksum = self.pruning.plan.checksum()


def plans(strategy, measure):
    with strategy.scope():
        model = tfprune.models.build("vgg11", width_multiplier=0.0625)
        for layer in model.layers:  # batch statistics over the global batch, as on one device
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruning = PruningCallback(measure, RoundsSchedule(0.5, rounds=2, start=0), (x, y),
                              score_options={"num_samples": 32, "samples_per_class": 2})
    first = FirstRound(pruning)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.fit(dataset, epochs=2, callbacks=[pruning, first], verbose=0)
    for variable, mask in variable_masks(model, pruning.plan):
        inner = variable.value  # a tf MirroredVariable under the strategy
        values = getattr(inner, "values", (inner,))  # one per replica
        assert len(values) == strategy.num_replicas_in_sync
        for value in values:
            assert np.all(np.asarray(value)[mask == 0] == 0), variable.path
    return first.checksum, pruning.plan


for measure in ("magnitude", "snip", "proposed", "grasp"):
    (one, one_plan), (two, two_plan) = (plans(s, measure) for s in
                                        (tf.distribute.get_strategy(), mirrored))
    same = sum(int((a == b).sum()) for a, b in zip(one_plan.keep.values(),
                                                   two_plan.keep.values()))
    print(measure, one, two, same / one_plan.total, flush=True)
"""


def test_mirrored_plans_equal_single_device_plans_for_four_measures():
    out = subprocess.run([sys.executable, "-c", SAME_PLANS], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[:1] in
            (["magnitude"], ["snip"], ["proposed"], ["grasp"])]
    assert [row[0] for row in rows] == ["magnitude", "snip", "proposed", "grasp"], out.stdout
    assert [row[1] for row in rows] == [row[2] for row in rows], \
        "round 1, before training: the same plan from the same weights and data"
    assert all(float(row[3]) >= 0.99 for row in rows), \
        ("round 2, after an epoch of training: 99% of the same channels", rows)
