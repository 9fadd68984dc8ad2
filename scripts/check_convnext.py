"""keras.applications' ConvNeXtTiny (LayerNormalization over channels, softmax output) end to end.

Random weights with its norms and layer scales moved off their initial values
(so they matter), 8 random 32x32 images: channel groups, snip scores on the
logits under its softmax, a plan removing 30%, slim (its LayerNormalizations
that lose channels become ``KeptChannelsLayerNormalization``), the slimmed
model against the masked one, and the slimmed model in LiteRT.

Usage:
    python scripts/check_convnext.py
"""

import time

import keras
import numpy as np

import tfprune
from tfprune.export.tflite import export_tflite, run_tflite


def main() -> None:
    keras.utils.set_random_seed(0)
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if any(part in variable.path for part in ("layer_norm", "layer_scale", "gamma", "beta")):
            variable.assign(rng.normal(0.5, 0.4, variable.shape))
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 10
    started = time.perf_counter()
    scores = tfprune.score(model, "snip", (x, y), num_samples=8, samples_per_class=1)
    plan = tfprune.make_plan(model, scores, 0.3)
    small = tfprune.slim(model, plan)
    saved = model.get_weights()
    tfprune.apply_plan(model, plan)
    expected = np.asarray(model(x))
    model.set_weights(saved)
    actual = np.asarray(small(x))
    norms = sum(type(layer).__name__ == "KeptChannelsLayerNormalization" for layer in small.layers)
    path = export_tflite(small, "runs/check_convnext/small.tflite")
    lite = run_tflite(path, x[:2])
    print(f"{len(tfprune.channel_groups(model))} groups; {plan.fraction_removed:.1%} removed; "
          f"params {model.count_params():,} -> {small.count_params():,}; "
          f"{norms} KeptChannelsLayerNormalization layers")
    print(f"slimmed vs masked: max abs diff {np.abs(actual - expected).max():.2e} "
          f"(outputs up to {np.abs(expected).max():.3f}); LiteRT vs slimmed: "
          f"{np.abs(lite - actual[:2]).max():.2e}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
