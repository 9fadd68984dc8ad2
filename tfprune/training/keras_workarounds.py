"""Workarounds for Keras bugs met on tfprune's training paths, each one removable alone.

**Uneven per-replica batches under a strategy (Keras 3.15.1).** Before its
first step, ``model.fit`` under a ``tf.distribute`` strategy builds the model
from one batch (``TensorFlowTrainer._maybe_symbolic_build``). It takes the
first distributed batch and *averages it over the replicas*
(``strategy.reduce("MEAN", batch, axis=None)``), only to read its shapes. When
the global batch does not split evenly (a batch of 9 over 2 replicas: 5 and
4 rows), that average fails (``Inputs to operation AddN ... must have the same
size and shape``); with a multi-worker strategy it fails on the per-replica
values themselves. The workaround builds from the first replica's part of
the batch instead, which has the same structure and dtypes, and is all the
build needs.

``tests/training/test_strategies.py`` checks both that the bug is still there
(a plain ``fit`` fails) and that the workaround fits. When Keras fixes it, that
first check fails: delete ``_first_replica_build`` and ``fit_workarounds``'s
use of it, and the check.

**Scalar metrics under a multi-worker strategy (Keras 3.15.1).** After each
step, ``fit`` averages the step's logs over the replicas with
``reduce_per_replica(..., reduction="auto")``. Under
``MultiWorkerMirroredStrategy`` that is ``strategy.reduce("MEAN", v, axis=0)``,
which asks for a mean over the first axis of a scalar loss or metric and fails
on every worker (``Invalid reduction dimension 0 for input with 0
dimensions``). The workaround averages over the replicas only
(``axis=None``), which is what Keras does with one worker. It replaces the
function in ``keras.src.backend.tensorflow.trainer`` while ``fit`` runs and
restores it after. ``tests/training/test_multi_worker.py`` checks that a plain
``fit`` still fails with two workers; when it no longer does, delete
``_replica_mean_reduce`` and its use below, and that check.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_trainer


def _first_replica(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return tf.distribute.get_strategy().experimental_local_results(value)[0]
    return value


def _first_replica_build(model: keras.Model):
    """``_maybe_symbolic_build`` that reads shapes from the first replica's part of a batch."""
    def build(iterator=None, data_batch=None):
        strategy = model.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                with strategy.scope():
                    data_batch = tf.nest.map_structure(_first_replica, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    return build


def _replica_mean_reduce(original):
    """``reduce_per_replica`` whose multi-worker mean is over the replicas, not an axis."""
    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or \
                not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(values, strategy, reduction)
        return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    return reduce_per_replica


@contextlib.contextmanager
def _multi_worker_reduce():
    original = keras_trainer.reduce_per_replica
    keras_trainer.reduce_per_replica = _replica_mean_reduce(original)
    try:
        yield
    finally:
        keras_trainer.reduce_per_replica = original


@contextlib.contextmanager
def fit_workarounds(model: keras.Model):
    """Applies the workarounds to ``model`` while the block runs ``fit`` / ``evaluate``.

    Nothing changes for a model compiled without a strategy (TensorFlow's
    default strategy): Keras then builds it when its train function is traced.
    """
    if getattr(model, "_distribute_strategy", None) is None or \
            not hasattr(model, "_maybe_symbolic_build"):
        yield model
        return
    object.__setattr__(model, "_maybe_symbolic_build", _first_replica_build(model))
    multi_worker = isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)
    try:
        with _multi_worker_reduce() if multi_worker else contextlib.nullcontext():
            yield model
    finally:
        with contextlib.suppress(AttributeError):
            object.__delattr__(model, "_maybe_symbolic_build")
