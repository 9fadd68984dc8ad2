"""Batch-1 inference latency of Keras models and .tflite files (median after warm-up)."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfprune.export.model_io import random_array, random_inputs
from tfprune.export.tflite import litert_interpreter


@dataclasses.dataclass
class Latency:
    """Median wall time of one batch-1 inference.

    Attributes:
        median_ms: Median over the timed runs, in milliseconds.
        runs: How many timed runs (after warm-up).
    """

    median_ms: float
    runs: int


def _median_ms(call: Callable[[], object], repeats: int, warmup: int) -> Latency:
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return Latency(median_ms=1000 * statistics.median(times), runs=repeats)


def keras_latency(model: keras.Model, repeats: int = 50, warmup: int = 5) -> Latency:
    """Latency of ``model`` on one image, inference mode, in a traced ``tf.function``.

    Uses TensorFlow's own thread pools (their size is fixed per process).
    """
    forward = tf.function(lambda inputs: model(inputs, training=False))
    inputs = keras.tree.map_structure(tf.constant, random_inputs(model, 1))
    return _median_ms(lambda: keras.tree.map_structure(np.asarray, forward(inputs)), repeats,
                      warmup)


def litert_latency(path: str | os.PathLike, threads: int = 1, repeats: int = 50,
                   warmup: int = 5) -> Latency:
    """Latency of a .tflite file on one example in the LiteRT interpreter with ``threads``.

    Every input gets random values of its shape and dtype (``model_io.random_array``).
    """
    interpreter = litert_interpreter(path, threads)
    rng = np.random.default_rng(0)
    feeds = [(source["index"], random_array(source["shape"], source["dtype"], rng))
             for source in interpreter.get_input_details()]

    def invoke():
        for index, array in feeds:
            interpreter.set_tensor(index, array)
        interpreter.invoke()

    return _median_ms(invoke, repeats, warmup)
