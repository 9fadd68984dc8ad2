"""``tfprune.score``: importance scores of a model's filters or weights in one call."""

from __future__ import annotations

import inspect

import keras

from tfprune.importance.context import ScoringContext
from tfprune.importance.measure_registry import (
    ImportanceMeasure,
    check_granularity,
    get_measure,
    measure_options,
)
from tfprune.importance.scores import ImportanceScores

#: Options of ``score`` that configure the samples rather than the measure.
CONTEXT_OPTIONS = frozenset(
    name for name, p in inspect.signature(ScoringContext.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def _measure_class(measure) -> type[ImportanceMeasure]:
    if isinstance(measure, ImportanceMeasure):
        return type(measure)
    name = measure.get("name") if isinstance(measure, dict) else measure
    return type(get_measure(name))


def split_options(measure, options: dict) -> tuple[dict, dict]:
    """Splits ``score``'s options into (measure options, context options).

    ``seed`` goes to both when the measure takes one (``random``, ``uniform``).

    Raises:
        TypeError: For an option neither the measure nor the context takes.
    """
    accepted = measure_options(_measure_class(measure))
    measure_part = {k: v for k, v in options.items() if k in accepted}
    context_part = {k: v for k, v in options.items() if k in CONTEXT_OPTIONS}
    unknown = sorted(set(options) - set(measure_part) - set(context_part))
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown}; this measure takes {sorted(accepted)} and the "
            f"sampling takes {sorted(CONTEXT_OPTIONS)}."
        )
    return measure_part, context_part


def score(
    model: keras.Model, measure, data=None, *, granularity: str = "filter", **options
) -> ImportanceScores:
    """Scores every prunable filter (or weight) of a model with an importance measure.

    Args:
        model: A built Keras model. Gradient measures take its compiled loss
            (or ``loss=``; uncompiled: the paper's cross-entropy), on the logits
            under a final softmax or sigmoid.
        measure: A registered name (see ``available_measures()``), a config
            dict ``{"name": ..., ...}`` or an ``ImportanceMeasure``.
        data: ``None`` for data-free measures (magnitude, random, ...), or
            ``(x, y)`` / ``(x, y, sample_weight)`` NumPy arrays (lists or dicts
            for several inputs or outputs), a ``tf.data.Dataset`` of such tuples
            or of dicts (``data_keys``), a ``keras.utils.PyDataset``, or a
            ``tfprune.data.DataBundle``.
        granularity: ``"filter"``: a 1-D array per layer with one score per
            output filter; ``"weight"``: an array of the kernel's shape.
        **options: Measure options (``temperature``; ``seed`` of random and
            uniform; ``use_distance_from_init`` of proposed) and sampling
            options: ``num_samples`` (g, default 2560), ``samples_per_class``
            (Hg memory, default 10), ``batch_size``, ``hessian_batch_size``,
            ``seed``, ``initial_weights``, ``include_output_layers``,
            ``batchnorm``, ``loss`` / ``loss_weights`` (instead of the compiled
            loss), ``data_keys`` (dict datasets).

    Returns:
        ``ImportanceScores``, a dict ``{layer_name: numpy array}`` of the
        prunable layers (classifier outputs excluded) that also records the
        measure, granularity and sample counts and can ``save``/``load``.

    Raises:
        ValueError: For an unknown measure, bad granularity, missing data, or
            NaN/Inf scores (naming the layer).
        TypeError: For an option nobody takes.

    Example:
        >>> scores = tfprune.score(model, "magnitude")
        >>> scores = tfprune.score(model, "grasp", (x, y), temperature=200, samples_per_class=10)
    """
    check_granularity(granularity)
    measure_part, context_part = split_options(measure, options)
    resolved = get_measure(measure, **measure_part)
    context = ScoringContext(model, data, **context_part)
    return resolved.score(context, granularity)
