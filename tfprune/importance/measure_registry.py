"""The ``ImportanceMeasure`` base class and the measure registry.

A measure turns a ``LayerView`` (kernel, g, Hg, initial kernel, BN) into one
score per filter or per kernel element; higher means more important. Measures
are registered by a short name usable in configs and on the command line, and
serialize as ``{"name": ..., **get_config()}``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from tfprune.importance.scores import ImportanceScores, ScoringError, check_finite

GRANULARITIES = ("filter", "weight")

#: Short name -> measure class.
MEASURES: dict[str, type[ImportanceMeasure]] = {}


class ImportanceMeasure:
    """Base class of importance measures.

    Subclasses set ``name`` and ``requires`` and implement ``weight_scores``;
    the filter score defaults to the sum of the weight scores over the filter's
    kernel elements. Override ``filter_scores`` where the filter-level formula
    is not that sum (e.g. |Theta_p^T g| takes the absolute value after summing).

    Attributes:
        name: The registered short name.
        requires: What the measure reads besides the kernel: any of
            ``"gradient"``, ``"hessian_gradient"``, ``"activations"``,
            ``"initial_weights"``, ``"batch_norm"``. Checked before any
            gradient pass starts.
        granularities: The granularities it supports.
        uses_training_temperature: Its g is the training loss's gradient, so
            configs and the CLI default its temperature to the training one.
        group_reduction: If set, how ``make_plan`` combines the scores of a
            channel group's source layers, whatever reduction it is asked for.
            Random draws set ``"first"``: a group fed by several layers (a
            ResNet residual stream) gets one draw, as any other group, instead
            of a sum of draws that would rank it above every single-layer group.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset] = frozenset()
    granularities: ClassVar[tuple] = GRANULARITIES
    uses_training_temperature: ClassVar[bool] = False
    group_reduction: ClassVar[str | None] = None
    #: The loss temperature of g / Hg; measures reading no gradient ignore it.
    temperature: float = 1.0

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serializable."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> ImportanceMeasure:
        """Rebuilds the measure from ``get_config()``."""
        return cls(**config)

    def weight_scores(self, view) -> np.ndarray:
        """One score per kernel element (the kernel's shape)."""
        raise NotImplementedError(f"measure {self.name!r} has no per-weight scores.")

    def filter_scores(self, view) -> np.ndarray:
        """One score per filter: by default the sum of the filter's weight scores."""
        return view.by_filter(self.weight_scores(view)).sum(axis=0)

    def layer_scores(self, view, granularity: str) -> np.ndarray:
        """Scores of one layer at a granularity, as float64."""
        if granularity == "filter":
            return np.asarray(self.filter_scores(view), dtype=np.float64)
        return np.asarray(self.weight_scores(view), dtype=np.float64)

    def check(self, context, granularity: str) -> None:
        """Raises before any long work if the context cannot serve this measure."""
        check_granularity(granularity)
        if granularity not in self.granularities:
            raise ScoringError(
                f"measure {self.name!r} supports granularity {list(self.granularities)}, "
                f"not {granularity!r}."
            )
        if self.requires & {"gradient", "hessian_gradient", "activations"}:
            context._require_data(f"measure {self.name!r}")
        if "initial_weights" in self.requires:
            for layer in context.layers:
                context.initial_kernel(layer)
        if "batch_norm" in self.requires:
            for layer in context.layers:
                context.view(layer).batch_norm  # noqa: B018 - raises naming the layer

    def score(self, context, granularity: str = "filter") -> ImportanceScores:
        """Scores every prunable layer of the context's model.

        Args:
            context: A ``ScoringContext``.
            granularity: ``"filter"`` (one score per output channel) or
                ``"weight"`` (one per kernel element).

        Returns:
            ``ImportanceScores`` keyed by layer name, in graph order.

        Raises:
            NonFiniteScoreError: If a layer's scores hold NaN or Inf.
            ValueError: If the model, data or granularity cannot serve the measure.
        """
        self.check(context, granularity)
        started = time.perf_counter()
        scores = {}
        for layer in context.layers:
            if layer.parts and granularity == "weight":
                continue  # a unit over several kernels (heads) has no kernel to mask
            values = self.layer_scores(context.view(layer, self.temperature), granularity)
            check_finite(self.name, layer.name, values)
            scores[layer.name] = values
        metadata = {"seconds": round(time.perf_counter() - started, 3),
                    "samples": dict(context.samples_used), "seed": context.seed,
                    "batchnorm": context.batchnorm_used}
        if context.loss_used is not None:
            metadata["loss"] = context.loss_used
        if self.group_reduction is not None:
            metadata["group_reduction"] = self.group_reduction
        return ImportanceScores(scores, serialize_measure(self), granularity, metadata)


