"""Every keras.applications model through tfprune end to end (docs/guides/models.md).

For each model of the installed Keras, built with weights=None, classes=10,
logits out (classifier_activation=None) and its smallest input: BN statistics
from real CIFAR-10 images (../shared), channel groups, magnitude and snip
scores, a plan removing 40% of the channels, a masked clone, slim, the
slimmed-vs-masked output difference relative to the output's scale, and a
float .tflite export run in LiteRT. Prints a Markdown table; exits 1 if any
model fails. ``--float64`` builds the models in float64 (no LiteRT export): deep
untrained networks amplify float32 round-off, and float64 separates that from a
pruning error.

Each model runs in its own process, so memory (tens of GB over the largest
models in one process) is returned between models.

Usage:
    python scripts/check_models.py [NAME ...] [--images 32] [--no-tflite] [--float64]
"""

import argparse
import sys
import traceback

import keras
import numpy as np

from tfprune.check import check_model

#: Inputs smaller than 32x32 are refused by these models; the rest take 32x32.
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
SHARED = "../shared/datasets/cifar10-jpeg.zip"


def application_names() -> list[str]:
    return sorted(name for name, builder in vars(keras.applications).items()
                  if callable(builder) and name[0].isupper())


def build(name: str) -> keras.Model:
    size = MIN_SIZE.get(name, 32)
    return getattr(keras.applications, name)(weights=None, classes=10, input_shape=(size, size, 3),
                                             classifier_activation=None)


def real_images(count: int, size: int):
    from tfprune.data import load_data

    data = load_data(SHARED, test_per_class=max(1, count // 10), train_per_class=1)
    images = data.test_split.images[:count].astype("float32")
    if size != images.shape[1]:
        images = keras.ops.convert_to_numpy(keras.ops.image.resize(images, (size, size)))
    return images / 127.5 - 1.0, data.test_split.labels[:count]


def dense_litert_error(model, images) -> float:
    """LiteRT vs Keras on the model as it is (no pruning), relative to the output's scale."""
    import tempfile
    from pathlib import Path

    from tfprune.export.tflite import export_tflite, run_tflite

    expected = np.asarray(model(images[:4], training=False))
    with tempfile.TemporaryDirectory() as folder:
        actual = run_tflite(export_tflite(model, Path(folder) / "dense.tflite"), images[:4])
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def main() -> int:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="keras.applications names (default: all)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--no-tflite", action="store_true")
    parser.add_argument("--float64", action="store_true",
                        help="build the models in float64 and skip the LiteRT export")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dense-litert", action="store_true",
                        help="also export the unpruned model and report its own LiteRT error "
                             "(how much LiteRT's float kernels differ from Keras on this model)")
    args = parser.parse_args()
    if args.float64:
        keras.config.set_floatx("float64")
    names = args.names or application_names()
    if not args.one:
        print("| model | groups | params | slimmed | slim error | LiteRT error | s | result |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
        options = [arg for arg in sys.argv[1:] if arg not in names]
        failed = 0
        for name in names:
            child = subprocess.run([sys.executable, __file__, name, "--one", *options],
                                   stdout=subprocess.PIPE, text=True)
            row = child.stdout.strip() or (f"| {name} | | | | | | | FAIL: the process ended "
                                           f"with code {child.returncode} |")
            print(row, flush=True)
            failed += child.returncode != 0
        return 1 if failed else 0
    failed = 0
    for name in names:
        try:
            model = build(name)
            images, labels = real_images(args.images, int(model.inputs[0].shape[1]))
            check = check_model(model, images.astype(keras.config.floatx()), labels,
                                tflite=not (args.no_tflite or args.float64))
            result = "pass" if check.passed else "FAIL"
            if args.dense_litert:
                error = dense_litert_error(model, images)
                result += f" (dense model's own LiteRT error {error:.1e})"
            print(f"| {name} | {check.groups} | {check.params_before:,} | "
                  f"{check.params_after:,} | {check.slim_error:.1e} | {check.tflite_error:.1e} | "
                  f"{check.seconds:.0f} | {result} |", flush=True)
        except Exception as error:  # one model's failure must not hide the others'
            result = "FAIL"
            message = str(error).splitlines()[0][:120]
            print(f"| {name} | | | | | | | FAIL: {type(error).__name__}: {message} |",
                  flush=True)
            traceback.print_exc(file=sys.stderr)
        failed += result != "pass"
        keras.backend.clear_session()
    return 1 if failed else 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
