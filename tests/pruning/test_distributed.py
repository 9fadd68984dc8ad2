"""PruningCallback under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow starts, so the check runs
in a fresh interpreter.
"""

import subprocess
import sys

SCRIPT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import tfprune
from tfprune.pruning import PruningCallback, variable_masks
from tfprune.pruning.tfmot_schedules import RoundsSchedule
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print("replicas", strategy.num_replicas_in_sync)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, 64)
with strategy.scope():
    model = tfprune.models.build("vgg11", width_multiplier=0.0625, weight_decay=1e-4)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
callback = PruningCallback("snip", RoundsSchedule(0.5, rounds=2), (x, y),
                           score_options={"num_samples": 32})
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
model.fit(dataset, epochs=3, callbacks=[callback], verbose=0)
masks = variable_masks(model, callback.plan)
assert callback.plan.fraction_removed > 0.49
for v, m in masks:
    assert np.all(v.numpy()[m == 0] == 0), v.path
print("ok", callback.kept_filters())
"""


def test_pruning_callback_under_mirrored_strategy():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replicas 2" in out.stdout and "ok 86" in out.stdout
