"""tf.distribute: ``run.strategy`` through the CLI, pruning under MirroredStrategy, Keras' fit bug.

Logical CPU devices can only be made before TensorFlow starts, so the mirrored
checks share one fresh interpreter (``mirrored_session``, run once per module):

1. ``tfprune prune CONFIG --set run.strategy=mirrored --set run.devices=[/cpu:0, /cpu:1]``
   through the CLI's ``main``, first, so the config itself splits the CPU into two
   logical devices;
2. Keras' own ``fit`` with a batch that does not split evenly over the replicas,
   without and with tfprune's workaround;
3. one fit on one device and one mirrored over two, from the same weights and
   data, BatchNorm synchronized so both see the global batch. Inside each fit,
   three measures make a plan before the first step (which must be the same on
   both) and after the epoch (99% of the same channels), and a snip
   ``PruningCallback`` prunes the model: every replica's copy of every masked
   variable must hold its zeros;
4. snip and GraSP scores split over the two replicas against one device's.
"""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from cli.test_cli import tiny_config

from tfprune.config import ConfigError, validate
from tfprune.training.strategy import strategy_for

SESSION = """
import sys
from tfprune.cli.main import main

code = main(["prune", sys.argv[1], "--set", "run.strategy=mirrored", "--set",
             "run.devices=[/cpu:0, /cpu:1]", "--set", "run.dir=" + sys.argv[2]])
print("cli exit", code, flush=True)

import keras
import numpy as np
import tensorflow as tf

import tfprune
from tfprune.pruning import PruningCallback, variable_masks
from tfprune.pruning.tfmot_schedules import RoundsSchedule
from tfprune.training.keras_workarounds import fit_workarounds
from tfprune.training.strategy import strategy_for

# The CLI's own strategy (made once per process): a second MirroredStrategy in one process
# would reuse its collective instance keys.
mirrored = strategy_for({"run": {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}})
print("replicas", mirrored.num_replicas_in_sync, flush=True)

# -- Keras' fit with 9 rows over 2 replicas (5 + 4), without and with the workaround.
rows = np.random.default_rng(0).random((18, 8)).astype("float32")
uneven = tf.data.Dataset.from_tensor_slices((rows, np.arange(18) % 3)).batch(9)


def fitted(workaround):
    with mirrored.scope():
        inputs = keras.Input((8,))
        model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        with fit_workarounds(model) if workaround else mirrored.scope():
            model.fit(uneven, epochs=1, validation_data=uneven, verbose=0)
    except tf.errors.InvalidArgumentError as error:
        return "fails: " + " ".join(str(error).split())[:200]
    return "fits"


print("keras:", fitted(False), flush=True)
print("tfprune:", fitted(True), flush=True)

# -- Three measures, one device against two mirrored ones: one fit per strategy, in which
# every measure makes a plan before the first step (inside fit, as a round does) and again
# after an epoch; a snip PruningCallback prunes the model itself, so its masks must hold on
# every replica.
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, 64)
keras.utils.set_random_seed(0)
initial = tfprune.models.build("vgg11", width_multiplier=0.0625).get_weights()
MEASURES = ("magnitude", "snip", "grasp")  # no data; g; g and Hg
OPTIONS = {"num_samples": 32, "samples_per_class": 2}


class Plans(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.before, self.after = {}, {}

    def _plans(self):
        return {measure: tfprune.make_plan(self.model, tfprune.score(
            self.model, measure, (x, y), **({} if measure == "magnitude" else OPTIONS)), 0.5)
            for measure in MEASURES}

    def on_train_begin(self, logs=None):
        self.before = self._plans()

    def on_train_end(self, logs=None):
        self.after = self._plans()


def fitted_plans(strategy):
    with strategy.scope():
        model = tfprune.models.build("vgg11", width_multiplier=0.0625)
        for layer in model.layers:  # batch statistics over the global batch, as on one device
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plans = Plans()
    pruning = PruningCallback("snip", RoundsSchedule(0.25, rounds=1, start=0), (x, y),
                              score_options=OPTIONS)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.fit(dataset, epochs=1, callbacks=[plans, pruning], verbose=0)
    for variable, mask in variable_masks(model, pruning.plan):
        inner = variable.value  # a tf MirroredVariable under the strategy
        values = getattr(inner, "values", (inner,))  # one per replica
        assert len(values) == strategy.num_replicas_in_sync
        for value in values:
            assert np.all(np.asarray(value)[mask == 0] == 0), variable.path
    return plans, pruning.plan


(one, one_pruned), (two, two_pruned) = (fitted_plans(s) for s in
                                        (tf.distribute.get_strategy(), mirrored))
print("measure pruning", one_pruned.checksum(), two_pruned.checksum(), 1.0, flush=True)
for measure in MEASURES:
    a, b = one.after[measure], two.after[measure]
    same = sum(int((m == n).sum()) for m, n in zip(a.keep.values(), b.keep.values()))
    print("measure", measure, one.before[measure].checksum(), two.before[measure].checksum(),
          same / a.total, flush=True)

# -- Scoring split over the two replicas (each takes every other sample) gives the scores of
# one device, from the same weights and data.
models = []
for strategy in (tf.distribute.get_strategy(), mirrored):
    with strategy.scope():
        models.append(tfprune.models.build("vgg11", width_multiplier=0.0625))
        models[-1].set_weights(initial)
for measure in ("snip", "grasp"):
    alone = tfprune.score(models[0], measure, (x, y), **OPTIONS)
    split = tfprune.score(models[1], measure, (x, y), **OPTIONS, verbose=1)
    error = max(float(np.abs(alone[k] - split[k]).max() / np.abs(alone[k]).max()) for k in alone)
    print("split", measure, error, flush=True)
"""


