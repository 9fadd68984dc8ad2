"""Benchmark: do FLOPs and latency budgets turn into LiteRT speed?

Part ``flops``: for VGG-13 at width 1.0 (CIFAR-10 shapes) and keras.applications MobileNetV2
(alpha 1.0, 96x96 input, weights=None), plans a 50% FLOPs budget
(``tfprune.make_plan(model, scores, {"flops": F})``, magnitude scores) once
without rounding and once with ``round_to=8``, slims each, exports the dense
and slimmed models to float .tflite and times them side by side at batch 1
(median after warm-up) in the LiteRT interpreter with one thread.

Goal: with rounding, LiteRT speedup >= 0.9 x the FLOPs reduction.

Part ``latency``: for the same models, plans a budget of half the dense
model's measured LiteRT latency (``{"latency_ms": L, "ranking": r}``,
``round_to=8``) with channels ranked by score per FLOP saved (``flops``) and
by the knapsack over each layer's own LiteRT time (``latency``), and times
the dense and both slimmed models side by side. Goals for the latency-ranked
plan: measured within 5% under the budget; at equal measured latency, at
least the FLOPs-ranked plan's parameters and FLOPs.

Weights are at initialization: latency does not depend on their values.

Usage:
    python scripts/bench_budget.py [--parts flops latency] [--models vgg13 mobilenet_v2]
        [--budget 0.5] [--repeats 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402
from tfprune.budget_targets import parse_budget  # noqa: E402
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
    parser.add_argument("--parts", nargs="+", default=["flops", "latency"],
                        choices=["flops", "latency"])
    parser.add_argument("--models", nargs="+", default=["vgg13", "mobilenet_v2"])
    parser.add_argument("--budget", type=float, default=0.5,
                        help="fraction of dense FLOPs (part flops) or latency (part latency)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
          f"budget {args.budget:.0%} of dense, magnitude scores; median of "
          f"{args.repeats} batch-1 LiteRT runs after warm-up", flush=True)
    if "flops" in args.parts:
        flops_part(args)
    if "latency" in args.parts:
        latency_part(args)


def latency_part(args):
    """Half the dense latency, planned by FLOPs ranking and by latency ranking."""
    threads = args.threads[0]
    for name in args.models:
        dense = build(name)
        scores = tfprune.score(dense, "magnitude")
        meter = parse_budget({"latency_ms": 1, "threads": threads})
        # The budget's own measurement (the quickest median of 3 LiteRT interpreters), as the
        # search measures its plans; each slimmed model is measured again the same way below.
        limit = args.budget * meter.measure(dense, repeats=args.repeats)
        print(f"\n{name}: latency budget {limit:.3f} ms ({args.budget:.0%} of the dense "
              f"model's), round_to=8, {threads} thread(s)", flush=True)
        models = [("dense", dense)]
        for ranking in ("flops", "latency"):
            started = time.perf_counter()
            plan = tfprune.make_plan(dense, scores, {"latency_ms": limit, "threads": threads,
                                                     "ranking": ranking}, round_to=8)
            print(f"{ranking}-ranked plan made in {time.perf_counter() - started:.0f} s",
                  flush=True)
            models.append((f"{ranking}-ranked", tfprune.slim(dense, plan)))
        rows = bench_models(models, threads=[threads], repeats=args.repeats)
        print(format_bench(rows))
        for label, model in models[1:]:
            measured = meter.measure(model, repeats=args.repeats)
            print(f"{label}: {measured:.3f} ms = {measured / limit:.3f} of the budget "
                  f"(goal 0.95-1.00), {flops(model) / 1e6:.1f} MFLOPs, "
                  f"{model.count_params():,} parameters", flush=True)


def flops_part(args):
    """A FLOPs budget, without and with rounding."""
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
