"""TensorBoard summaries of a pruning round: score histograms, kept ratios, mask images."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfprune.pruning.plan import PruningPlan


def bar_chart(values: np.ndarray, height: int = 64, bar_width: int = 4) -> np.ndarray:
    """A white-on-black bar chart of values in [0, 1] as an (height, width, 1) uint8 image."""
    values = np.clip(np.asarray(values, np.float64), 0, 1)
    image = np.zeros((height, max(len(values), 1) * bar_width, 1), np.uint8)
    for i, value in enumerate(values):
        top = height - int(round(value * height))
        image[top:, i * bar_width:(i + 1) * bar_width - 1] = 255
    return image


def mask_image(masks: list[np.ndarray], column_width: int = 4) -> np.ndarray:
    """Masks as an image: one column per group, one row per channel; kept white, removed black.

    Rows past a group's size are grey.
    """
    rows = max(mask.size for mask in masks)
    image = np.full((rows, len(masks) * column_width, 1), 96, np.uint8)
    for i, mask in enumerate(masks):
        image[:mask.size, i * column_width:(i + 1) * column_width - 1, 0] = np.where(
            mask, 255, 0)[:, None]
    return image


def write_round(writer, plan: PruningPlan, scores: dict, epoch: int,
                gradient_norms: dict | None = None) -> None:
    """Writes one round's summaries at step ``epoch``.

    Tags: ``scores/<layer>`` (histograms), ``kept_ratio/<layer>`` and
    ``pruning/kept_fraction`` (scalars), ``pruning/kept_ratio_bars`` and
    ``pruning/masks`` (images), ``gradient_norm/<layer>`` (scalars, when the
    measure computed gradients).
    """
    kept = plan.kept_per_layer()
    with writer.as_default(step=epoch):
        for name, values in scores.items():
            tf.summary.histogram(f"scores/{name}", np.asarray(values).ravel())
        for name, (left, original) in kept.items():
            tf.summary.scalar(f"kept_ratio/{name}", left / original)
        tf.summary.scalar("pruning/kept_fraction", 1 - plan.fraction_removed)
        ratios = np.array([left / original for left, original in kept.values()])
        tf.summary.image("pruning/kept_ratio_bars", bar_chart(ratios)[None])
        if plan.granularity == "filter":
            tf.summary.image("pruning/masks", mask_image(list(plan.keep.values()))[None])
        for name, norm in (gradient_norms or {}).items():
            tf.summary.scalar(f"gradient_norm/{name}", norm)
    writer.flush()
