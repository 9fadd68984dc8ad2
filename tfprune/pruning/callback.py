"""``PruningCallback``: scores, ranks, masks and logs at the end of each pruning round."""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfprune.importance import ScoringContext, get_measure, prunable_layers
from tfprune.importance.measure import measure_for_model
from tfprune.pruning.groups import channel_groups
from tfprune.pruning.masks import MaskEnforcer
from tfprune.pruning.plan import PruningPlan, make_plan
from tfprune.pruning.stats import layer_table
from tfprune.pruning.summaries import write_round

_PLAN_FILE = re.compile(r"epoch_(\d+)\.json$")


def plan_files(plan_dir: str | os.PathLike) -> dict[int, Path]:
    """``{epoch: path}`` of the plans saved in a folder by ``PruningCallback``."""
    found = {}
    for path in Path(plan_dir).glob("epoch_*.json"):
        match = _PLAN_FILE.search(path.name)
        if match:
            found[int(match.group(1))] = path.with_suffix(".npz")
    return dict(sorted(found.items()))


def latest_plan(plan_dir: str | os.PathLike, up_to_epoch: int) -> PruningPlan | None:
    """The plan in force after ``up_to_epoch`` finished epochs, or None before any round."""
    epochs = [e for e in plan_files(plan_dir) if e <= up_to_epoch]
    return PruningPlan.load(plan_files(plan_dir)[max(epochs)]) if epochs else None


def check_schedule(schedule):
    """Returns ``schedule`` if the callback can drive it; else TypeError saying why.

    The callback asks a schedule, once per epoch, ``decide(epoch) -> (prune now?,
    fraction of channels removed)``: tfprune's ``RoundsSchedule`` and
    ``EarlyBirdSchedule`` do. tfmot's own schedules (``PolynomialDecay``,
    ``ConstantSparsity``) answer per optimizer step with a weight sparsity, which
    is not the same thing, so they are refused here rather than after an epoch.
    """
    if callable(getattr(schedule, "decide", None)):
        return schedule
    name = type(schedule).__name__
    hint = (" tfmot's schedules give a weight sparsity per optimizer step; for channels, use "
            "tfprune.pruning.RoundsSchedule(target, rounds=...) (prune after each of the "
            "first epochs) or EarlyBirdSchedule.") if callable(schedule) else ""
    raise TypeError(f"schedule {name}: PruningCallback needs a schedule with decide(epoch) -> "
                    f"(prune, target).{hint}")


def prunable_units(model: keras.Model, granularity: str, ignored_layers=()) -> int:
    """Prunable channels (structured) or kernel weights (unstructured) of a model."""
    if granularity == "weight":
        return int(sum(np.prod(layer.kernel.shape) for layer in prunable_layers(model)))
    return sum(group.size for group in channel_groups(model, ignored_layers))


