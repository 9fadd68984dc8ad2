"""Benchmark: does a FLOPs budget turn into LiteRT speed, with and without channel rounding?

For VGG-13 at width 1.0 (CIFAR-10 shapes) and keras.applications MobileNetV2
(alpha 1.0, 96x96 input, weights=None), plans a 50% FLOPs budget
(``tfprune.make_plan(model, scores, {"flops": F})``, magnitude scores) once
without rounding and once with ``round_to=8``, slims each, exports the dense
and slimmed models to float .tflite and times them side by side at batch 1
(median after warm-up) in the LiteRT interpreter with one thread.

Goal: with rounding, LiteRT speedup >= 0.9 x the FLOPs reduction.
Weights are at initialization: latency does not depend on their values.

Usage:
    python scripts/bench_budget.py [--models vgg13 mobilenet_v2] [--budget 0.5]
        [--repeats 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402
from tfprune.export.bench import bench_models, format_bench, speedups  # noqa: E402
from tfprune.pruning.stats import flops  # noqa: E402


def build(name: str) -> keras.Model:
    """The benchmark's models, built at initialization."""
    keras.utils.set_random_seed(0)
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(alpha=1.0, input_shape=(96, 96, 3),
                                              weights=None, classes=10)
    return tfprune.models.build(name, width_multiplier=1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgg13", "mobilenet_v2"])
    parser.add_argument("--budget", type=float, default=0.5, help="fraction of dense FLOPs")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
          f"FLOPs budget {args.budget:.0%} of dense, magnitude scores; median of "
          f"{args.repeats} batch-1 LiteRT runs after warm-up", flush=True)
    for name in args.models:
        dense = build(name)
        scores = tfprune.score(dense, "magnitude")
        budget = {"flops": args.budget * flops(dense)}
        models = [("dense", dense)]
        for round_to in (1, 8):
            plan = tfprune.make_plan(dense, scores, budget, round_to=round_to)
            models.append((f"slim round_to={round_to}", tfprune.slim(dense, plan)))
        rows = bench_models(models, threads=args.threads, repeats=args.repeats)
        print(f"\n{name}\n{format_bench(rows)}")
        for row, ratio in zip(rows[1:], speedups(rows)[1:], strict=True):
            for threads, speedup in ratio["litert_speedup"].items():
                share = speedup / ratio["flops_reduction"]
                print(f"{row.label}, LiteRT {threads} thread(s): speedup {speedup:.2f}x for "
                      f"{ratio['flops_reduction']:.2f}x fewer FLOPs = {share:.2f} of the FLOPs "
                      f"reduction (goal with rounding >= 0.9: "
                      f"{'met' if share >= 0.9 else 'missed'})", flush=True)


if __name__ == "__main__":
    main()
