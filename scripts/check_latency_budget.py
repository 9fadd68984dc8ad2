"""Does a latency budget land within 10% under when the slimmed model is re-measured?

VGG-13 at width 1.0 (CIFAR-10 shapes, weights at initialization), a budget of
half its measured LiteRT batch-1 latency (one thread), planned with magnitude
scores (``make_plan(model, scores, {"latency_ms": L})``), then the slimmed
model re-measured three times. Run it on a quiet machine: the search holds
the budget against the timings it takes, so load inflates both.

Usage:
    python scripts/check_latency_budget.py [--fraction 0.5] [--repeats 100]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfprune  # noqa: E402
from tfprune.budget_targets import parse_budget  # noqa: E402
from tfprune.pruning.stats import flops  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.5, help="of the dense latency")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = tfprune.models.build("vgg13", width_multiplier=1.0)
    budget = parse_budget({"latency_ms": 1})
    dense = budget.measure(model, repeats=args.repeats)
    limit = args.fraction * dense
    start = time.perf_counter()
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), {"latency_ms": limit})
    took = time.perf_counter() - start
    small = tfprune.slim(model, plan)
    again = [budget.measure(small, repeats=args.repeats) for _ in range(3)]
    print(f"dense {dense:.3f} ms; budget {limit:.3f} ms; plan in {took:.0f} s; FLOPs "
          f"{flops(model) / 1e6:.1f}M -> {flops(small) / 1e6:.1f}M; re-measured "
          f"{[round(a, 3) for a in again]} ms = {[round(a / limit, 3) for a in again]} of the "
          "budget")


if __name__ == "__main__":
    main()
