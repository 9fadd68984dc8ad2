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
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


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
    try:
        yield model
    finally:
        with contextlib.suppress(AttributeError):
            object.__delattr__(model, "_maybe_symbolic_build")
