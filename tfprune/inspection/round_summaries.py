"""TensorBoard summaries of a pruning round: labelled figures, score histograms, a table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from tfprune.inspection import round_figures as figures

if TYPE_CHECKING:  # the inspection layer sits below the pruning core
    from tfprune.pruning.plan import PruningPlan


def write_round(writer, plan: PruningPlan, scores: dict, epoch: int,
                gradient_norms: dict | None = None, *, previous: PruningPlan | None = None,
                layer_table: dict | None = None) -> None:
    """Writes one round's summaries at step ``epoch``.

    Images (``tfprune.inspection.round_figures``, paged for large models):
    ``pruning/kept_fraction`` (kept fraction per layer, the target as a line),
    ``pruning/masks`` (structured plans: kept / removed before / removed now per
    channel group) and ``pruning/scores`` (per-layer score distributions).
    Text: ``pruning/summary`` (a Markdown table per layer). Scalars:
    ``kept_ratio/<layer>``, ``pruning/kept_total`` and ``gradient_norm/<layer>``
    (when the measure computed gradients). Histograms: ``scores/<layer>``.

    Args:
        writer: A ``tf.summary`` file writer.
        plan: The round's plan.
        scores: The scores it was made from.
        epoch: The step.
        gradient_norms: ``{layer: norm}`` or None.
        previous: The plan before this round (colours "removed now").
        layer_table: ``tfprune.pruning.stats.layer_table(model, plan)``, for the
            text table's params and FLOPs.
    """
    kept = plan.kept_per_layer()
    if layer_table is not None:  # the model's order, input to output
        order = {name: index for index, name in enumerate(layer_table)}
        kept = dict(sorted(kept.items(), key=lambda item: order.get(item[0], len(order))))
    target = plan.history[-1]["target"] if plan.history else plan.fraction_removed
    if isinstance(target, dict):  # a budget: draw the fraction it came to
        target = plan.fraction_removed
    with writer.as_default(step=epoch):
        for name, values in scores.items():
            tf.summary.histogram(f"scores/{name}", np.asarray(values).ravel())
        for name, (left, original) in kept.items():
            tf.summary.scalar(f"kept_ratio/{name}", left / original)
        tf.summary.scalar("pruning/kept_total", 1 - plan.fraction_removed)
        pages = figures.kept_fraction_figure(kept, target, epoch)
        tf.summary.image("pruning/kept_fraction", pages, max_outputs=len(pages))
        if plan.granularity == "filter":
            pages = figures.mask_figure(plan.groups, plan.keep,
                                        previous.keep if previous else None, epoch)
            tf.summary.image("pruning/masks", pages, max_outputs=len(pages))
        pages = figures.scores_figure(scores, epoch)
        tf.summary.image("pruning/scores", pages, max_outputs=len(pages))
        tf.summary.text("pruning/summary", figures.summary_markdown(kept, scores, layer_table))
        for name, norm in (gradient_norms or {}).items():
            tf.summary.scalar(f"gradient_norm/{name}", norm)
    writer.flush()
