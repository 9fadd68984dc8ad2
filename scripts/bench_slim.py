"""Benchmark: does slimming turn removed filters into real LiteRT speed and file size?

VGG-13 at width 1.0 (CIFAR-10 shapes), 75% of its prunable filters removed by
global magnitude ranking (``tfprune.make_plan``, default 5% per-layer floor),
rebuilt with ``tfprune.slim``. The dense and slimmed models are exported to
float .tflite and timed side by side at batch 1 (median after warm-up) in
Keras and in the LiteRT interpreter with 1 and 2 threads.

Targets: LiteRT speedup >= 0.7 x the FLOPs reduction factor; the .tflite file
shrinks in proportion to the parameters (size ratio within 10% of the params
ratio). Weights are at initialization: latency and size do not depend on
their values.

Usage:
    python scripts/bench_slim.py [--width 1.0] [--target 0.75] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402
from tfprune.export.bench import bench_models, format_bench, speedups  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg13")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=0.75)
    parser.add_argument("--measure", default="magnitude")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
          f"{args.model} width {args.width}, {args.target:.0%} of filters removed by "
          f"{args.measure}; median of {args.repeats} batch-1 runs after warm-up", flush=True)
    keras.utils.set_random_seed(0)
    dense = tfprune.models.build(args.model, width_multiplier=args.width)
    plan = tfprune.make_plan(dense, tfprune.score(dense, args.measure), args.target)
    slimmed = tfprune.slim(dense, plan)
    rows = bench_models([("dense", dense), ("slim", slimmed)], threads=args.threads,
                        repeats=args.repeats)
    print(format_bench(rows))
    ratio = speedups(rows)[1]
    for threads, speedup in ratio["litert_speedup"].items():
        goal = 0.7 * ratio["flops_reduction"]
        print(f"target LiteRT {threads} thread(s): speedup {speedup:.2f}x >= 0.7 x FLOPs "
              f"reduction = {goal:.2f}x: {'met' if speedup >= goal else 'MISSED'}")
    size_vs_params = ratio["size_reduction"] / ratio["params_reduction"]
    print(f"target .tflite size: shrinks {ratio['size_reduction']:.2f}x for params "
          f"{ratio['params_reduction']:.2f}x (ratio {size_vs_params:.3f}, within 10%: "
          f"{'met' if abs(size_vs_params - 1) <= 0.1 else 'MISSED'})")


if __name__ == "__main__":
    main()
