"""``check_model``: does tfprune handle this model end to end? Groups, scores, plan, slim, LiteRT.

Runs on a model what a user would: analyse its channel groups, score it with a
data-free and a gradient measure, make a plan, mask a clone, slim, compare
the slimmed model's outputs with the masked clone's, and export the slimmed
model to a float .tflite file checked in the LiteRT interpreter. The
BatchNorm statistics are first set from the given images, since at
initialization several architectures output almost nothing (1e-8) in
inference mode, where an absolute tolerance proves nothing.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import keras
import numpy as np


@dataclasses.dataclass
class ModelCheck:
    """What ``check_model`` measured.

    Attributes:
        name: The model's name.
        groups: Prunable channel groups.
        params_before / params_after: Parameters of the model and of the slimmed one.
        output_scale: Largest absolute output of the masked model.
        slim_error: Largest absolute difference, slimmed vs masked, over ``output_scale``.
        tflite_error: The same for the LiteRT float model vs the slimmed Keras model
            (nan when not exported).
        seconds: Wall time of the whole check.
    """

    name: str
    groups: int
    params_before: int
    params_after: int
    output_scale: float
    slim_error: float
    tflite_error: float
    seconds: float

    @property
    def passed(self) -> bool:
        """Fewer parameters; slim within 1e-4 and LiteRT within 1e-3 of the output's scale.

        LiteRT's float kernels (XNNPACK) fuse and order operations differently
        from TensorFlow's, so its float32 round-off is larger than slim's.
        """
        exported = math.isnan(self.tflite_error) or self.tflite_error <= 1e-3
        return self.params_after < self.params_before and self.slim_error <= 1e-4 and exported


def _relative(expected: np.ndarray, actual: np.ndarray, scale: float) -> float:
    return float(np.max(np.abs(np.asarray(actual) - np.asarray(expected))) / max(scale, 1e-30))


def check_model(model: keras.Model, images: np.ndarray, labels: np.ndarray, *,
                target: float = 0.4, measure: str = "snip", tflite: bool = True) -> ModelCheck:
    """Prunes ``model`` by ``target`` and checks masks, slim and export agree.

    Args:
        model: A model producing logits (build keras.applications models with
            ``classifier_activation=None``). Its BN statistics are overwritten.
        images: Real inputs (a batch or more) for BN statistics, scores and comparison.
        labels: Their integer labels.
        target: Fraction of prunable channels removed.
        measure: The gradient measure scored beside ``magnitude``.
        tflite: Also export the slimmed model to float TFLite and run it in LiteRT.

    Returns:
        A ``ModelCheck``; ``passed`` says whether everything agreed.
    """
    import tfprune
    from tfprune.export.model_io import named_outputs
    from tfprune.export.tflite import export_tflite, run_tflite_for
    from tfprune.importance.batchnorm import recalibrate_batchnorm
    from tfprune.precision import float32_model

    started = time.perf_counter()
    recalibrate_batchnorm(model, [images])
    groups = tfprune.channel_groups(model)
    tfprune.score(model, "magnitude")
    scores = tfprune.score(model, measure, (images, labels), num_samples=len(images),
                           batch_size=len(images))
    plan = tfprune.make_plan(model, scores, target)
    slimmed = tfprune.slim(model, plan)
    actual = named_outputs(slimmed, slimmed(images, training=False))
    weights = model.get_weights()  # masked in place, not on a clone: a clone of custom
    tfprune.apply_plan(model, plan)  # layers names their sublayers anew
    expected = named_outputs(model, model(images, training=False))
    model.set_weights(weights)
    scale = max(float(np.max(np.abs(value))) for value in expected.values())
    tflite_error = float("nan")
    if tflite:
        first = keras.tree.map_structure(lambda array: array[:4], images)
        with tempfile.TemporaryDirectory() as folder:
            path = export_tflite(slimmed, Path(folder) / "slim.tflite")
            lite = run_tflite_for(path, slimmed, first)
        reference = float32_model(slimmed)  # what the file computes (mixed precision: float32)
        written = named_outputs(reference, reference(first, training=False))
        tflite_error = max(_relative(written[name], lite[name], scale) for name in written)
    slim_error = max(_relative(expected[name], actual[name], scale) for name in expected)
    return ModelCheck(model.name, len(groups), int(model.count_params()),
                      int(slimmed.count_params()), scale, slim_error,
                      tflite_error, round(time.perf_counter() - started, 1))
