"""``prune``: the paper's prune-and-train protocol for a config, into a resumable run folder.

From random initialization, each round trains one epoch and then prunes
(score, rank, mask); training then continues to ``train.epochs`` in total, so
the N pruning epochs come out of the first learning-rate phase, as in the paper.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfprune.config import ConfigError, load_config
from tfprune.graph.channels import graph_for
from tfprune.importance import serialize_measure
from tfprune.importance.measure_registry import training_measure
from tfprune.pruning.callback import PruningCallback, latest_plan
from tfprune.pruning.ranking import RankingOptions
from tfprune.pruning.stats import pruning_summary
from tfprune.pruning.tfmot_schedules import EarlyBirdSchedule, RoundsSchedule
from tfprune.run_folder import RunFolder
from tfprune.training import TrainingExtension, TrainResult, read_run_config, train


def _measure(config: dict):
    section = config["prune"]
    try:
        measure = training_measure(section["measure"], section["measure_options"],
                                   config["train"]["temperature"], config["train"]["seed"])
    except (ValueError, TypeError) as error:
        raise ConfigError(f"prune.measure: {error}") from None
    if section["granularity"] not in measure.granularities:
        raise ConfigError(f"prune.granularity: measure {measure.name!r} supports "
                          f"{list(measure.granularities)}, not {section['granularity']!r}.")
    return measure


def _schedule(config: dict):
    section, epochs = config["prune"], config["train"]["epochs"]
    try:
        if section["schedule"] == "early_bird":
            schedule = EarlyBirdSchedule(section["target"], **section["early_bird"])
        else:
            schedule = RoundsSchedule(section["target"], section["rounds"], section["split"])
    except (ValueError, TypeError) as error:
        raise ConfigError(f"prune: {error}") from None
    if schedule.last_epoch > epochs:
        what = ("prune.rounds" if isinstance(schedule, RoundsSchedule)
                else "prune.early_bird.max_epochs")
        raise ConfigError(f"{what}: pruning may run until epoch {schedule.last_epoch} but "
                          f"train.epochs is {epochs}; one round takes one epoch.")
    return schedule


def _check_memory(data, samples_per_class: int) -> None:
    """Refuses, before training, a Hessian memory larger than a class of the training split."""
    import numpy as np

    counts = np.bincount(data.train_split.labels, minlength=data.num_classes)
    if counts.min() < samples_per_class:
        raise ConfigError(
            f"prune.samples_per_class: {samples_per_class} per class requested for the Hg "
            f"memory, but class {int(counts.argmin())} of the training data has "
            f"{int(counts.min())} examples."
        )


class PruneExtension(TrainingExtension):
    """Adds the pruning callback, the ``kept_filters`` column and the pruning summary.

    Args:
        config: A validated config with a ``prune`` section.
    """

    columns = ("kept_filters",)

    def __init__(self, config: dict):
        self.config = config
        self.measure = _measure(config)
        self.schedule = _schedule(config)
        self.callback = None

    def check(self, model, data) -> None:
        """Refuses, before training, a model, data or target the pruning rounds cannot take.

        A fraction target is tried on a plan from magnitude scores (data-free), with
        the config's floors and rounding: a model too narrow to reach it fails
        here, not after the first epoch.
        """
        section = self.config["prune"]
        try:
            graph_for(model, section["ignored_layers"], section["gqa"])
        except ValueError as error:
            raise ConfigError(f"prune.ignored_layers / model: {error}") from None
        if "hessian_gradient" in self.measure.requires:
            _check_memory(data, section["samples_per_class"])
        target = section["target"]
        if isinstance(target, (int, float)) and section["granularity"] == "filter":
            from tfprune.importance import score
            from tfprune.pruning.plan import PlanError, make_plan

            try:
                make_plan(model, score(model, "magnitude"), float(target),
                          ranking=RankingOptions.from_mapping(section))
            except PlanError as error:
                raise ConfigError(
                    f"prune.target {target}: this model cannot be pruned that far ({error}); "
                    "lower prune.target or prune.min_keep, or widen the model "
                    "(model.width_multiplier).") from None

    def callbacks(self, model, data, run_dir: Path, start_epoch: int) -> list:
        """The ``PruningCallback``, resumed with the plan in force at ``start_epoch``."""
        section = self.config["prune"]
        plan_dir = RunFolder(run_dir).plans
        self.callback = PruningCallback(
            self.measure, self.schedule, data, granularity=section["granularity"],
            ranking=RankingOptions.from_mapping(section),
            score_options={"num_samples": section["num_samples"],
                           "samples_per_class": section["samples_per_class"],
                           "batchnorm": section["batchnorm"]},
            log_dir=RunFolder(run_dir).pruning_logs,
            plan_dir=plan_dir, initial_plan=latest_plan(plan_dir, start_epoch) if start_epoch
            else None, seed=self.config["train"]["seed"],
            log_gradient_norms=section["log_gradient_norms"],
            reset_optimizer=section["reset_optimizer"],
        )
        return [self.callback]

    def summary(self, model) -> dict:
        """Params, FLOPs and filters before and after, the measure and the rounds done."""
        plan = self.callback.plan if self.callback else None
        return {**pruning_summary(model, plan), "measure": serialize_measure(self.measure),
                "rounds_done": len(plan.history) if plan else 0}


def prune(config: dict, *, resume: bool = False) -> TrainResult:
    """Runs prune-and-train for a validated config (see ``configs/pruning``).

    Raises:
        ConfigError: For a bad ``prune`` section, rounds > epochs, an unknown
            measure or layer, before any training.
    """
    return train(config, resume=resume, extension=PruneExtension(config))


def prune_from_file(path: str | os.PathLike | None, overrides=None) -> TrainResult:
    """Loads a YAML config with ``section.key=value`` overrides and runs ``prune``."""
    return prune(load_config(path, overrides))


def resume_prune(run_dir: str | os.PathLike) -> TrainResult:
    """Continues an interrupted prune-and-train run with the same masks and state."""
    return prune(read_run_config(run_dir), resume=True)
