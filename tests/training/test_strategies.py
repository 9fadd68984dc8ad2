"""``run.strategy``: the CLI and ``train`` under tf.distribute strategies."""

import json
import subprocess
import sys

import pytest
import tensorflow as tf
from cli.test_cli import tiny_config

from tfprune.config import ConfigError, validate
from tfprune.training.strategy import strategy_for

MIRRORED_PRUNE = """
import sys
from tfprune.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_prune_from_the_cli_mirrored_over_two_logical_cpus(image_folder, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(tiny_config(image_folder, epochs=1, prune="{measure: snip, target: 0.5, "
                                "num_samples: 12}"))
    run = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_PRUNE, "prune", str(path), "--set",
         "run.strategy=mirrored", "--set", "run.devices=[/cpu:0, /cpu:1]", "--set",
         f"run.dir={run}"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["fraction_removed"] == pytest.approx(0.5, abs=0.01)
    assert [row["epoch"] for row in json.loads((run / "metrics.json").read_text())] == [1]


def test_default_is_the_strategy_in_scope():
    assert strategy_for(validate({})) is tf.distribute.get_strategy()
    users = tf.distribute.MirroredStrategy(["/cpu:0"])
    with users.scope():
        assert strategy_for(validate({})) is users
        with pytest.raises(ConfigError, match="inside a strategy scope of your own"):
            strategy_for(validate({"run": {"strategy": "mirrored"}}))


def test_bad_strategies_are_refused_before_any_work(monkeypatch):
    with pytest.raises(ConfigError, match="run.strategy: invalid value 'horovod'"):
        validate({"run": {"strategy": "horovod"}})
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG environment variable, which is not set"):
        strategy_for(validate({"run": {"strategy": "multi_worker"}}))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ConfigError, match="TF_CONFIG is not a cluster description"):
        strategy_for(validate({"run": {"strategy": "multi_worker"}}))
    tf.constant(1.0)  # TensorFlow has started: no more logical devices
    with pytest.raises(ConfigError, match="already started with 1"):
        strategy_for(validate({"run": {"strategy": "mirrored",
                                       "devices": ["/cpu:0", "/cpu:1", "/cpu:2"]}}))


UNEVEN_BATCHES = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from tfprune.training.keras_workarounds import fit_workarounds

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
x = np.random.default_rng(0).random((18, 8)).astype("float32")
y = np.arange(18) % 3
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(9)  # 5 + 4 rows per replica


def fitted(workaround):
    with strategy.scope():
        inputs = keras.Input((8,))
        model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        with fit_workarounds(model) if workaround else strategy.scope():
            model.fit(data, epochs=2, validation_data=data, verbose=0)
    except tf.errors.InvalidArgumentError as error:
        return "fails: " + str(error).splitlines()[0][:120]
    return "fits"


print("keras:", fitted(False))
print("tfprune:", fitted(True))
"""


def test_keras_fit_with_uneven_replica_batches_needs_the_workaround():
    out = subprocess.run([sys.executable, "-c", UNEVEN_BATCHES], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # If this first line fails, Keras fixed the bug: drop the workaround (keras_workarounds.py).
    assert "keras: fails: " in out.stdout and "Inputs to operation AddN" in out.stdout
    assert "tfprune: fits" in out.stdout
