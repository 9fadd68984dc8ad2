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


def sample_input(model: keras.Model, seed: int = 0) -> np.ndarray:
    """One random-normal float32 input of the model's shape, batch 1."""
    shape = [1, *model.inputs[0].shape[1:]]
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def keras_latency(model: keras.Model, repeats: int = 50, warmup: int = 5) -> Latency:
    """Latency of ``model`` on one image, inference mode, in a traced ``tf.function``.

    Uses TensorFlow's own thread pools (their size is fixed per process).
    """
    forward = tf.function(lambda images: model(images, training=False))
    image = tf.constant(sample_input(model))
    return _median_ms(lambda: forward(image).numpy(), repeats, warmup)


def litert_latency(path: str | os.PathLike, threads: int = 1, repeats: int = 50,
                   warmup: int = 5) -> Latency:
    """Latency of a .tflite file on one image in the LiteRT interpreter with ``threads``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    image = np.random.default_rng(0).normal(size=source["shape"]).astype(source["dtype"])

    def invoke():
        interpreter.set_tensor(source["index"], image)
        interpreter.invoke()

    return _median_ms(invoke, repeats, warmup)