class PruningCallback(keras.callbacks.Callback):
    """Prunes during ``model.fit``: after each scheduled epoch it scores, plans and masks.

    Masks are enforced by constraints inside the compiled train step, so
    removed channels stay exactly zero under momentum and weight decay. One
    callback serves several ``fit`` calls on the same model: a later fit goes
    on from the plan in force (``plan``, ``kept_filters``) and reuses the mask
    constraints instead of stacking new ones; ``remove_masks()`` takes them
    off. The constraints are saved with the model (``model.save``), so a
    reloaded model keeps its removed channels at zero.

    Args:
        measure: An importance measure (name, config dict or object). Given by
            name or config, g-based measures score at the temperature the model
            is compiled with (``TemperatureCrossEntropy``), as configs and the
            CLI do; an object is used as it is.
        schedule: A ``RoundsSchedule`` or ``EarlyBirdSchedule`` (epochs as steps).
        data: What ``tfprune.score`` takes: a dataset, a tuple of arrays, a DataBundle.
        granularity: ``"filter"`` (structured) or ``"weight"`` (unstructured).
        scope, min_keep, reduction, normalization, round_to: Passed to ``make_plan``
            (``round_to``: every group keeps a multiple of it, or all).
        score_options: Passed to ``ScoringContext`` (num_samples, samples_per_class, ...).
        ignored_layers: Layers the channel analysis leaves alone.
        log_dir: TensorBoard folder for per-round summaries (None: no summaries).
        plan_dir: Folder for ``epoch_<e>.npz/.json`` plans (None: not saved).
        initial_plan: A plan already in force (a resumed run).
        seed: Seeds the scoring samples; round k uses ``seed + k``.
        log_gradient_norms: Log per-layer gradient norms (the paper's Fig. 21)
            every round even when the measure needs no gradient (one extra g pass).
            Gradient-based measures log them at no extra cost.

    Example:
        >>> callback = PruningCallback("proposed", RoundsSchedule(0.75, rounds=5), (x, y))
        >>> model.fit(train_ds, epochs=20, callbacks=[callback])
    """

    def __init__(self, measure, schedule, data, *, granularity="filter", scope="global",
                 min_keep=0.05, reduction="sum", normalization="none", score_options=None,
                 ignored_layers=(), log_dir=None, plan_dir=None, initial_plan=None, seed=0,
                 log_gradient_norms=False, round_to=1):
        super().__init__()
        self.measure = get_measure(measure)
        self._measure_spec = measure
        self.schedule = check_schedule(schedule)
        self.data = data
        self.granularity = granularity
        self.plan_options = {"scope": scope, "min_keep": min_keep, "reduction": reduction,
                             "normalization": normalization,
                             "ignored_layers": tuple(ignored_layers), "round_to": int(round_to)}
        self.score_options = dict(score_options or {})
        self.log_dir = log_dir
        self.plan_dir = Path(plan_dir) if plan_dir else None
        self.initial_plan = initial_plan
        self.seed = int(seed)
        self.log_gradient_norms = bool(log_gradient_norms)
        self.plan = None
        self.enforcer = None
        self._writer = None
        self._previous_probe = None
        self._total = 0
        self._initial_cost = None

    def on_train_begin(self, logs=None):
        """Installs the mask constraints (once per model) and retraces the train step.

        The first fit on a model starts from ``initial_plan``; later fits on the
        same model go on from the plan in force.
        """
        if self.enforcer is None or self.enforcer.model is not self.model:
            self.plan = self.initial_plan
            self._previous_probe = None
            if hasattr(self.schedule, "reset"):
                self.schedule.reset()
            self.measure = measure_for_model(self._measure_spec, self.model)
            self.enforcer = MaskEnforcer(self.model, self.granularity,
                                         self.plan_options["ignored_layers"])
            self._total = prunable_units(self.model, self.granularity,
                                         self.plan_options["ignored_layers"])
            self._preflight()
        self.enforcer.install()
        if self.plan is not None:
            self.enforcer.update(self.plan)
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        self.model.make_train_function(force=True)

    def _round_budget(self, budget: dict, step: int) -> dict:
        """This round's budget: ``progress`` of the way from the unpruned cost to ``budget``."""
        from tfprune.pruning.stats import flops, param_count

        (kind, value), = budget.items()
        if self._initial_cost is None:
            self._initial_cost = (flops if kind == "flops" else param_count)(self.model)
        progress = self.schedule.progress(step)
        return {kind: self._initial_cost - progress * (self._initial_cost - value)}

    def _preflight(self) -> None:
        """Scores once on a handful of samples before the first epoch.

        A measure that cannot run on this model and data (a loss that does not
        fit, data that does not fit the model, a one-unit output) then fails
        before any epoch is trained rather than at the first round.
        """
        if not self.measure.requires:
            return
        options = {**self.score_options, "num_samples": 8, "samples_per_class": 1,
                   "seed": self.seed}
        self.measure.score(ScoringContext(self.model, self.data, **options), self.granularity)

    def _score(self, step: int):
        options = {**self.score_options, "seed": self.seed + step}
        context = ScoringContext(self.model, self.data, **options)
        return self.measure.score(context, self.granularity), context

    def _plan_for(self, scores, target: float, previous) -> PruningPlan:
        return make_plan(self.model, scores, target, previous=previous, **self.plan_options)

    def _probe_early_bird(self, step: int) -> None:
        """Reports the distance between this epoch's and the last epoch's would-be masks."""
        scores, _ = self._score(step)
        probe = self._plan_for(scores, self.schedule.target, None)
        masks = np.concatenate([m.ravel() for m in probe.keep.values()])
        if self._previous_probe is not None:
            self.schedule.observe(float(np.mean(masks != self._previous_probe)))
        self._previous_probe = masks

    def on_epoch_end(self, epoch, logs=None):
        """Prunes if the schedule says so; adds ``kept_filters`` to the logs."""
        step = epoch + 1
        if hasattr(self.schedule, "observe") and self.plan is None:
            self._probe_early_bird(step)
        should_prune, target = self.schedule.decide(step)
        current = self.plan.fraction_removed if self.plan is not None else 0.0
        budget = getattr(self.schedule, "budget", None)
        if should_prune and budget is not None:
            target = self._round_budget(budget, step)
        if should_prune and (budget is not None or target > current):
            scores, context = self._score(step)
            previous, self.plan = self.plan, self._plan_for(scores, target, self.plan)
            self.enforcer.update(self.plan, self.model.optimizer)
            if self._writer is not None:
                if self.log_gradient_norms and not context.gradient_norms():
                    context.gradients(self.measure.temperature)
                table = layer_table(self.model, self.plan) if self.granularity == "filter" \
                    else None
                write_round(self._writer, self.plan, scores, step, context.gradient_norms(),
                            previous=previous, layer_table=table)
            if self.plan_dir is not None:
                self.plan.save(self.plan_dir / f"epoch_{step:03d}")
        if logs is not None:
            logs["kept_filters"] = self.kept_filters()

    def remove_masks(self) -> None:
        """Takes the mask constraints off the model (removed weights stay zero until trained)."""
        if self.enforcer is not None:
            self.enforcer.remove()
            self.model.make_train_function(force=True)

    def kept_filters(self) -> int:
        """Channels (or weights) kept so far; all prunable ones before the first round."""
        return self.plan.total - self.plan.removed if self.plan is not None else self._total

    def on_train_end(self, logs=None):
        """Flushes the summaries."""
        if self._writer is not None:
            self._writer.flush()
