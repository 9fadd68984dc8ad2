"""Benchmark: the cost of importance scoring relative to one plain gradient pass.

For VGG-13 on CIFAR-10 shapes (32x32x3, 10 classes) at each width, measures
side by side in one process, alternating the runs:

- g-based scoring (``tfprune.score(model, "snip", ...)``, default 2560
  samples) against one plain gradient pass over the same samples and batches;
- Hg-based scoring with the defaults (``tfprune.score(model, "grasp", ...)``,
  memory of 10 per class, all 100 samples in one fused nested pass) against a
  plain gradient pass over the memory in one batch;
- the same with the reference code's batching (``hessian_batch_size=10``: one
  class per batch) against a plain gradient pass over the same class batches;
- (``--parts bn_mode``) the default Hg-based scoring (``batchnorm="auto"``,
  which checks BatchNorm's inference mode first) against ``batchnorm="inference"``
  (target: within 10%);
- (``--parts torch``) the default ``score(model, "grasp", samples_per_class=10,
  num_samples=100)`` and its ``batchnorm="inference"`` variant against the same
  computation in PyTorch (``scripts/torch_twin.py``, run by ``--torch-python``,
  by default ``.venv-bench/bin/python`` from ``bash scripts/setup_bench_env.sh``),
  alternating the two processes, the same thread count each (target: <= 0.7x);

and the peak resident-memory increase of each phase. Targets: g-based <= 1.2x,
Hg-based <= 3.0x. The images are random normal (timing does not depend on
their content); the models and batch shapes are CIFAR-10's.

Usage:
    python scripts/bench_importance.py [--widths 0.25 1.0] [--repeats 3]
        [--parts g hg hg_per_class bn_mode torch] [--torch-python PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class PeakMemory:
    """Samples the resident set size in a thread; ``increase`` is peak minus start."""

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.increase = self.peak - self.start


def plain_gradient_pass(model):
    """One traced gradient step per batch (BN in inference mode), summed: the baseline."""
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, model(images, training=False), from_logits=True))
        return tape.gradient(loss, variables)

    def run(batches):
        total = None
        for images, labels in batches:
            grads = step(tf.constant(images), tf.constant(labels))
            total = grads if total is None else [t + g for t, g in zip(total, grads, strict=True)]
        return [t.numpy() for t in total]

    return run


def timed(fn):
    with PeakMemory() as memory:
        started = time.perf_counter()
        fn()
        seconds = time.perf_counter() - started
    return seconds, memory.increase


def compare(label, baseline, scoring, repeats):
    baseline(), scoring()  # warm-up: traces both
    base_runs, score_runs = [], []
    for _ in range(repeats):
        base_runs.append(timed(baseline))
        score_runs.append(timed(scoring))
    base = statistics.median(s for s, _ in base_runs)
    score = statistics.median(s for s, _ in score_runs)
    base_mem = max(m for _, m in base_runs) / 2**20
    score_mem = max(m for _, m in score_runs) / 2**20
    print(f"  {label:<9} plain pass {base:8.2f} s   scoring {score:8.2f} s   "
          f"ratio {score / base:5.2f}x   peak +RSS: plain {base_mem:7.1f} MiB, "
          f"scoring {score_mem:7.1f} MiB", flush=True)
    return score / base


def compare_with_torch(model, width, x, y, args):
    """tfprune's default GraSP scoring and its inference-BN variant against the PyTorch twin."""
    twin = subprocess.Popen(
        [args.torch_python, str(Path(__file__).with_name("torch_twin.py")), "--width",
         str(width), "--samples-per-class", str(args.samples_per_class), "--num-samples", "100",
         "--threads", str(args.threads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = twin.stdout.readline().strip()
    if not ready.startswith("ready"):
        raise SystemExit(f"the PyTorch twin did not start ({args.torch_python}); run "
                         "bash scripts/setup_bench_env.sh first")

    def torch_run():
        twin.stdin.write("run\n")
        twin.stdin.flush()
        return float(twin.stdout.readline())

    def tfprune_run(**options):
        started = time.perf_counter()
        tfprune.score(model, "grasp", (x, y), samples_per_class=args.samples_per_class,
                      num_samples=100, **options)
        return time.perf_counter() - started

    tfprune_run(), tfprune_run(batchnorm="inference")  # warm-up: traces
    times = {"default": [], "inference": [], "torch": []}
    for _ in range(args.repeats):
        times["default"].append(tfprune_run())
        times["inference"].append(tfprune_run(batchnorm="inference"))
        times["torch"].append(torch_run())
    twin.stdin.close()
    twin.wait(timeout=60)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"  vs torch  tfprune default {median['default']:.3f} s, batchnorm=inference "
          f"{median['inference']:.3f} s, PyTorch ({ready[6:]}) {median['torch']:.3f} s; "
          f"default / PyTorch {median['default'] / median['torch']:.2f}x, inference / PyTorch "
          f"{median['inference'] / median['torch']:.2f}x", flush=True)
    return median["default"] / median["torch"]


def bench_width(width, args):
    keras.utils.set_random_seed(0)
    model = tfprune.models.build("vgg13", width_multiplier=width)
    rng = np.random.default_rng(0)
    n = args.num_samples
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    y = (np.arange(n) % 10).astype(np.int64)
    per_class = args.samples_per_class
    print(f"VGG-13 width {width}: {model.count_params():,} params; g over {n} samples "
          f"(batches of {args.batch_size}), Hg over a memory of {10 * per_class}",
          flush=True)
    plain = plain_gradient_pass(model)
    order = np.random.default_rng(0).permutation(n)  # the samples score() draws with seed 0
    stream = [(x[order[i:i + args.batch_size]], y[order[i:i + args.batch_size]])
              for i in range(0, n, args.batch_size)]
    memory_idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    memory = [(x[memory_idx[i:i + per_class]], y[memory_idx[i:i + per_class]])
              for i in range(0, len(memory_idx), per_class)]
    ratios = {}
    if "g" in args.parts:
        ratios["g"] = compare(
            "g-based", lambda: plain(stream),
            lambda: tfprune.score(model, "snip", (x, y), num_samples=n,
                                  batch_size=args.batch_size),
            args.repeats,
        )
    if "hg" in args.parts:
        whole = [(x[memory_idx], y[memory_idx])]
        ratios["hg"] = compare(
            "Hg-based", lambda: plain(whole),
            lambda: tfprune.score(model, "grasp", (x, y), samples_per_class=per_class),
            args.repeats,
        )
    if "bn_mode" in args.parts:  # the default's BatchNorm-mode check against its skipping
        ratios["bn_mode"] = compare(
            "auto/inf", lambda: tfprune.score(model, "grasp", (x, y), samples_per_class=per_class,
                                              batchnorm="inference"),
            lambda: tfprune.score(model, "grasp", (x, y), samples_per_class=per_class),
            args.repeats,
        )
    if "torch" in args.parts:
        ratios["torch"] = compare_with_torch(model, width, x, y, args)
    if "hg_per_class" in args.parts:
        ratios["hg_per_class"] = compare(
            "Hg/class", lambda: plain(memory),
            lambda: tfprune.score(model, "grasp", (x, y), samples_per_class=per_class,
                                  hessian_batch_size=per_class),
            args.repeats,
        )
    return ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--num-samples", type=int, default=2560)
    parser.add_argument("--samples-per-class", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=["g", "hg", "hg_per_class"],
                        choices=["g", "hg", "hg_per_class", "bn_mode", "torch"])
    parser.add_argument("--torch-python", default=".venv-bench/bin/python",
                        help="the Python of the environment with PyTorch (for --parts torch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for TensorFlow and PyTorch alike")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPU cores; median of {args.repeats} alternating runs after warm-up")
    targets = {"g": 1.2, "hg": 3.0, "hg_per_class": 3.0, "bn_mode": 1.1, "torch": 0.7}
    for width in args.widths:
        ratios = bench_width(width, args)
        verdicts = [f"{part} {ratio:.2f}x <= {targets[part]}x "
                    f"{'met' if ratio <= targets[part] else 'MISSED'}"
                    for part, ratio in ratios.items()]
        print("  targets: " + "; ".join(verdicts), flush=True)


if __name__ == "__main__":
    main()
