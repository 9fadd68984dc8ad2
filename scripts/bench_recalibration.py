"""BatchNorm recalibration: tfprune's compiled pass against the same recalibration run eagerly.

``recalibrate_batchnorm`` (scoring with ``batchnorm="recalibrate"`` or ``"auto"`` on a
degenerate model, every round of a prune run) sets each BN layer's moving statistics to the
mean batch statistics over the g samples. The reference here is the eager form it replaced:
the model called batch by batch in training mode, the momentum of the k-th batch set to
k / (k + 1). Both run alternately in one process on the same weights and batches (CIFAR-10
shapes, random inputs); the first compiled call includes its one trace.

Usage: python scripts/bench_recalibration.py [--repeats 3] [--batches 20]
"""

import argparse
import time

import keras
import numpy as np

import tfprune
from tfprune.importance.batchnorm import batch_norm_layers, recalibrate_batchnorm


def eager_recalibration(model, batches):
    layers = batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    for count, inputs in enumerate(batches, 1):
        for layer in layers:
            layer.momentum = (count - 1) / count
        model(inputs, training=True)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum


def statistics(model):
    return [np.concatenate([layer.moving_mean.numpy(), layer.moving_variance.numpy()])
            for layer in batch_norm_layers(model)]


def timed(fn, model, weights, batches):
    model.set_weights(weights)
    start = time.perf_counter()
    fn(model, batches)
    return time.perf_counter() - start, statistics(model)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(128, 32, 32, 3)).astype("float32")
               for _ in range(args.batches)]
    print("| model | eager | compiled, first call (with its trace) | compiled, later calls "
          "| eager / compiled (later) | max relative difference of the statistics |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, width in (("vgg13", 0.25), ("resnet20", 1.0)):
        keras.utils.set_random_seed(0)
        model = tfprune.models.build(name, width_multiplier=width, num_classes=10)
        weights = model.get_weights()
        first, _ = timed(recalibrate_batchnorm, model, weights, batches)
        eager, compiled = [], []
        for _ in range(args.repeats):  # alternating
            seconds, reference = timed(eager_recalibration, model, weights, batches)
            eager.append(seconds)
            seconds, ours = timed(recalibrate_batchnorm, model, weights, batches)
            compiled.append(seconds)
        difference = max(float(np.max(np.abs(a - b) / (np.abs(a) + 1e-12)))
                         for a, b in zip(reference, ours, strict=True))
        print(f"| {name} x{width} | {np.median(eager):.2f} s | {first:.2f} s | "
              f"{np.median(compiled):.2f} s | {np.median(eager) / np.median(compiled):.2f}x "
              f"| {difference:.1e} |")


if __name__ == "__main__":
    main()
