"""Benchmark: the cost of pruning inside model.fit, measured side by side in one process.

1. Mask overhead: one epoch of ``model.fit`` with the mask constraints of a
   50% plan in force vs the same epoch of plain ``model.fit`` on an identical
   copy (same weights, the same channels zeroed once by ``apply_plan``, same
   data), alternating runs, median. Target: <= 5% overhead.
2. Scoring per round as a fraction of one training epoch, for the reduced
   configs' setting (width 0.25, 2,000 training images per epoch, 512 samples
   for g, 10 per class for Hg), per measure.

Images are random normal with CIFAR-10 shapes; timing does not depend on them.

Usage:
    python scripts/bench_pruning.py [--models vgg13 resnet56] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402
from tfprune.pruning import MaskEnforcer  # noqa: E402

MEASURES = ("magnitude", "proposed", "grasp", "grasp_abs")


def compiled(name, width):
    keras.utils.set_random_seed(0)
    model = tfprune.models.build(name, width_multiplier=width, weight_decay=1e-4)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def epoch_seconds(model, dataset):
    started = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    return time.perf_counter() - started


def bench_masks(name, width, dataset, repeats):
    plain, masked = compiled(name, width), compiled(name, width)
    plan = tfprune.make_plan(masked, tfprune.score(masked, "random"), 0.5)
    tfprune.apply_plan(plain, plan)
    enforcer = MaskEnforcer(masked)
    enforcer.install()
    enforcer.update(plan)
    masked.make_train_function(force=True)
    epoch_seconds(plain, dataset), epoch_seconds(masked, dataset)  # warm-up: traces both
    plain_runs, masked_runs = [], []
    for _ in range(repeats):
        plain_runs.append(epoch_seconds(plain, dataset))
        masked_runs.append(epoch_seconds(masked, dataset))
    base, with_masks = statistics.median(plain_runs), statistics.median(masked_runs)
    print(f"  masks:   plain epoch {base:6.2f} s, masked epoch {with_masks:6.2f} s, "
          f"overhead {100 * (with_masks / base - 1):+5.1f}% (target <= 5%)", flush=True)


def bench_scoring(name, width, dataset, arrays, repeats):
    model = compiled(name, width)
    epoch_seconds(model, dataset)
    epoch = statistics.median(epoch_seconds(model, dataset) for _ in range(repeats))
    print(f"  scoring: one epoch of 2,000 images {epoch:6.2f} s", flush=True)
    for measure in MEASURES:
        options = {"num_samples": 512, "samples_per_class": 10}
        tfprune.score(model, measure, arrays, **options)  # warm-up: traces
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            tfprune.score(model, measure, arrays, **options)
            runs.append(time.perf_counter() - started)
        seconds = statistics.median(runs)
        print(f"    {measure:<10} {seconds:6.2f} s per round = {seconds / epoch:6.1%} of an epoch",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgg13", "resnet56"])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32, 32, 3)).astype(np.float32)
    y = (np.arange(2000) % 10).astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).cache()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
          f"batch 128, 2,000 images per epoch; median of {args.repeats} runs after warm-up")
    for name in args.models:
        print(f"{name} width {args.width}:", flush=True)
        bench_masks(name, args.width, dataset, args.repeats)
        bench_scoring(name, args.width, dataset, (x, y), args.repeats)


if __name__ == "__main__":
    main()