def check_granularity(granularity: str) -> None:
    """Raises ValueError unless ``granularity`` is ``"filter"`` or ``"weight"``."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {list(GRANULARITIES)}, got {granularity!r}.")


class FunctionMeasure(ImportanceMeasure):
    """Wraps a plain function ``fn(view) -> array`` registered with ``register_measure``.

    The function returns per-weight scores (the kernel's shape), summed over
    each filter at filter granularity, or a 1-D array with one score per
    filter, used as is (and then only filter granularity is possible).
    """

    function: ClassVar[Callable] = None
    uses_training_temperature = True

    def __init__(self, temperature: float = 1.0):
        self.temperature = float(temperature)

    def get_config(self) -> dict:
        """The loss temperature the function's ``view.gradient`` is read at."""
        return {"temperature": self.temperature}

    def weight_scores(self, view) -> np.ndarray:
        """The function's per-weight scores; their shape must be the kernel's."""
        values = np.asarray(type(self).function(view))
        if values.shape != view.layer.shape:
            raise ScoringError(
                f"measure {self.name!r} returned shape {values.shape} for layer {view.name!r}; "
                f"per-weight scores need the kernel's shape {view.layer.shape}."
            )
        return values

    def filter_scores(self, view) -> np.ndarray:
        """The function's per-filter scores, or its per-weight scores summed per filter."""
        values = np.asarray(type(self).function(view))
        if values.shape == (view.layer.filters,):
            return values
        return view.by_filter(self.weight_scores(view)).sum(axis=0)


def register_measure(name: str, measure=None, *, requires=(), overwrite: bool = False):
    """Registers a measure class or a plain function under a short name.

    Usable as ``register_measure("name", MyMeasure)`` or as a decorator
    ``@register_measure("name")`` on a class or a function ``fn(view) -> array``.

    Args:
        name: The short name for configs and the CLI.
        measure: An ``ImportanceMeasure`` subclass or a function of a ``LayerView``.
        requires: For a function: what it reads besides the kernel (see
            ``ImportanceMeasure.requires``), checked before scoring.
        overwrite: Replace an existing registration instead of failing.

    Returns:
        The registered class (or, as a decorator, the decorated object).
    """
    if measure is None:
        return lambda target: (register_measure(name, target, requires=requires,
                                                overwrite=overwrite), target)[1]
    if name in MEASURES and not overwrite:
        raise ValueError(f"measure {name!r} is registered already; pass overwrite=True.")
    if inspect.isclass(measure) and issubclass(measure, ImportanceMeasure):
        cls = measure
    elif callable(measure):
        cls = type(f"FunctionMeasure_{name}", (FunctionMeasure,), {
            "function": staticmethod(measure), "requires": frozenset(requires),
            "__doc__": measure.__doc__,
        })
    else:
        raise TypeError(f"register_measure: {measure!r} is neither a measure class nor callable.")
    cls.name = name
    MEASURES[name] = cls
    return cls


def available_measures() -> list[str]:
    """The registered measure names, sorted."""
    return sorted(MEASURES)


def get_measure(measure, **config) -> ImportanceMeasure:
    """Resolves a name, a config dict or an instance to a measure object.

    Args:
        measure: A registered name, ``{"name": ..., **config}``, or an
            ``ImportanceMeasure`` (returned as is, or rebuilt with ``config``).
        **config: Constructor arguments, e.g. ``temperature=200``.

    Raises:
        ValueError: For an unknown name (the message lists the valid ones).
        TypeError: For arguments the measure does not take.
    """
    if isinstance(measure, ImportanceMeasure):
        if not config:
            return measure
        return type(measure).from_config({**measure.get_config(), **config})
    if isinstance(measure, dict):
        merged = {**measure, **config}
        return get_measure(merged.pop("name", None), **merged)
    if measure not in MEASURES:
        raise ValueError(
            f"unknown importance measure {measure!r}; available: {available_measures()}. "
            "Your own: tfprune.importance.register_measure in a module, imported first "
            "(on the command line `tfprune --import MODULE ...`)."
        )
    cls = MEASURES[measure]
    accepted = measure_options(cls)
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise TypeError(
            f"measure {measure!r} takes options {sorted(accepted)}, not {unknown}."
        )
    return cls.from_config(config)


def training_measure(measure, options: dict, training_temperature: float,
                     seed: int | None = None) -> ImportanceMeasure:
    """``get_measure(measure, **options)`` with a run's defaults filled in.

    Configs and the CLI score with the training loss's temperature unless
    ``options`` sets one; GraSP-type measures keep their own defaults. Seeded
    measures (``random``, ``uniform``) take the run's ``seed`` unless ``options``
    sets one, so each seed of a study prunes a different random architecture.
    """
    resolved = get_measure(measure, **options)
    if resolved.uses_training_temperature and "temperature" not in options:
        resolved = get_measure(resolved, temperature=training_temperature)
    if seed is not None and "seed" not in options and "seed" in measure_options(type(resolved)):
        resolved = get_measure(resolved, seed=seed)
    return resolved


def measure_for_model(spec, model) -> ImportanceMeasure:
    """The measure a callback scores ``model`` with, by the rule configs and the CLI follow.

    Given by name or config dict, g-based measures without an explicit
    temperature take the one the model is compiled with
    (``tfprune.losses.TemperatureCrossEntropy``; 1 for any other loss). A
    measure object is used as it is.
    """
    from tfprune.losses import training_temperature

    if isinstance(spec, ImportanceMeasure):
        return spec
    if isinstance(spec, dict):
        name, options = spec.get("name"), {k: v for k, v in spec.items() if k != "name"}
    else:
        name, options = spec, {}
    return training_measure(name, options, training_temperature(model))


def measure_options(cls: type[ImportanceMeasure]) -> set[str]:
    """The constructor arguments a measure class accepts."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.name != "self" and p.kind in named}


def serialize_measure(measure: ImportanceMeasure) -> dict:
    """``{"name": ..., **get_config()}``: the inverse of ``get_measure(dict)``."""
    return {"name": measure.name, **measure.get_config()}
