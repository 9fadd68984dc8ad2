"""``PruningCallback``: scores, ranks, masks and logs at the end of each pruning round."""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfprune.budget_targets import parse_budget
from tfprune.graph.channels import channel_groups
from tfprune.importance import get_measure
from tfprune.importance.batchnorm import average_batchnorm_across_workers
from tfprune.importance.measure_registry import measure_for_model
from tfprune.importance.prunable import prunable_weight_count
from tfprune.inspection.round_summaries import write_round
from tfprune.pruning.budget_search import dense_cost
from tfprune.pruning.masks import MaskEnforcer, reset_optimizer_state
from tfprune.pruning.plan import PruningPlan
from tfprune.pruning.pruner import Pruner
from tfprune.pruning.ranking import RankingOptions
from tfprune.pruning.stats import layer_table
from tfprune.trained_model import trained_model

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
    fraction of channels removed)``: tfprune's ``RoundsSchedule``,
    ``EarlyBirdSchedule`` and any subclass of ``tfprune.pruning.PruningSchedule``
    do. tfmot's own schedules (``PolynomialDecay``,
    ``ConstantSparsity``) answer per optimizer step with a weight sparsity, which
    is not the same thing, so they are refused here rather than after an epoch.
    """
    if callable(getattr(schedule, "decide", None)):
        return schedule
    name = type(schedule).__name__
    hint = (" tfmot's schedules give a weight sparsity per optimizer step; for channels, use "
            "tfprune.pruning.RoundsSchedule(target, rounds=...) (prune after each of the "
            "first epochs), EarlyBirdSchedule, or a subclass of "
            "tfprune.pruning.PruningSchedule.") if callable(schedule) else ""
    raise TypeError(f"schedule {name}: PruningCallback needs a schedule with decide(epoch) -> "
                    f"(prune, target).{hint}")


def prunable_units(model: keras.Model, granularity: str, ignored_layers=()) -> int:
    """Prunable channels (structured) or kernel weights (unstructured) of a model."""
    if granularity == "weight":
        return prunable_weight_count(model)
    return sum(group.size for group in channel_groups(model, ignored_layers))


class PruningCallback(keras.callbacks.Callback):
    """Prunes during ``model.fit``: after each scheduled epoch a ``Pruner`` steps.

    The callback times, enforces, logs and saves; the ``Pruner`` scores and
    plans. Masks are enforced by constraints inside the compiled train step,
    so removed channels stay exactly zero under momentum and weight decay. One
    callback serves several ``fit`` calls on the same model: a later fit goes
    on from the plan in force (``plan``, ``kept_filters``) and reuses the mask
    constraints instead of stacking new ones; ``remove_masks()`` takes them
    off. The constraints are saved with the model (``model.save``), so a
    reloaded model keeps its removed channels at zero.

    Args:
        pruner: A ``tfprune.Pruner`` of the model being fit, or an importance
            measure (name, config dict or object) for which the callback builds
            one at the start of training from the options below. Given by name
            or config, g-based measures score at the temperature the model is
            compiled with (``TemperatureCrossEntropy``), as configs and the CLI
            do; an object is used as it is.
        schedule: A ``RoundsSchedule`` or ``EarlyBirdSchedule`` (epochs as steps).
        data: What ``tfprune.score`` takes: (x, y) arrays, a dataset, a DataBundle.
            With a Pruner: None (the Pruner's data).
        granularity: ``"filter"`` (structured) or ``"weight"`` (unstructured).
        ranking: For the Pruner the callback builds: how channels are ranked
            (``tfprune.pruning.ranking.RankingOptions``).
        score_options: Passed to ``ScoringContext`` (num_samples, samples_per_class,
            batchnorm, loss, data_keys...).
        log_dir: TensorBoard folder for per-round summaries (None: no summaries).
        plan_dir: Folder for ``epoch_<e>.npz/.json`` plans (None: not saved).
        initial_plan: A plan already in force (a resumed run).
        seed: Seeds the scoring samples; round k uses ``seed + k``.
        log_gradient_norms: Log per-layer gradient norms (the paper's Fig. 21)
            every round even when the measure needs no gradient (one extra g pass).
            Gradient-based measures log them at no extra cost.
        verbose: For the Pruner the callback builds: 1 prints what pruning can
            reach, each scoring's samples and loss, and each round; 0 is silent.
        reset_optimizer: After each round, zero every optimizer slot (momentum,
            moments), as the reference code's new optimizer per round. By default
            only the removed channels' slots are zeroed, and the surviving
            weights keep their momentum.
        **options: The ranking options as keywords instead (``scope``,
            ``min_keep``, ``reduction``, ``normalization``, ``round_to``,
            ``ignored_layers``: see ``RankingOptions``).

    Raises:
        TypeError: For a schedule the callback cannot drive (tfmot's own), or
            pruning options given beside a Pruner (they belong to it).

    Example:
        >>> callback = PruningCallback("proposed", RoundsSchedule(0.75, rounds=5), (x, y))
        >>> model.fit(train_ds, epochs=20, callbacks=[callback])
        >>> pruner = tfprune.Pruner(model, "snip", (x, y), round_to=8)
        >>> model.fit(train_ds, epochs=20, callbacks=[PruningCallback(pruner, schedule)])
    """

    def __init__(self, pruner, schedule, data=None, *, granularity="filter", ranking=None,
                 score_options=None, log_dir=None, plan_dir=None, initial_plan=None, seed=0,
                 log_gradient_norms=False, verbose=1, reset_optimizer=False, **options):
        super().__init__()
        ranking = RankingOptions.from_keywords("PruningCallback", ranking, options)
        pruner_options = {"granularity": granularity, "score_options": score_options,
                          "seed": int(seed), "verbose": int(verbose)}
        self.reset_optimizer = bool(reset_optimizer)
        if isinstance(pruner, Pruner):
            given = ranking.given() + [name for name, value, default in (
                ("granularity", granularity, "filter"), ("score_options", score_options, None),
                ("seed", seed, 0), ("verbose", verbose, 1)) if value != default]
            if given or data is not None:
                raise TypeError(f"PruningCallback: {given + (['data'] if data is not None else [])}"
                                " belong to the Pruner; give them to tfprune.Pruner(...).")
            self.pruner, self._pruner_options = pruner, None
        else:
            get_measure(pruner)  # an unknown measure fails here, not at fit
            self.pruner, self._pruner_options = None, {
                **pruner_options, "ranking": ranking, "importance": pruner, "data": data}
        self.schedule = check_schedule(schedule)
        self.log_dir = log_dir
        self.plan_dir = Path(plan_dir) if plan_dir else None
        self.initial_plan = initial_plan
        self.log_gradient_norms = bool(log_gradient_norms)
        self.enforcer = None
        self._writer = None
        self._previous_probe = None
        self._initial_cost = None

    @property
    def plan(self) -> PruningPlan | None:
        """The plan in force (None before the first round)."""
        return self.pruner.plan if self.pruner is not None else self.initial_plan

    @property
    def measure(self):
        """The measure the rounds score with."""
        if self.pruner is not None:
            return self.pruner.measure
        return measure_for_model(self._pruner_options["importance"], trained_model(self.model))

    def on_train_begin(self, logs=None):
        """Installs the mask constraints (once per model) and retraces the train step.

        The first fit on a model starts from ``initial_plan``; later fits on the
        same model go on from the plan in force. Scores once on a few samples
        first, so a measure that cannot run fails before any epoch. A
        ``keras.distillation.Distiller`` being fit has its student pruned.
        """
        pruned = self._pruned_model(trained_model(self.model))
        fresh = self.enforcer is None or self.enforcer.model is not pruned
        if fresh:
            self._start(pruned)
        self.enforcer.install()
        if self.plan is not None:
            self.enforcer.update(self.plan)
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
            if self.pruner.coverage is not None:
                with self._writer.as_default():
                    tf.summary.text("pruning/coverage", self.pruner.coverage.table(), step=0)
        if fresh and self.plan is None:
            self._round(0)  # a schedule that prunes before training (RoundsSchedule(start=0))
        self.model.make_train_function(force=True)

    def _pruned_model(self, fitted: keras.Model) -> keras.Model:
        """The model the rounds prune: the Pruner's, when it is a part of the model fitted.

        A Pruner on a sub-model (a VAE's decoder, a backbone inside a classifier)
        prunes it inside the whole model's ``fit``: its variables are the whole
        model's, so their mask constraints apply at every optimizer step.
        """
        own = self.pruner.model if self.pruner is not None else None
        if own is not None and own is not fitted and any(
                layer is own for layer in fitted._flatten_layers(include_self=False)):
            return own
        return fitted

    def _start(self, model) -> None:
        if self._pruner_options is not None:
            options = dict(self._pruner_options)
            self.pruner = Pruner(model, options.pop("importance"), options.pop("data"),
                                 **options)
        elif self.pruner.model is not model:
            raise ValueError(f"PruningCallback: the Pruner prunes model "
                             f"{self.pruner.model.name!r}, which is neither the model fit runs "
                             f"on ({model.name!r}) nor a part of it.")
        if self.pruner.plan is None:
            self.pruner.plan = self.initial_plan
        self._previous_probe = None
        if hasattr(self.schedule, "reset"):
            self.schedule.reset()
        self.enforcer = MaskEnforcer(model, self.pruner.granularity,
                                     self.pruner.ranking.ignored_layers)
        self.pruner.check()

    def _round_budget(self, budget: dict, step: int) -> dict:
        """This round's budget: ``progress`` of the way from the unpruned cost to ``budget``."""
        parsed = parse_budget(budget)
        if self._initial_cost is None:
            self._initial_cost = dense_cost(self.pruner.model, parsed)
        progress = self.schedule.progress(step)
        return parsed.with_value(self._initial_cost - progress * (self._initial_cost
                                                                  - parsed.value))

    def _probe_early_bird(self, step: int) -> None:
        """Reports the distance between this epoch's and the last epoch's would-be masks."""
        scores = self.pruner.score(self.pruner.seed + step)
        probe = self.pruner.plan_for(scores, self.schedule.target, None)
        masks = np.concatenate([m.ravel() for m in probe.keep.values()])
        if self._previous_probe is not None:
            self.schedule.observe(float(np.mean(masks != self._previous_probe)))
        self._previous_probe = masks

    def on_epoch_end(self, epoch, logs=None):
        """Prunes if the schedule says so; adds ``kept_filters`` to the logs.

        Under a multi-worker strategy the BatchNorm moving statistics are first
        averaged over the workers, so every worker scores the same model.
        """
        step = epoch + 1
        average_batchnorm_across_workers(self.model)
        if getattr(self.schedule, "observes_masks", False) and self.plan is None:
            self._probe_early_bird(step)
        self._round(step)
        if logs is not None:
            logs["kept_filters"] = self.kept_filters()

    def _round(self, step: int) -> None:
        """Scores, plans, masks and logs if the schedule prunes after ``step`` epochs."""
        should_prune, target = self.schedule.decide(step)
        current = self.plan.fraction_removed if self.plan is not None else 0.0
        budget = getattr(self.schedule, "budget", None)
        if should_prune and budget is not None:
            target = self._round_budget(budget, step)
        if not (should_prune and (budget is not None or target > current)):
            return
        previous = self.pruner.plan
        if self.pruner.verbose:
            aim = f"{target:.1%}" if isinstance(target, float) else str(target)
            print(f"\ntfprune: pruning round {len(getattr(previous, 'history', ())) + 1} after "
                  f"epoch {step} (target {aim} of the channels)", flush=True)
        self.pruner.step(target, seed=self.pruner.seed + step)
        if self.pruner.verbose:
            print(f"tfprune: {self.plan.fraction_removed:.1%} of the channels removed "
                  f"({self.plan.total - self.plan.removed:,} of {self.plan.total:,} kept)",
                  flush=True)
        scores, context = self.pruner.scores, self.pruner.context
        self.enforcer.update(self.plan, self.model.optimizer)
        if self.reset_optimizer:  # as the reference code's new optimizer each round
            reset_optimizer_state(self.model.optimizer)
        if self._writer is not None:
            if self.log_gradient_norms and not context.gradient_norms():
                context.gradients(self.measure.temperature)
            table = layer_table(self.pruner.model, self.plan) \
                if self.pruner.granularity == "filter" else None
            write_round(self._writer, self.plan, scores, step, context.gradient_norms(),
                        previous=previous, layer_table=table)
        if self.plan_dir is not None:
            self.plan.save(self.plan_dir / f"epoch_{step:03d}")

    def remove_masks(self) -> None:
        """Takes the mask constraints off the model (removed weights stay zero until trained)."""
        if self.enforcer is not None:
            self.enforcer.remove()
            self.model.make_train_function(force=True)

    def kept_filters(self) -> int:
        """Channels (or weights) kept so far; all prunable ones before the first round."""
        if self.plan is not None:
            return self.plan.total - self.plan.removed
        return self.pruner.total if self.pruner is not None else 0

    def on_train_end(self, logs=None):
        """Flushes the summaries."""
        if self._writer is not None:
            self._writer.flush()