@pytest.fixture(scope="module")
def mirrored_session(tmp_path_factory):
    """Runs SESSION once; returns (its stdout lines, the CLI run's folder)."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("mirrored")
    config = root / "c.yaml"
    config.write_text(tiny_config(write_image_folder(root / "images"), epochs=1,
                                  prune="{measure: snip, target: 0.5, num_samples: 12}"))
    # Two TensorFlow threads (scripts/test.sh gives each test process one): with one, the two
    # replicas' steps and collectives take turns on it, about twice as slow.
    threads = {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", SESSION, str(config), str(root / "run")],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, **threads})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines(), root / "run"


def test_prune_from_the_cli_mirrored_over_two_logical_cpus(mirrored_session):
    lines, run = mirrored_session
    assert "cli exit 0" in lines and "replicas 2" in lines
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["fraction_removed"] == pytest.approx(0.5, abs=0.01)
    assert [row["epoch"] for row in json.loads((run / "metrics.json").read_text())] == [1]


def test_keras_fit_with_uneven_replica_batches_needs_the_workaround(mirrored_session):
    lines, _ = mirrored_session
    keras_line = next(line for line in lines if line.startswith("keras:"))
    # If this fails, Keras fixed the bug: drop tfprune/training/keras_workarounds.py.
    assert "fails: " in keras_line and "Inputs to operation AddN" in keras_line, keras_line
    assert "tfprune: fits" in lines


def test_mirrored_plans_equal_single_device_plans_for_three_measures(mirrored_session):
    lines, _ = mirrored_session
    rows = [line.split()[1:] for line in lines if line.startswith("measure ")]
    assert [row[0] for row in rows] == ["pruning", "magnitude", "snip", "grasp"], \
        lines
    assert [row[1] for row in rows] == [row[2] for row in rows], \
        "round 1, before training: the same plan from the same weights and data"
    assert all(float(row[3]) >= 0.99 for row in rows), \
        ("round 2, after an epoch of training: 99% of the same channels", rows)


def test_scoring_is_split_over_the_replicas_into_the_single_device_scores(mirrored_session):
    lines, _ = mirrored_session
    assert any(line.startswith("scoring: g over 32 samples, split over 2 replicas")
               for line in lines), lines
    errors = {line.split()[1]: float(line.split()[2]) for line in lines
              if line.startswith("split ")}
    assert set(errors) == {"snip", "grasp"} and max(errors.values()) < 1e-4, errors


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
