"""How degenerate BatchNorm's inference mode is early in training, and what recalibration does.

keras.applications MobileNetV2 (32x32, weights=None, BN momentum 0.99) trained 2 epochs on
500 CIFAR-10 images per class (../shared); then the logits' spread in inference and in
training mode, and the fraction of ``proposed`` scores that are exactly 0 with BN in
inference mode, recalibrated, and as ``batchnorm="auto"`` decides (docs/guides/scoring.md).

Usage: python scripts/measure_batchnorm.py
"""

import keras
import numpy as np

import tfprune
from tfprune.data import load_data
from tfprune.importance.batchnorm import inference_spread
from tfprune.importance.logits import logits_function


def zero_fraction(scores) -> float:
    values = np.concatenate([np.ravel(a) for a in scores.values()])
    return float(np.mean(values == 0))


def main():
    data = load_data("../shared/datasets/cifar10-jpeg.zip", train_per_class=500,
                     test_per_class=50, batch_size=128)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(data.train_dataset(), epochs=2, verbose=2)
    images = next(iter(data.train_dataset()))[0].numpy()
    inference, training = inference_spread(model, logits_function(model), images)
    print(f"logit spread: inference mode {inference:.3g}, batch statistics {training:.3g}")
    for mode in ("inference", "recalibrate", "auto"):
        scores = tfprune.score(model, "proposed", data, num_samples=512, batchnorm=mode)
        print(f"batchnorm={mode}: {zero_fraction(scores):.1%} of scores exactly 0 "
              f"({scores.metadata['batchnorm']})")


if __name__ == "__main__":
    main()
