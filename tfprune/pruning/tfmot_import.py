"""Imports tensorflow-model-optimization without letting it switch ``tf.keras`` to tf_keras.

Importing tfmot sets ``TF_USE_LEGACY_KERAS=1``; ``tf.keras`` resolves lazily
on first use, so if nothing touched it before, the whole process would get the
legacy tf_keras. This module resolves ``tf.keras`` (Keras 3) first, imports
tfmot, and restores the environment variable.
"""

from __future__ import annotations

import os

import tensorflow as tf


def import_tfmot():
    """Returns the ``tensorflow_model_optimization`` module, Keras 3 left in force."""
    _ = tf.keras.layers  # resolve tf.keras to Keras 3 before tfmot can redirect it
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot
